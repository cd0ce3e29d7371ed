"""The studio jobs (spend, recommend, build QA, difficulty) run on Ray, small, and their
evaluating stages record ``quality`` with the model between its baseline and the truth."""

from __future__ import annotations

from pathlib import Path

import pytest

from raypipe.driver import RunOptions, StageStatus, run_job
from raypipe.engine.backend import RayBackend
from raypipe.spec import load_job

pytestmark = [pytest.mark.ray, pytest.mark.slow]

JOBS = Path(__file__).resolve().parents[2] / "jobs"

CASES = [
    (
        "spend.yaml",
        "evaluate",
        [
            "stages.spend.with.players=4000",
            "stages.spend.with.shard_players=2000",
            "stages.train.with.trials.xgboost=3",
        ],
    ),
    (
        "recommend.yaml",
        "evaluate",
        [
            "stages.catalog.with.players=3000",
            "stages.catalog.with.shard_players=1500",
            "stages.recommend.with.block_players=1000",
        ],
    ),
    (
        "build_qa.yaml",
        "detect",
        ["stages.telemetry.with.players=20000", "stages.telemetry.with.shard_players=10000"],
    ),
    (
        "difficulty.yaml",
        "simulate",
        [
            "stages.simulate.with.players=2000",
            "stages.simulate.with.seeds=3",
            "stages.simulate.with.shard_players=1000",
        ],
    ),
]


@pytest.mark.parametrize(("job_file", "stage", "overrides"), CASES, ids=[c[0] for c in CASES])
def test_job_records_quality(
    ray_runtime, tmp_path: Path, job_file: str, stage: str, overrides: list[str]
) -> None:
    job = load_job(JOBS / job_file, overrides=overrides, data_dir=str(tmp_path), env={})
    record = run_job(
        job,
        backend=RayBackend(ray_runtime),
        driver_node=lambda: ray_runtime.driver_node_id,
        options=RunOptions(),
    )
    assert record.status == StageStatus.SUCCEEDED
    quality = record.stages[stage].metrics["quality"]
    assert set(quality) == {"metric", "value", "truth", "baseline"}
    assert quality["baseline"] < quality["value"] <= quality["truth"]
