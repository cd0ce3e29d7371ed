"""Feature generation: raypipe's distributed as-of features against the same polars query.

Data (numpy, written once per size): ``player_id`` int64 (lognormal activity weights over
``rows / 60`` players), ``ts`` timestamp[us] uniform over the 30 days before the cutoff
2026-02-01, ``event_type`` (8 values), ``amount`` float64. Files are written per player shard
(disjoint players per file, declared ``clustered_by: [player_id]``), as the synthetic telemetry
is; ``--layout time`` writes them in time order instead (no clustering: raypipe hash-shuffles).

Features per player (17): ``cnt_<type>`` for the 8 types, ``amt_sum_{1,7,30}d`` and
``amt_mean_{1,7,30}d`` over ``cutoff - N days <= ts < cutoff``, and ``days_since_last``.

Variants, same files, one run:

(a) polars   ``scan_parquet`` -> filter -> ``group_by.agg`` -> ``collect`` -> ``write_parquet``.
(b) raypipe  ``run_feature_build`` (the ``features.scoring_set`` core) on an already running
             local Ray (2 CPUs; start-up not timed; one untimed warm-up run).

The outputs are compared (same players, values within 1e-9 relative) in the run. Prints a table
of medians and ratios; ``--json`` writes ``raypipe_s``, ``polars_s``, ``rows``, ``equal`` per size.

Usage::

    python benchmarks/feature_generation.py --quick --json /tmp/features.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
from polars.testing import assert_frame_equal

from raypipe.features.build import FeatureBuild, run_feature_build
from raypipe.features.views import Aggregate, FeatureView
from raypipe.io.dataset import DatasetWriter, read_dataset, write_dataset

CUTOFF = dt.datetime(2026, 2, 1)
DAYS = 30
TYPES = (
    "session_start",
    "level_start",
    "level_complete",
    "level_fail",
    "purchase",
    "ad_view",
    "social",
    "crash",
)
WINDOWS = (1, 7, 30)
US_PER_DAY = 86_400 * 1_000_000

VIEW = FeatureView(
    name="bench",
    entities=("player_id",),
    timestamp="ts",
    features=(
        *(Aggregate(f"cnt_{t}", "count", where=f'event_type == "{t}"') for t in TYPES),
        *(Aggregate(f"amt_sum_{d}d", "sum", column="amount", window=f"{d}d") for d in WINDOWS),
        *(Aggregate(f"amt_mean_{d}d", "mean", column="amount", window=f"{d}d") for d in WINDOWS),
        Aggregate("days_since_last", "time_since_last"),
    ),
)


def generate(root: Path, rows: int, files: int, layout: str, seed: int = 7) -> tuple[str, str]:
    """Write the events dataset and the players dataset; returns their URLs."""
    rng = np.random.default_rng(seed)
    players = max(1, rows // 60)
    weights = rng.lognormal(0.0, 1.0, players)
    player = rng.choice(players, size=rows, p=weights / weights.sum()).astype(np.int64)
    start_us = int((CUTOFF - dt.datetime(1970, 1, 1)).total_seconds() * 1e6) - DAYS * US_PER_DAY
    ts = start_us + rng.integers(0, DAYS * US_PER_DAY, rows)
    kind = rng.choice(len(TYPES), size=rows, p=[0.2, 0.2, 0.15, 0.1, 0.05, 0.15, 0.1, 0.05])
    amount = np.round(rng.gamma(2.0, 3.0, rows), 2)
    order = np.lexsort((ts, player)) if layout == "player" else np.argsort(ts, kind="stable")
    table = pa.table(
        {
            "player_id": player[order],
            "ts": pa.array(ts[order], pa.int64()).cast(pa.timestamp("us")),
            "event_type": pa.array(np.array(TYPES, dtype=object)[kind[order]], pa.string()),
            "amount": amount[order],
        }
    )
    events_url = str(root / "events")
    writer = DatasetWriter(events_url)
    entries = []
    if layout == "player":  # shard by player id range: disjoint players per file
        bounds = np.searchsorted(
            table.column("player_id").to_numpy(),
            np.linspace(0, players, files + 1).astype(np.int64),
        )
        for index in range(files):
            chunk = table.slice(int(bounds[index]), int(bounds[index + 1] - bounds[index]))
            entries += writer.write(chunk, part=index)
        metadata = {"clustered_by": ["player_id"]}
    else:
        step = -(-rows // files)
        for index in range(files):
            entries += writer.write(table.slice(index * step, step), part=index)
        metadata = {}
    writer.commit(entries, metadata=metadata, schema=table.schema)
    players_url = str(root / "players")
    write_dataset(players_url, pa.table({"player_id": np.unique(player)}))
    return events_url, players_url


def run_polars(events_url: str, out: Path) -> pl.DataFrame:
    files = sorted(str(p) for p in Path(events_url).rglob("*.parquet"))
    cutoff = pl.lit(CUTOFF, dtype=pl.Datetime("us"))
    aggs = [(pl.col("event_type") == t).sum().cast(pl.Int64).alias(f"cnt_{t}") for t in TYPES]
    for d in WINDOWS:
        recent = pl.col("ts") >= cutoff - dt.timedelta(days=d)
        aggs.append(pl.col("amount").filter(recent).sum().alias(f"amt_sum_{d}d"))
    for d in WINDOWS:
        recent = pl.col("ts") >= cutoff - dt.timedelta(days=d)
        aggs.append(pl.col("amount").filter(recent).mean().alias(f"amt_mean_{d}d"))
    aggs.append(
        ((cutoff - pl.col("ts").max()).dt.total_microseconds() / US_PER_DAY).alias(
            "days_since_last"
        )
    )
    result = (
        pl.scan_parquet(files)
        .filter(pl.col("ts") < cutoff)
        .group_by("player_id")
        .agg(aggs)
        .collect()
    )
    result.write_parquet(out / "polars.parquet")
    return result


def run_raypipe(
    events_url: str, players_url: str, out_url: str, executor, partitions: int | None = None
) -> None:
    build = FeatureBuild(
        events_url=events_url,
        views=(VIEW,),
        entities_url=players_url,
        keys=("player_id",),
        out=DatasetWriter(out_url),
        cutoff=CUTOFF,
        entity_columns=("player_id",),
    )
    run_feature_build(build, executor, partitions=partitions, name="bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="0.3M and 3M events")
    parser.add_argument("--sizes", type=str, default=None, help="events, comma separated")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--layout", choices=("player", "time"), default="player")
    parser.add_argument(
        "--partitions", type=int, default=None, help="raypipe tasks (default: one per CPU)"
    )
    parser.add_argument("--json", type=str, default=None)
    args = parser.parse_args()
    sizes = (
        [int(float(s)) for s in args.sizes.split(",")]
        if args.sizes
        else [300_000, 3_000_000]
        if args.quick
        else [3_000_000, 10_000_000, 30_000_000]
    )
    repeats = args.repeats or (3 if args.quick else 5)

    from raypipe.engine.runtime import RayRuntime, RuntimeOptions
    from raypipe.engine.tasks import RayExecutor

    root = Path(tempfile.mkdtemp(prefix="raypipe-featbench-"))
    results = []
    runtime = RayRuntime(RuntimeOptions(num_cpus=2))
    try:
        runtime.start()
        executor = RayExecutor(runtime)
        for rows in sizes:
            data = root / f"n{rows}"
            data.mkdir()
            events_url, players_url = generate(data, rows, args.files, args.layout)
            out_url = str(data / "raypipe_out")
            run_raypipe(
                events_url, players_url, out_url, executor, args.partitions
            )  # warm-up, untimed
            times: dict[str, list[float]] = {"polars": [], "raypipe": []}
            for _ in range(repeats):
                started = time.perf_counter()
                expected = run_polars(events_url, data)
                times["polars"].append(time.perf_counter() - started)
                started = time.perf_counter()
                run_raypipe(events_url, players_url, out_url, executor, args.partitions)
                times["raypipe"].append(time.perf_counter() - started)
            got = pl.from_arrow(read_dataset(out_url)).drop("cutoff").sort("player_id")
            try:
                assert_frame_equal(
                    got, expected.sort("player_id"), rel_tol=1e-9, check_dtypes=False
                )
                equal = True
            except AssertionError as exc:
                print(f"outputs differ at {rows} rows: {exc}")
                equal = False
            results.append(
                {
                    "rows": rows,
                    "polars_s": statistics.median(times["polars"]),
                    "raypipe_s": statistics.median(times["raypipe"]),
                    "equal": equal,
                    "layout": args.layout,
                    "repeats": repeats,
                    "polars_all_s": times["polars"],
                    "raypipe_all_s": times["raypipe"],
                }
            )
            shutil.rmtree(data, ignore_errors=True)
    finally:
        runtime.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"\nfeature generation, layout={args.layout}, medians of {repeats} (2 vCPU shared machine)"
    )
    print(
        f"{'events':>12} {'polars s':>9} {'raypipe s':>10} {'ray/polars':>10} "
        f"{'polars ev/s':>12} {'raypipe ev/s':>13} {'equal':>6}"
    )
    for r in results:
        print(
            f"{r['rows']:>12,} {r['polars_s']:>9.2f} {r['raypipe_s']:>10.2f} "
            f"{r['raypipe_s'] / r['polars_s']:>10.2f} {r['rows'] / r['polars_s']:>12,.0f} "
            f"{r['rows'] / r['raypipe_s']:>13,.0f} {r['equal']!s:>6}"
        )
    if len(results) > 1:
        first, last = results[0], results[-1]
        growth = last["raypipe_s"] / first["raypipe_s"]
        print(f"raypipe: {last['rows'] / first['rows']:.0f}x the rows in {growth:.2f}x the time")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
