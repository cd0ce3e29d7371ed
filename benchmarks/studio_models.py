"""The studio's models against their ground truth: spend, recommendations, build QA, difficulty.

Runs ``jobs/spend.yaml``, ``jobs/recommend.yaml``, ``jobs/build_qa.yaml`` and
``jobs/difficulty.yaml`` one after another on one local Ray (the same driver as ``raypipe run``),
each in a fresh data folder, and prints every application's ``quality`` (the model's figure, the
same figure for the generator's truth: the best possible, and for a simple baseline) with its
other figures. The sizes are the jobs' own (20k players) unless ``--quick`` (5k) or
``--players N``.

``--generate-only`` runs only each job's generating stage (for difficulty the simulator, which is
also its evaluation) as a user would: ``raypipe run`` on a one-stage copy of the job, in its own
process. It reports the rows of every output, the stage's seconds, the whole process's wall time
and the peak summed memory (PSS) of its process tree, Ray's workers included: the check that each
generator runs at the largest size its options accept (10M players) in bounded memory, one Ray
task per shard of players.

Usage::

    python benchmarks/studio_models.py --quick --json /tmp/studio.json
    python benchmarks/studio_models.py --players 200000
    python benchmarks/studio_models.py --generate-only --players 10000000 \
        --set stages.simulate.with.seeds=2 --json /tmp/studio-10m.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from batch_inference import timed_process

ROOT = Path(__file__).resolve().parent.parent
RAYPIPE = [sys.executable, "-m", "raypipe.cli.main"]

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


def generator_stage(application: str) -> str:
    """The stage that generates an application's data: the one its player count sets."""
    return APPLICATIONS[application][2][0].split(".")[1]


def run_generator(
    application: str, players: int | None, sets: list[str], data_dir: str
) -> dict[str, Any]:
    """``raypipe run`` on a copy of the job holding only its generating stage, in a child."""
    job_file, _, player_keys, _ = APPLICATIONS[application]
    stage = generator_stage(application)
    spec = yaml.safe_load((ROOT / "jobs" / job_file).read_text())
    spec["stages"] = {stage: spec["stages"][stage]}
    spec["data_dir"] = data_dir
    path = Path(data_dir) / job_file
    path.write_text(yaml.safe_dump(spec))
    overrides = [f"{key}={players}" for key in player_keys if players]
    overrides += [item for item in sets if item.startswith(f"stages.{stage}.")]
    argv = [*RAYPIPE, "run", str(path), *(arg for item in overrides for arg in ("--set", item))]
    seconds, peak = timed_process(argv)
    (record_path,) = Path(data_dir).glob("jobs/*/runs/*/run.json")
    record = json.loads(record_path.read_text())["stages"][stage]
    return {
        "application": application,
        "stage": f"{stage} ({record['kind']})",
        "players": players or "job default",
        "overrides": overrides,
        "stage_seconds": record["seconds"],
        "process_seconds": round(seconds, 1),
        "peak_mib": round(peak / 2**20),
        "rows": {name: output["rows"] for name, output in record["outputs"].items()},
        "metrics": {k: v for k, v in record["metrics"].items() if not isinstance(v, dict)},
    }


def print_generators(rows: list[dict[str, Any]]) -> None:
    print(f"{'application':<16} {'stage s':>8} {'process s':>10} {'peak MiB':>9}  rows out")
    for row in rows:
        rows_out = ", ".join(f"{name} {count:,}" for name, count in row["rows"].items())
        print(
            f"{row['application']:<16} {row['stage_seconds']:>8.1f} "
            f"{row['process_seconds']:>10.1f} {row['peak_mib']:>9,}  {rows_out}"
        )


def print_quality(rows: list[dict[str, Any]]) -> None:
    print(f"{'application':<16} {'metric':<16} {'model':>8} {'truth':>8} {'baseline':>9} {'s':>6}")
    for row in rows:
        q = row["quality"]
        print(
            f"{row['application']:<16} {q['metric']:<16} {q['value']:>8.4f} {q['truth']:>8.4f} "
            f"{q['baseline']:>9.4f} {row['seconds']:>6.1f}"
        )
    for row in rows:
        print(f"\n{row['application']}: {json.dumps(row['figures'], default=str)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Smoke size (5k players).")
    parser.add_argument("--players", type=int, help="Players of every application.")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray.")
    parser.add_argument("--only", nargs="+", choices=list(APPLICATIONS), help="A subset.")
    parser.add_argument(
        "--generate-only", action="store_true", help="Only each job's generating stage."
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="With --generate-only: an override of a generating stage (repeatable).",
    )
    parser.add_argument("--json", dest="json_path", help="Write the results here.")
    args = parser.parse_args()
    players = args.players or (5_000 if args.quick else None)
    applications = args.only or list(APPLICATIONS)

    rows = []
    if args.generate_only:
        for application in applications:
            with tempfile.TemporaryDirectory() as data_dir:
                rows.append(run_generator(application, players, args.sets, data_dir))
        print_generators(rows)
    else:
        from raypipe.engine.runtime import RayRuntime, RuntimeOptions

        with RayRuntime(RuntimeOptions(num_cpus=args.cpus)) as runtime:
            for application in applications:
                with tempfile.TemporaryDirectory() as data_dir:
                    rows.append(
                        run_application(application, players, args.quick, runtime, data_dir)
                    )
        print_quality(rows)
    if args.json_path:
        machine = {"cpus": os.cpu_count(), "platform": platform.platform()}
        with open(args.json_path, "w") as handle:
            json.dump(
                {
                    "benchmark": "studio_models",
                    "machine": machine,
                    "quick": args.quick,
                    "mode": "generate-only" if args.generate_only else "jobs",
                    "rows": rows,
                },
                handle,
                indent=2,
            )


if __name__ == "__main__":
    main()
