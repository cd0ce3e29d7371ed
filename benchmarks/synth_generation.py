"""Events/s of the synthetic telemetry generator: one process vs Ray tasks over player shards.

Rows (same config, same data: every row's per-shard checksums must match):

- ``single process``: every shard generated in this process, one after the other;
- ``ray tasks``: one Ray task per shard (generate only, a checksum comes back);
- ``ray tasks + write``: ``run_generate`` — generate, write Parquet, commit manifests.

Usage::

    python benchmarks/synth_generation.py --quick --json /tmp/synth.json
    python benchmarks/synth_generation.py --players 50000 200000 --repeats 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import tempfile
import time
from functools import partial

from raypipe.synth import TelemetryConfig, generate_shard, run_generate


def shard_checksum(config: TelemetryConfig, shard_index: int) -> tuple[int, str]:
    """Generate one shard; return its event count and a digest of its events."""
    events = generate_shard(config, shard_index)["events"]
    digest = hashlib.sha256()
    for name in ("player_id", "ts", "session_id"):
        for chunk in events.column(name).chunks:
            for buffer in chunk.buffers():
                if buffer is not None:
                    digest.update(buffer)
    return events.num_rows, digest.hexdigest()


def time_single(config: TelemetryConfig) -> tuple[float, list[tuple[int, str]]]:
    started = time.perf_counter()
    results = [shard_checksum(config, index) for index in range(config.shards)]
    return time.perf_counter() - started, results


def time_ray(config: TelemetryConfig, executor: object) -> tuple[float, list[tuple[int, str]]]:
    started = time.perf_counter()
    results = executor.map(  # type: ignore[attr-defined]
        partial(shard_checksum, config), list(range(config.shards)), name="bench.synth"
    )
    return time.perf_counter() - started, results


def time_ray_write(config: TelemetryConfig, executor: object) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        manifests = run_generate(config, out, executor)
        return time.perf_counter() - started, manifests["events"].rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Smoke size (10k players).")
    parser.add_argument("--players", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--days", type=int, default=45)
    parser.add_argument("--shard-players", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray.")
    parser.add_argument("--json", dest="json_path", help="Write the results here.")
    args = parser.parse_args()
    sizes = [10_000] if args.quick else args.players
    shard_players = 2_500 if args.quick else args.shard_players
    repeats = 2 if args.quick else args.repeats

    from raypipe.engine.runtime import RayRuntime, RuntimeOptions
    from raypipe.engine.tasks import RayExecutor

    rows = []
    with RayRuntime(RuntimeOptions(num_cpus=args.cpus)) as runtime:
        executor = RayExecutor(runtime)
        # Warm the workers (imports, numpy) before timing: start-up is not the work.
        time_ray(TelemetryConfig(players=200, days=5, shard_players=100), executor)
        for players in sizes:
            config = TelemetryConfig(
                players=players, days=args.days, seed=7, shard_players=shard_players
            )
            single = [time_single(config) for _ in range(repeats)]
            ray_runs = [time_ray(config, executor) for _ in range(repeats)]
            write_runs = [time_ray_write(config, executor) for _ in range(repeats)]
            expected = single[0][1]
            if any(result != expected for _, result in single + ray_runs):
                raise SystemExit(f"{players} players: shard checksums differ between runs")
            events = sum(count for count, _ in expected)
            if any(count != events for _, count in write_runs):
                raise SystemExit(f"{players} players: committed events differ")
            base = statistics.median(seconds for seconds, _ in single)
            for name, runs in (
                ("single process", single),
                ("ray tasks", ray_runs),
                ("ray tasks + write", write_runs),
            ):
                seconds = statistics.median(s for s, _ in runs)
                rows.append(
                    {
                        "players": players,
                        "days": args.days,
                        "shards": config.shards,
                        "mode": name,
                        "events": events,
                        "seconds": round(seconds, 3),
                        "events_per_s": round(events / seconds),
                        "speedup_vs_single": round(base / seconds, 2),
                    }
                )

    print(
        f"{'players':>8} {'shards':>6} {'mode':<18} {'events':>11} {'s':>7} "
        f"{'events/s':>11} {'x':>5}"
    )
    for row in rows:
        print(
            f"{row['players']:>8} {row['shards']:>6} {row['mode']:<18} {row['events']:>11,} "
            f"{row['seconds']:>7.2f} {row['events_per_s']:>11,} {row['speedup_vs_single']:>5.2f}"
        )
    if args.json_path:
        machine = {"cpus": os.cpu_count(), "platform": platform.platform()}
        with open(args.json_path, "w") as handle:
            json.dump(
                {"benchmark": "synth_generation", "machine": machine, "rows": rows},
                handle,
                indent=2,
            )


if __name__ == "__main__":
    main()
