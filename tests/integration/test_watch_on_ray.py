"""``raypipe watch JOB.yaml`` launches the real retraining job on Ray, then cools down.

The job generates telemetry, builds the training set and runs ``train.search``, which
registers a version and leaves promotion to the lifecycle. The watched folder holds one
committed training set per month, built by the same generator: the first month as the job
generated it, the next two with the drift of ``benchmarks/continual.py`` (a guild update
turns social activity around, a logging bug, a new platform, higher prices). The retraining
run regenerates the drifted month it is told about (``{period}`` is the cutoff): the synthetic
source stands in for a production feed that serves the newest month.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from raypipe.cli.watch import register

PLAYERS = 600
DAYS = 30
SEED = 11
#: The first champion's month; the watched months follow, 30 days apart.
FIRST_CUTOFF = dt.date(2025, 12, 2)
MONTHS = (("2026-01-01", False), ("2026-01-31", True), ("2026-03-02", True))
DRIFT = {
    "start_day": 0,
    "new_platform": "web",
    "price_multiplier": 2.0,
    "null_rate": {"event_type": 0.4},
    "social_by_level": [0.3, 4.0, 3.0, 2.0, 1.0, 0.3],
}


def _job(tmp_path: Path) -> Path:
    spec = {
        "name": "churn-watch",
        "data_dir": str(tmp_path / "data"),
        "stages": {
            "events": {
                "uses": "synth.game_telemetry",
                "with": {"players": PLAYERS, "days": DAYS, "seed": SEED, "cutoff": "2025-12-02"},
            },
            "features": {
                "uses": "features.training_set",
                "inputs": {
                    "events": "events.events",
                    "labels": "events.churn_labels",
                    "players": "events.players",
                },
            },
            "train": {
                "uses": "train.search",
                "inputs": {"data": "features.training_set", "truth": "events.churn_truth"},
                "with": {
                    "model_name": "churn",
                    "candidates": ["xgboost"],
                    "trials": {"xgboost": 1},
                    "actors": 1,
                    "max_rounds": 40,
                    "gate": {"promote": False},  # the lifecycle promotes
                },
            },
        },
        "lifecycle": {
            "model": "churn",
            "roles": {"ml-lead": ["ann"]},
            "identity": {"sources": ["env"]},
            "triggers": {"drift_share": 0.1, "performance_drop": 0.05, "cooldown_periods": 2},
            "watch": {
                "periods": "periods",
                "retrain_set": [
                    "stages.events.with.cutoff={period}",
                    f"stages.events.with.drift={json.dumps(DRIFT)}",
                ],
            },
        },
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _commit_months(folder: Path) -> None:
    """Each watched month's training set, as the job's own stages would build it."""
    import polars as pl

    from raypipe.engine.inline import InlineBackend
    from raypipe.features.generated import generated_training_set
    from raypipe.io.dataset import DatasetWriter
    from raypipe.synth.config import DriftConfig, TelemetryConfig
    from raypipe.synth.generate import run_generate

    for name, drifted in MONTHS:
        drift = DriftConfig(**DRIFT) if drifted else DriftConfig()  # type: ignore[arg-type]
        config = TelemetryConfig(
            players=PLAYERS,
            days=DAYS,
            seed=SEED,
            cutoff=dt.date.fromisoformat(name),
            drift=drift,
        )
        base = str(folder.parent / "generated" / name)
        run_generate(config, base, InlineBackend())
        frame = generated_training_set(base, InlineBackend())
        table = frame.with_columns(pl.col("churned").cast(pl.Int64)).to_arrow()
        writer = DatasetWriter(str(folder / name))
        writer.commit(writer.write(table), metadata={"cutoff": name})


def _runs(data_dir: Path) -> list:
    from raypipe.driver.record import RunRecord

    records = [RunRecord.from_json(p.read_text()) for p in data_dir.rglob("runs/*/run.json")]
    return sorted(records, key=lambda r: r.started_at)


@pytest.mark.ray
@pytest.mark.slow
def test_watch_launches_the_retraining_job_on_ray_and_the_cooldown_holds_the_next_firing(
    ray_runtime: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from raypipe.cli.run import run_spec
    from raypipe.spec import load_job
    from raypipe.tracking.audit import AuditLog
    from raypipe.tracking.registry import Registry
    from raypipe.tracking.store import audit_path, resolve_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    job = _job(tmp_path)
    data_dir = tmp_path / "data"
    # The first champion: the job run once on its own month, promoted by hand.
    first = run_spec(load_job(job), address=None, resume=False, force=[])
    assert first.succeeded and str(first.stages["train"].metrics["model_version"]) == "1"
    registry = Registry(
        resolve_tracking_uri(None, str(data_dir)), AuditLog(audit_path(str(data_dir)))
    )
    registry.promote("churn", "1", reason="first model", who="ann")
    _commit_months(tmp_path / "periods")

    app = typer.Typer()
    register(app)

    @app.command()
    def other() -> None:  # a second command keeps typer from flattening `watch`
        pass

    args = ["watch", str(job), "--once"]
    result = CliRunner().invoke(app, args, env={"RAYPIPE_USER": "watcher"})
    assert result.exit_code == 0, result.output
    lines = {
        line.split(":")[0]: line for line in result.stdout.splitlines() if ": champion" in line
    }
    first_month, drifted, lingering = (name for name, _ in MONTHS)
    assert "triggers: none" in lines[first_month], lines
    assert "drift" in lines[drifted] and "retrained -> 2" in lines[drifted], lines
    assert "drift" in lines[lingering] and "(cooling down)" in lines[lingering], lines

    # The retraining job really ran, on Ray, on the drifted month, and registered version 2.
    runs = _runs(data_dir)
    assert len(runs) == 2 and all(r.succeeded for r in runs)
    retrain = runs[-1]
    assert {name: s.cached for name, s in retrain.stages.items()} == {
        "events": False,
        "features": False,
        "train": False,
    }
    assert str(retrain.stages["train"].metrics["model_version"]) == "2"
    assert retrain.stages["train"].node_ids  # its trials ran on Ray's workers
    assert retrain.stages["events"].rows_out != first.stages["events"].rows_out
    tags = registry.version_tags("churn", "2")
    assert tags["raypipe.trained_on"] == drifted and tags["raypipe.variant"] == "scratch"
    # Nobody approved: version 1 still serves, whatever the challenge said.
    assert registry.alias_version("churn", "champion") == "1"
    watch = registry.audit.read_stream("churn", "watch")
    assert [(e.details["period"], e.action) for e in watch] == [
        (first_month, "ok"),
        (drifted, "retrain"),
        (lingering, "cooldown"),
    ]
    assert watch[1].to_version == "2" and watch[1].details["challenge"]["fresh"]["champion"] > 0

    # A second pass finds nothing new: no run, no entry.
    again = CliRunner().invoke(app, args, env={"RAYPIPE_USER": "watcher"})
    assert again.exit_code == 0, again.output
    assert len(_runs(data_dir)) == 2
    assert len(registry.audit.read_stream("churn", "watch")) == 3
