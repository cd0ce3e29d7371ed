"""The studio's models against their ground truth: spend, recommendations, build QA, difficulty.

Runs ``jobs/spend.yaml``, ``jobs/recommend.yaml``, ``jobs/build_qa.yaml`` and
``jobs/difficulty.yaml`` one after another on one local Ray (the same driver as ``raypipe run``),
each in a fresh data folder, and prints every application's ``quality`` (the model's figure, the
same figure for the generator's truth: the best possible, and for a simple baseline) with its
other figures. The sizes are the jobs' own (20k players) unless ``--quick`` (5k) or
``--players N``.

Usage::

    python benchmarks/studio_models.py --quick --json /tmp/studio.json
    python benchmarks/studio_models.py --players 200000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: application -> (job file, evaluating stage, `--set` keys of its player count, extras).
APPLICATIONS: dict[str, tuple[str, str, list[str], list[str]]] = {
    "spend (LTV)": ("spend.yaml", "evaluate", ["stages.spend.with.players"], []),
    "recommendations": ("recommend.yaml", "evaluate", ["stages.catalog.with.players"], []),
    "build QA": ("build_qa.yaml", "detect", ["stages.telemetry.with.players"], []),
    "difficulty": ("difficulty.yaml", "simulate", ["stages.simulate.with.players"], []),
}
QUICK_EXTRAS = {"spend (LTV)": ["stages.train.with.trials.xgboost=6"]}


def other_figures(application: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """The figures beside ``quality`` worth a column: per application."""
    if application == "spend (LTV)":
        return {"rmse": metrics["rmse"], "normalized_gini": metrics["normalized_gini"]}
    if application == "recommendations":
        k = metrics["k"]
        return {f"recall@{k}": metrics[f"recall@{k}"], f"ndcg@{k}": metrics[f"ndcg@{k}"]}
    if application == "build QA":
        return {
            "detector": metrics["detector"],
            "naive_baseline": metrics["naive_baseline"],
            "days_to_detect": metrics["days_to_detect"],
        }
    return {
        "policies": {
            name: {
                "retention": figures["retention"]["mean"],
                "retention_ci95": figures["retention"]["ci95"],
                "spend_per_player": figures["spend_per_player"]["mean"],
            }
            for name, figures in metrics["policies"].items()
        },
        "baseline": metrics["baseline"],
        "spend_quality": metrics["spend_quality"],
    }


def run_application(
    application: str, players: int | None, quick: bool, runtime: Any, data_dir: str
) -> dict[str, Any]:
    from raypipe.driver import run_job
    from raypipe.engine.backend import RayBackend
    from raypipe.spec import load_job

    job_file, stage, player_keys, extras = APPLICATIONS[application]
    overrides = [f"{key}={players}" for key in player_keys if players] + extras
    if quick:
        overrides += QUICK_EXTRAS.get(application, [])
    job = load_job(ROOT / "jobs" / job_file, overrides=overrides, data_dir=data_dir)
    started = time.perf_counter()
    record = run_job(job, backend=RayBackend(runtime))
    seconds = time.perf_counter() - started
    failed = record.failed_stages
    if failed:
        raise SystemExit(f"{application}: stage(s) {[s.name for s in failed]} failed")
    metrics = dict(record.stages[stage].metrics)
    return {
        "application": application,
        "job": f"jobs/{job_file}",
        "players": players or "job default",
        "seconds": round(seconds, 1),
        "quality": metrics["quality"],
        "figures": other_figures(application, metrics),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Smoke size (5k players).")
    parser.add_argument("--players", type=int, help="Players of every application.")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray.")
    parser.add_argument("--only", nargs="+", choices=list(APPLICATIONS), help="A subset.")
    parser.add_argument("--json", dest="json_path", help="Write the results here.")
    args = parser.parse_args()
    players = args.players or (5_000 if args.quick else None)

    from raypipe.engine.runtime import RayRuntime, RuntimeOptions

    rows = []
    with RayRuntime(RuntimeOptions(num_cpus=args.cpus)) as runtime:
        for application in args.only or list(APPLICATIONS):
            with tempfile.TemporaryDirectory() as data_dir:
                rows.append(run_application(application, players, args.quick, runtime, data_dir))

    print(f"{'application':<16} {'metric':<16} {'model':>8} {'truth':>8} {'baseline':>9} {'s':>6}")
    for row in rows:
        q = row["quality"]
        print(
            f"{row['application']:<16} {q['metric']:<16} {q['value']:>8.4f} {q['truth']:>8.4f} "
            f"{q['baseline']:>9.4f} {row['seconds']:>6.1f}"
        )
    for row in rows:
        print(f"\n{row['application']}: {json.dumps(row['figures'], default=str)}")
    if args.json_path:
        machine = {"cpus": os.cpu_count(), "platform": platform.platform()}
        with open(args.json_path, "w") as handle:
            json.dump(
                {
                    "benchmark": "studio_models",
                    "machine": machine,
                    "quick": args.quick,
                    "rows": rows,
                },
                handle,
                indent=2,
            )


if __name__ == "__main__":
    main()
