"""Profiles, quality checks and drift run as Ray tasks and equal their single-process oracles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from raypipe.io.dataset import read_dataset, write_dataset
from raypipe.monitoring.drift import detect_drift
from raypipe.monitoring.drift_run import run_drift
from raypipe.stages.base import DatasetInput, StageContext
from raypipe.validation.checking import check_table, run_check
from raypipe.validation.profile_stage import ProfileOptions, ProfileStage
from raypipe.validation.rules import read_rules

pytestmark = pytest.mark.ray


def _table(rng: np.random.Generator, n: int, shift: float) -> pa.Table:
    return pa.table(
        {
            "part": np.arange(n) % 6,
            "amount": rng.exponential(2 + shift, n),
            "level": rng.integers(0, 5, n),
            "platform": rng.choice(["ios", "android", "web"][: 2 + int(shift > 0)], n),
        }
    )


def test_profile_check_and_drift_on_ray(tmp_path: Path, ray_executor: object) -> None:
    rng = np.random.default_rng(9)
    ref, cur = _table(rng, 6_000, 0.0), _table(rng, 5_000, 1.0)
    ref_url, cur_url = str(tmp_path / "ref"), str(tmp_path / "cur")
    ref_m = write_dataset(ref_url, ref, partition_by=["part"])
    cur_m = write_dataset(cur_url, cur, partition_by=["part"])

    context = StageContext("profile", str(tmp_path), "r", ray_executor)  # type: ignore[arg-type]
    result = ProfileStage().run(context, {"ref": DatasetInput(ref_url, ref_m)}, ProfileOptions())
    assert result.metrics["ref.rows"] == 6_000
    profile = {r["column"]: r for r in read_dataset(context.output_url("profile")).to_pylist()}
    assert profile["amount"]["mean"] == pytest.approx(float(np.mean(ref.column("amount"))))

    rules = read_rules(
        {
            "rules": [
                {
                    "check": "allowed_values",
                    "column": "platform",
                    "values": ["ios", "android"],
                    "policy": "quarantine",
                },
                {"check": "range", "column": "amount", "max": 20, "policy": "warn"},
            ]
        }
    )
    report = run_check(
        cur_url,
        cur_m,
        rules,
        ray_executor,  # type: ignore[arg-type]
        data_url=str(tmp_path / "ok"),
        quarantine_url=str(tmp_path / "q"),
    )
    oracle = check_table(cur, rules)
    assert [r.failing for r in report.results] == [r.failing for r in oracle.results]
    assert report.quarantined == oracle.results[0].failing > 0

    drift = run_drift(ref_url, ref_m, cur_url, cur_m, ray_executor)  # type: ignore[arg-type]
    want = detect_drift(ref, cur)
    for got, expected in zip(drift.columns, want.columns, strict=True):
        assert (got.column, got.method, got.drifted) == (
            expected.column,
            expected.method,
            expected.drifted,
        )
        assert got.score == pytest.approx(expected.score, rel=1e-9)
    assert drift.column("platform").drifted and drift.column("amount").drifted
