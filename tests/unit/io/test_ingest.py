from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from raypipe.engine.inline import InlineBackend
from raypipe.errors import DataError
from raypipe.ingest.stage import IngestOptions, IngestStage
from raypipe.io.dataset import read_dataset
from raypipe.io.ingest import parse_type
from raypipe.stages.base import StageContext, StageResult

SCHEMA = {"id": "int64", "name": "string", "score": "float64", "day": "date"}


def _run(tmp_path: Path, **options: object) -> tuple[StageResult, StageContext]:
    context = StageContext(
        stage_name="raw", data_dir=str(tmp_path / "data"), run_id="r1", backend=InlineBackend()
    )
    stage_options = IngestOptions.model_validate({"schema": SCHEMA, **options})
    return IngestStage().run(context, {}, stage_options), context


def _csv(path: Path, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(["id,name,score,day", *rows]) + "\n")
    return path


def test_parse_type_names() -> None:
    assert parse_type("int64") == pa.int64()
    assert parse_type("timestamp[us]") == pa.timestamp("us")
    assert parse_type("timestamp[us, UTC]") == pa.timestamp("us", tz="UTC")
    assert parse_type("date") == pa.date32()
    with pytest.raises(ValueError, match="unknown type `decimal`"):
        parse_type("decimal")
    with pytest.raises(ValidationError):
        IngestOptions.model_validate({"source": "x", "schema": {"a": "nope"}})
    with pytest.raises(ValidationError):
        IngestOptions.model_validate({"source": "x"})


def test_ingest_csv_glob_of_several_files_in_parallel_tasks(tmp_path: Path) -> None:
    _csv(tmp_path / "in" / "a.csv", ["1,ann,0.5,2024-01-01", "2,bob,,2024-01-02"])
    _csv(tmp_path / "in" / "b.csv", ["3,cy,1.5,2024-01-01"])
    result, context = _run(tmp_path, source=str(tmp_path / "in" / "*.csv"), partition_by=["day"])
    assert context.executor.calls == ["ingest.file"]  # type: ignore[attr-defined]
    table = read_dataset(context.output_url("data"))
    assert table.schema.field("day").type == pa.date32()
    assert sorted(table.to_pylist(), key=lambda r: r["id"])[1]["score"] is None
    assert sorted(table["id"].to_pylist()) == [1, 2, 3]
    assert result.rows_in == result.rows_out == 3
    assert result.outputs["quarantine"].rows == 0


def test_ingest_jsonl_and_parquet(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": i, "name": f"n{i}", "score": i / 2, "day": "2024-02-01"})
        for i in range(4)
    ]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text("\n".join(lines) + "\n")
    _, context = _run(tmp_path, source=str(tmp_path / "in" / "a.jsonl"))
    assert sorted(read_dataset(context.output_url("data"))["id"].to_pylist()) == [0, 1, 2, 3]
    pq.write_table(
        pa.table(
            {"id": pa.array([7], pa.int32()), "name": ["x"], "score": [1.0], "day": ["2024-03-01"]}
        ),
        tmp_path / "in" / "p.parquet",
    )
    _result, context = _run(tmp_path, source=str(tmp_path / "in" / "*.parquet"))
    table = read_dataset(context.output_url("data"))
    assert table.schema.field("id").type == pa.int64() and table["id"].to_pylist() == [7]


def test_bad_row_fails_naming_file_line_column_and_value(tmp_path: Path) -> None:
    source = _csv(tmp_path / "in" / "a.csv", ["1,ann,0.5,2024-01-01", "2,bob,lots,2024-01-02"])
    with pytest.raises(DataError) as info:
        _run(tmp_path, source=str(source))
    message = str(info.value)
    assert f"`{source}` line 3, column `score`" in message
    assert "expected double" in message and "'lots'" in message
    assert "on_bad_rows: quarantine" in message


def test_bad_jsonl_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(
        '{"id": 1, "name": "a", "score": 1, "day": "2024-01-01"}\n\n'
        '{"id": "x", "name": "b", "score": 2, "day": "2024-01-01"}\n'
    )
    with pytest.raises(DataError, match=r"line 3, column `id`: expected int64, received 'x'"):
        _run(tmp_path, source=str(tmp_path / "a.jsonl"))


def test_quarantine_keeps_good_rows_and_commits_bad_ones(tmp_path: Path) -> None:
    source = _csv(
        tmp_path / "in" / "a.csv",
        ["1,ann,0.5,2024-01-01", "2,bob,lots,2024-01-02", "3,cy,1,not-a-day"],
    )
    result, context = _run(tmp_path, source=str(source), on_bad_rows="quarantine")
    assert read_dataset(context.output_url("data"))["id"].to_pylist() == [1]
    bad = read_dataset(context.output_url("quarantine")).to_pylist()
    assert [(r["line"], r["column"], r["source_file"]) for r in bad] == [
        (3, "score", str(source)),
        (4, "day", str(source)),
    ]
    assert bad[0]["score"] == "lots" and bad[0]["id"] == "2"
    assert result.metrics["quarantined_rows"] == 2


def test_no_matching_file_names_the_glob(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no file matches `.*nothing/\*\.csv`"):
        _run(tmp_path, source=str(tmp_path / "nothing" / "*.csv"))


def test_infer_reads_without_a_schema(tmp_path: Path) -> None:
    source = _csv(tmp_path / "a.csv", ["1,ann,0.5,2024-01-01"])
    context = StageContext(
        stage_name="raw", data_dir=str(tmp_path / "data"), run_id="r1", backend=InlineBackend()
    )
    IngestStage().run(context, {}, IngestOptions(source=str(source), infer=True))
    table = read_dataset(context.output_url("data"))
    assert table.schema.field("id").type == pa.int64() and table.num_rows == 1


def test_timestamps_and_bools_are_cast(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(
        "at,flag,local\n"
        "2024-01-01T05:00:00+02:00,true,2024-01-01 00:00:00\n"
        "2024-01-01 04:00:00,0,2024-01-02\n"
    )
    context = StageContext(
        stage_name="raw", data_dir=str(tmp_path / "data"), run_id="r1", backend=InlineBackend()
    )
    options = IngestOptions.model_validate(
        {
            "source": str(tmp_path / "a.csv"),
            "schema": {"at": "timestamp[us, UTC]", "flag": "bool", "local": "timestamp[us]"},
        }
    )
    IngestStage().run(context, {}, options)
    table = read_dataset(context.output_url("data"))
    assert table.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert [v.hour for v in table["at"].to_pylist()] == [3, 4]
    assert table["flag"].to_pylist() == [True, False]
    assert [v.day for v in table["local"].to_pylist()] == [1, 2]
