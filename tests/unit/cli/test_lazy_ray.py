"""A local Ray starts only when a stage needs it; a cluster is joined at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raypipe.cli.options import open_backend
from raypipe.cli.run import run_spec
from raypipe.engine.backend import RayBackend
from raypipe.engine.runtime import RayRuntime, RuntimeOptions
from raypipe.inference.pool import InlineScoringPool
from raypipe.io.dataset import read_dataset
from raypipe.spec import load_job
from tests.unit.inference.data import oracle_scores, train_model, write_files


def test_a_local_runtime_knows_its_cpus_before_it_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    runtime = RayRuntime(RuntimeOptions(num_cpus=3))
    assert runtime.is_local and not runtime.started
    assert runtime.cpus == 3
    assert not RayRuntime(RuntimeOptions(address="auto")).is_local
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    assert not RayRuntime().is_local  # ray.init would join RAY_ADDRESS


def test_a_local_backend_waits_and_a_cluster_is_joined_at_once(no_ray: list[str]) -> None:
    with open_backend() as backend:
        assert backend.parallelism >= 1
    assert no_ray == []
    with pytest.raises(RuntimeError, match="must not start Ray"), open_backend("auto"):
        pass
    assert no_ray == ["start"]


def test_scoring_on_one_machine_stays_in_this_process_unless_actors_are_asked(
    no_ray: list[str],
) -> None:
    backend = RayBackend(RayRuntime())
    assert isinstance(backend.scoring_pool(), InlineScoringPool)
    assert no_ray == []
    with pytest.raises(RuntimeError, match="must not start Ray"):
        backend.scoring_pool(actors=1)
    assert no_ray == ["start"]


def test_a_job_whose_only_work_is_scoring_never_starts_ray(
    tmp_path: Path, no_ray: list[str]
) -> None:
    model = train_model(tmp_path / "model.ubj")
    write_files(tmp_path / "in", files=2, rows=300)
    spec = tmp_path / "job.yaml"
    spec.write_text(
        json.dumps(
            {
                "name": "scores_only",
                "data_dir": str(tmp_path / "data"),
                "stages": {
                    "raw": {
                        "uses": "ingest",
                        "with": {"source": f"{tmp_path}/in/*.parquet", "infer": True},
                    },
                    "score": {
                        "uses": "inference.score",
                        "inputs": {"data": "raw.data"},
                        "with": {"model": str(model), "id_columns": ["player_id"]},
                    },
                },
            }
        )
    )
    job = load_job(spec)
    run_spec(job, address=None, resume=False, force=[], inline=True)  # commits `raw`
    scores = tmp_path / "data" / "jobs" / "scores_only" / "datasets" / "score" / "scores"
    first = read_dataset(str(scores))

    record = run_spec(job, address=None, resume=False, force=["score"], inline=False)

    assert no_ray == []  # `raw` cached, `score` in this process: Ray had nothing to do
    assert record.stages["raw"].status == "cached"
    assert record.stages["score"].status == "succeeded"
    assert record.stages["score"].node_ids == []  # it ran in this process, on no Ray node
    again = read_dataset(str(scores))
    expected = oracle_scores(model, tmp_path / "in")
    assert sorted(again["player_id"].to_pylist()) == sorted(expected)
    assert again.sort_by("player_id").equals(first.sort_by("player_id"))
