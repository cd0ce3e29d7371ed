from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raypipe.errors import DataError, DatasetNotCommittedError, SchemaError
from raypipe.inference.batch import executor_runner, run_batch_inference
from raypipe.inference.ledger import UnitOutcome
from raypipe.inference.model import read_model
from raypipe.inference.planning import InferenceSpec, ScoringJob, ScoringUnit
from raypipe.inference.work import UnitWorker
from raypipe.io.dataset import read_dataset
from raypipe.io.manifest import read_manifest

from .data import make_table, oracle_scores, train_model, write_files


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.mktemp("model") / "model.ubj")


def _spec(inputs: Path, output: Path, **kwargs: object) -> InferenceSpec:
    kwargs.setdefault("id_columns", ("player_id",))
    kwargs.setdefault("batch_rows", 70)
    return InferenceSpec(input_url=str(inputs), output_url=str(output), **kwargs)  # type: ignore[arg-type]


def _assert_exactly_once(output: Path, model_path: Path, inputs: Path) -> None:
    table = read_dataset(str(output))
    ids = table["player_id"].to_pylist()
    expected = oracle_scores(model_path, inputs)
    assert len(ids) == len(set(ids)) == len(expected)
    got = dict(zip(ids, table["score"].to_pylist(), strict=True))
    assert set(got) == set(expected)
    np.testing.assert_allclose(
        [got[key] for key in sorted(got)], [expected[key] for key in sorted(got)], rtol=1e-6
    )


def test_every_row_is_scored_once_and_a_rerun_does_nothing(
    tmp_path: Path, model_path: Path
) -> None:
    inputs = tmp_path / "in"
    write_files(inputs, files=4, rows=200)
    spec = _spec(inputs, tmp_path / "out")
    model = read_model(str(model_path))
    report = run_batch_inference(model, spec)
    assert (report.rows_in, report.rows_out, report.scored_units) == (800, 800, 4)
    assert report.advice and "worker time" in report.advice[0]
    _assert_exactly_once(tmp_path / "out", model_path, inputs)
    again = run_batch_inference(model, spec)
    assert again.already_done and again.scored_units == 0
    assert again.version == report.version == read_manifest(str(tmp_path / "out")).version


class _DriverDiesError(Exception):
    pass


def _dying_runner(after: int):
    """Scores one unit after another, then dies as unit ``after`` has written its marker."""

    def run(job: ScoringJob, units: Sequence[ScoringUnit]) -> Iterable[UnitOutcome]:
        worker = UnitWorker(job)
        for index, unit in enumerate(units):
            outcome = worker(unit)
            if index == after:
                raise _DriverDiesError
            yield outcome

    return run


@pytest.mark.parametrize("resume", [True, False])
def test_a_dead_driver_leaves_nothing_visible_and_resume_scores_only_the_rest(
    tmp_path: Path, model_path: Path, resume: bool
) -> None:
    inputs = tmp_path / "in"
    write_files(inputs, files=5, rows=100)
    spec = _spec(inputs, tmp_path / "out")
    model = read_model(str(model_path))
    with pytest.raises(_DriverDiesError):
        run_batch_inference(model, spec, _dying_runner(after=3))
    with pytest.raises(DatasetNotCommittedError):
        read_manifest(str(tmp_path / "out"))
    report = run_batch_inference(model, spec, resume=resume)
    # the dying runner let 3 units finish and the 4th write its marker before the "crash"
    assert (report.resumed_units, report.scored_units) == ((4, 1) if resume else (0, 5))
    _assert_exactly_once(tmp_path / "out", model_path, inputs)


def test_a_unit_killed_after_staging_files_is_rescored_without_duplicates(
    tmp_path: Path, model_path: Path
) -> None:
    from raypipe.inference.batch import _carried_schema
    from raypipe.inference.planning import list_input_files, plan_units

    inputs = tmp_path / "in"
    write_files(inputs, files=3, rows=100)
    spec = _spec(inputs, tmp_path / "out")
    model = read_model(str(model_path))
    units = plan_units(list_input_files(spec.input_url), model, spec)
    worker = UnitWorker(ScoringJob(model, spec, _carried_schema(units, spec)))
    worker._score(units[0])  # staged files written, then "killed" before the marker
    report = run_batch_inference(model, spec, resume=True)
    assert report.scored_units == 3
    _assert_exactly_once(tmp_path / "out", model_path, inputs)


def test_executor_runner_gives_the_same_output(tmp_path: Path, model_path: Path) -> None:
    from raypipe.engine.inline import InlineBackend

    inputs = tmp_path / "in"
    write_files(inputs, files=5, rows=60)
    executor = InlineBackend()
    runner = executor_runner(executor, workers=2)
    report = run_batch_inference(read_model(str(model_path)), _spec(inputs, tmp_path / "o"), runner)
    assert executor.calls == ["inference.score"] and report.rows_out == 300
    _assert_exactly_once(tmp_path / "o", model_path, inputs)


def _bad_inputs(folder: Path) -> dict[str, str]:
    """Two good files plus one of each bad kind; returns file name -> expected reason regex."""
    write_files(folder, files=2, rows=100)
    good = folder / "part-000.parquet"
    (folder / "zero-bytes.parquet").write_bytes(b"")
    data = good.read_bytes()
    (folder / "truncated.parquet").write_bytes(data[: len(data) // 2])
    pq.write_table(make_table(10, start=10_000).drop_columns(["f2"]), folder / "no-f2.parquet")
    typed = make_table(10, start=20_000)
    typed = typed.set_column(typed.schema.get_field_index("f1"), "f1", pa.array(["x"] * 10))
    pq.write_table(typed, folder / "string-f1.parquet")
    other = make_table(10, start=30_000)
    other = other.set_column(0, "player_id", pa.array([str(v) for v in range(10)]))
    pq.write_table(other, folder / "string-id.parquet")
    return {
        "zero-bytes.parquet": "not a readable Parquet file",
        "truncated.parquet": "not a readable Parquet file",
        "no-f2.parquet": r"lacks feature column\(s\) `f2`",
        "string-f1.parquet": "feature column `f1` has type `string`",
        "string-id.parquet": "column `player_id` has type `string`",
    }


def test_each_bad_file_fails_the_run_with_its_name_and_nothing_is_committed(
    tmp_path: Path, model_path: Path
) -> None:
    reasons = _bad_inputs(tmp_path / "all")
    model = read_model(str(model_path))
    for name, reason in reasons.items():
        inputs = tmp_path / name.replace(".parquet", "")
        write_files(inputs, files=2, rows=50)
        (inputs / name).write_bytes((tmp_path / "all" / name).read_bytes())
        output = tmp_path / f"out-{name}"
        with pytest.raises(DataError, match=reason) as caught:
            run_batch_inference(model, _spec(inputs, output))
        assert name in caught.value.message
        with pytest.raises(DatasetNotCommittedError):
            read_manifest(str(output))


def test_quarantine_scores_good_files_and_lists_bad_ones(tmp_path: Path, model_path: Path) -> None:
    reasons = _bad_inputs(tmp_path / "in")
    report = run_batch_inference(
        read_model(str(model_path)),
        _spec(tmp_path / "in", tmp_path / "out", on_bad_file="quarantine"),
    )
    assert report.rows_out == 200
    listed = {Path(item.file).name: item.reason for item in report.quarantined}
    assert set(listed) == set(reasons)
    for name, reason in reasons.items():
        assert pytest.importorskip("re").search(reason, listed[name]), (name, listed[name])
    metadata = read_manifest(str(tmp_path / "out")).metadata
    assert len(metadata["quarantined"]) == len(reasons)
    assert sorted(read_dataset(str(tmp_path / "out"))["player_id"].to_pylist()) == list(range(200))


def test_corrupt_page_mid_file_is_a_data_error(tmp_path: Path, model_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    path = inputs / "corrupt.parquet"
    pq.write_table(make_table(3000), path, row_group_size=500, compression="snappy")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2000] = b"\xff" * 2000
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"corrupt\.parquet"):
        run_batch_inference(read_model(str(model_path)), _spec(inputs, tmp_path / "out"))
    with pytest.raises(DatasetNotCommittedError):
        read_manifest(str(tmp_path / "out"))


def test_nans_and_empty_files_are_scored(tmp_path: Path, model_path: Path) -> None:
    inputs = tmp_path / "in"
    write_files(inputs, files=1, rows=50)
    nan = make_table(20, start=500)
    nan = nan.set_column(
        nan.schema.get_field_index("f0"), "f0", pa.array([np.nan] * 10 + [None] * 10, pa.float32())
    )
    pq.write_table(nan, inputs / "nan.parquet")
    pq.write_table(make_table(0), inputs / "empty.parquet")
    report = run_batch_inference(read_model(str(model_path)), _spec(inputs, tmp_path / "out"))
    assert report.rows_out == 70 and not report.quarantined
    scores = read_dataset(str(tmp_path / "out"))["score"].to_numpy()
    assert np.isfinite(scores).all()


def test_partition_by_and_shap_shape_the_output(tmp_path: Path, model_path: Path) -> None:
    inputs = tmp_path / "in"
    write_files(inputs, files=4, rows=30)
    spec = _spec(inputs, tmp_path / "out", partition_by=("day",), shap=True)
    run_batch_inference(read_model(str(model_path)), spec)
    manifest = read_manifest(str(tmp_path / "out"))
    assert {entry.partition.get("day") for entry in manifest.files} == {"d0", "d1"}
    table = read_dataset(str(tmp_path / "out"))
    assert {"player_id", "score", "shap_f0", "shap_bias"} <= set(table.column_names)
    assert table.num_rows == 120


def test_missing_id_column_is_a_schema_error(tmp_path: Path, model_path: Path) -> None:
    inputs = tmp_path / "in"
    write_files(inputs, files=1, rows=10)
    with pytest.raises(SchemaError, match="`nope`"):
        run_batch_inference(
            read_model(str(model_path)), _spec(inputs, tmp_path / "o", id_columns=("nope",))
        )


def test_a_partitioned_committed_dataset_keeps_its_partition_values(
    tmp_path: Path, model_path: Path
) -> None:
    from raypipe.io.dataset import write_dataset

    table = pa.concat_tables(
        [make_table(30, start=0, day="d0"), make_table(30, start=30, day="d1")]
    )
    source = str(tmp_path / "features")
    write_dataset(source, table, partition_by=["day"])
    spec = InferenceSpec(
        input_url=source, output_url=str(tmp_path / "out"), id_columns=("player_id", "day")
    )
    report = run_batch_inference(read_model(str(model_path)), spec)
    assert report.rows_out == 60
    scored = read_dataset(str(tmp_path / "out")).sort_by("player_id")
    assert scored["day"].to_pylist() == ["d0"] * 30 + ["d1"] * 30


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(st.integers(0, 120), min_size=1, max_size=5),
    batch_rows=st.integers(1, 200),
    crash_after=st.integers(0, 5),
)
def test_property_crash_anywhere_then_resume_scores_every_row_once(
    tmp_path_factory: pytest.TempPathFactory,
    model_path: Path,
    sizes: list[int],
    batch_rows: int,
    crash_after: int,
) -> None:
    root = tmp_path_factory.mktemp("prop")
    inputs = root / "in"
    inputs.mkdir()
    start = 0
    for index, rows in enumerate(sizes):
        pq.write_table(make_table(rows, start=start, seed=index), inputs / f"p{index}.parquet")
        start += rows
    spec = _spec(inputs, root / "out", batch_rows=batch_rows, target_file_bytes=4096)
    model = read_model(str(model_path))
    if crash_after < len(sizes):
        with pytest.raises(_DriverDiesError):
            run_batch_inference(model, spec, _dying_runner(after=crash_after))
    report = run_batch_inference(model, spec, resume=True)
    assert report.rows_out == sum(sizes)
    _assert_exactly_once(root / "out", model_path, inputs)


def test_plain_hive_partitions_keep_their_partition_values(
    tmp_path: Path, model_path: Path
) -> None:
    """A folder written by pandas with `partition_cols`: the `day` directories are a column."""
    table = pa.concat_tables(
        [make_table(30, start=0, day="d0"), make_table(30, start=30, day="d1")]
    )
    source = tmp_path / "plain"
    table.to_pandas().to_parquet(source, partition_cols=["day"])
    spec = InferenceSpec(
        input_url=str(source), output_url=str(tmp_path / "out"), id_columns=("player_id", "day")
    )
    assert run_batch_inference(read_model(str(model_path)), spec).rows_out == 60
    scored = read_dataset(str(tmp_path / "out")).sort_by("player_id")
    assert scored["day"].to_pylist() == ["d0"] * 30 + ["d1"] * 30


def test_an_unfinished_raypipe_folder_is_refused_as_input(tmp_path: Path, model_path: Path) -> None:
    from raypipe.errors import DatasetNotCommittedError
    from raypipe.io.dataset import DatasetWriter

    DatasetWriter(str(tmp_path / "dead")).write(make_table(5))
    spec = InferenceSpec(input_url=str(tmp_path / "dead"), output_url=str(tmp_path / "out"))
    with pytest.raises(DatasetNotCommittedError, match="writer did not finish"):
        run_batch_inference(read_model(str(model_path)), spec)
