"""Feature store: raypipe against Feast 0.67 on the same data, SQLite and Redis.

Workload: ``--entities`` players x ``--versions`` rows each (event times spread over 30 days),
50 float64 features. Both systems materialize the latest row per player into their online store
and serve one entity or 100 entities x 50 features; the values of a sample of players are
checked equal between the two systems (``equal``).

- raypipe: ``features.store.materialize`` on the in-process executor (one partition, like
  Feast's local engine), ``SqliteOnlineStore`` / ``RedisOnlineStore`` reads (value, status, age).
- Feast 0.67: ``FeatureStore.materialize`` (local provider, file offline store) and
  ``get_online_features(...).to_dict()``, in its own venv (``/tmp/feast-venv``, created with
  ``python3 -m venv`` + ``pip install 'feast[redis]==0.67.0'`` when missing; override with
  ``FEAST_VENV``).
- Streaming: ``StreamRunner`` (2 partitions in-process) over micro-batches of out-of-order events
  (sliding 1h/10m windows, 5 min allowed lateness); events/s, late events, and the state rows
  (panes) and bytes held at most in the first and in the second half of the stream (flat =
  bounded state). ``--stream-only`` runs just this part.

One redis-server (127.0.0.1, free port, no persistence) serves both systems, database 0 for
raypipe and 1 for Feast. Latency is measured in the calling process: wall time of one read call
(request + decode), ``--reads`` times for one entity and ``--reads / 10`` times for 100
entities, after 50 warm-up calls. Progress goes to stderr.

Usage::

    python benchmarks/feature_store.py --quick --json /tmp/fs.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peer_venv import peer_python

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
FEAST_VENV = Path(os.environ.get("FEAST_VENV", "/tmp/feast-venv"))
#: The Feast release every figure in benchmarks/README.md was measured with.
FEAST_VERSION = "0.67.0"
FEATURES = 50
START = dt.datetime(2026, 1, 1)


def make_data(path: Path, entities: int, versions: int, seed: int = 0) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    rows = entities * versions
    ids = np.repeat(np.arange(entities, dtype=np.int64), versions)
    offsets = rng.integers(0, 30 * 86_400, size=rows)
    ts = (np.datetime64(START, "us") + offsets.astype("timedelta64[s]")).astype("datetime64[us]")
    columns = {"player_id": ids, "ts": pa.array(ts, pa.timestamp("us"))}
    values = rng.normal(size=(rows, FEATURES)).round(6)
    for index in range(FEATURES):
        columns[f"f{index}"] = values[:, index]
    pq.write_table(pa.table(columns), path)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": round(pick(0.50) * 1e3, 4), "p99_ms": round(pick(0.99) * 1e3, 4)}


def timed(call, reads: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    for _ in range(50):
        call()
    samples = []
    for _ in range(reads):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return percentiles(samples)


# ----------------------------------------------------------------------------- redis
def start_redis() -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (scripts/install-system-deps.sh)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


# ----------------------------------------------------------------------------- raypipe
def run_raypipe(work: Path, parquet: Path, redis_port: int, sample: list[int], reads: int) -> dict:
    import pyarrow.parquet as pq

    sys.path.insert(0, str(ROOT))
    from raypipe.engine.inline import InlineBackend
    from raypipe.features.store.materialize import materialize
    from raypipe.features.store.online import StoreConfig, open_store
    from raypipe.features.store.registry import ServedView
    from raypipe.io.dataset import write_dataset

    source = str(work / "raypipe-source")
    write_dataset(source, pq.read_table(parquet))
    view = ServedView(
        "stats", ("player_id",), "ts", source, tuple(f"f{i}" for i in range(FEATURES))
    )
    out: dict = {}
    for kind, config in (
        ("sqlite", StoreConfig("sqlite", path=str(work / "raypipe.sqlite"))),
        ("redis", StoreConfig("redis", url=f"redis://127.0.0.1:{redis_port}/0")),
    ):
        started = time.perf_counter()  # timed from outside, as Feast's materialize is
        result = materialize(
            str(work / f"raypipe-{kind}"),
            view,
            source,
            config,
            InlineBackend(),
            partitions=1,
            chunk=dt.timedelta(days=365),
        )
        seconds = time.perf_counter() - started
        rows = pq.read_metadata(parquet).num_rows
        store = open_store(config)
        one, hundred = ["7"], [str(i) for i in range(100)]
        out[kind] = {
            "materialize_s": round(seconds, 3),
            "materialize_rows_per_s": round(rows / seconds),
            "written": result.written,
            "one": timed(lambda s=store, e=one: s.read(view.namespace, e), reads),
            "hundred": timed(lambda s=store, e=hundred: s.read(view.namespace, e), reads // 10),
        }
        if kind == "sqlite":
            values = store.read(view.namespace, [str(i) for i in sample])
            out["values"] = {v.entity: v.values for v in values}
            out["statuses"] = sorted({v.status.value for v in values})
        store.close()
    return out


# ----------------------------------------------------------------------------- feast
def feast_side(arguments: dict) -> dict:
    """Runs inside Feast's venv: materialize, then time online reads, for both stores."""
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource
    from feast.repo_config import RepoConfig
    from feast.types import Float64

    work = Path(arguments["work"])
    rows = arguments["rows"]
    out: dict = {}
    stores = {
        "sqlite": {"type": "sqlite", "path": str(work / "feast-online.sqlite")},
        "redis": {
            "type": "redis",
            "connection_string": f"127.0.0.1:{arguments['redis_port']},db=1",
        },
    }
    for kind, online in stores.items():
        repo = work / f"feast-{kind}"
        repo.mkdir(exist_ok=True)
        config = RepoConfig(
            project="bench",
            provider="local",
            registry=str(repo / "registry.db"),
            online_store=online,
            offline_store={"type": "file"},
            repo_path=str(repo),
            entity_key_serialization_version=3,
        )
        store = FeatureStore(config=config)
        player = Entity(name="player", join_keys=["player_id"])
        source = FileSource(path=arguments["parquet"], timestamp_field="ts")
        view = FeatureView(
            name="stats",
            entities=[player],
            ttl=dt.timedelta(days=3650),
            schema=[Field(name=f"f{i}", dtype=Float64) for i in range(FEATURES)],
            source=source,
            online=True,
        )
        store.apply([player, view])
        started = time.perf_counter()
        store.materialize(START - dt.timedelta(days=1), START + dt.timedelta(days=31))
        seconds = time.perf_counter() - started
        names = [f"stats:f{i}" for i in range(FEATURES)]
        one = [{"player_id": 7}]
        hundred = [{"player_id": i} for i in range(100)]
        out[kind] = {
            "materialize_s": round(seconds, 3),
            "materialize_rows_per_s": round(rows / seconds),
            "one": timed(
                lambda s=store, n=names, e=one: s.get_online_features(n, e).to_dict(),
                arguments["reads"],
            ),
            "hundred": timed(
                lambda s=store, n=names, e=hundred: s.get_online_features(n, e).to_dict(),
                arguments["reads"] // 10,
            ),
        }
        if kind == "sqlite":
            got = store.get_online_features(
                names, [{"player_id": i} for i in arguments["sample"]]
            ).to_dict()
            out["values"] = {
                str(entity): {f"f{i}": got[f"f{i}"][row] for i in range(FEATURES)}
                for row, entity in enumerate(got["player_id"])
            }
    return out


def run_feast(
    work: Path, parquet: Path, redis_port: int, sample: list[int], reads: int, rows: int
) -> dict:
    python = peer_python(FEAST_VENV, "feast", FEAST_VERSION, extras="redis")
    arguments = {
        "work": str(work),
        "parquet": str(parquet),
        "redis_port": redis_port,
        "sample": sample,
        "reads": reads,
        "rows": rows,
    }
    done = subprocess.run(
        [str(python), str(HERE), "--feast-side", json.dumps(arguments)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- streaming
def run_stream(work: Path, events: int, batch: int) -> dict:
    import numpy as np
    import polars as pl

    sys.path.insert(0, str(ROOT))
    from raypipe.features.streaming import WindowSpec
    from raypipe.features.streaming.operator import (
        InlineStreamBackend,
        StreamConfig,
        StreamRunner,
    )

    spec = WindowSpec.parse(
        "sliding",
        key="player_id",
        timestamp="ts",
        value="amount",
        size="1h",
        slide="10m",
        allowed_lateness="5m",
    )
    config = StreamConfig(spec, str(work / "stream"), partitions=2)
    runner = StreamRunner(config, InlineStreamBackend(config))
    rng = np.random.default_rng(1)
    per_second = 50  # event-time rate: 50 events per second (hours of event time)
    batches = []
    for start in range(0, events, batch):
        n = min(batch, events - start)
        base = (np.arange(start, start + n) // per_second) * 1_000_000
        jitter = rng.integers(-10 * 60 * 1_000_000, 60 * 1_000_000, size=n)  # up to 10 min late
        batches.append(
            pl.DataFrame(
                {
                    "player_id": rng.integers(0, 10_000, size=n),
                    "ts": base + jitter,
                    "amount": rng.random(n),
                }
            )
        )
    held, held_bytes = [], []
    started, cpu_started = time.perf_counter(), time.process_time()
    for frame in batches:
        runner.feed(frame)
        held.append(runner.open_windows)
        held_bytes.append(runner.state_bytes)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    runner.finish()
    half = len(held) // 2
    return {
        "events": events,
        "events_per_s": round(events / seconds),
        # CPU time of this process (all threads): what the stream costs on a loaded machine.
        "events_per_cpu_s": round(events / cpu_seconds),
        "late": runner.late,
        # Flat state: the most windows held in the first and in the second half of the
        # stream are about equal however long the stream runs.
        "open_windows_max_first_half": max(held[:half] or [0]),
        "open_windows_max_second_half": max(held[half:]),
        "state_bytes_max_first_half": max(held_bytes[:half] or [0]),
        "state_bytes_max_second_half": max(held_bytes[half:]),
        "closed_windows": runner.closed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke size")
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--versions", type=int, default=5)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--json", type=Path, help="write the summary here")
    parser.add_argument(
        "--stream-only", action="store_true", help="only the streaming part (no Feast, no Redis)"
    )
    parser.add_argument("--batch", type=int, help="events per streaming micro-batch")
    parser.add_argument("--feast-side", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.feast_side:
        print(json.dumps(feast_side(json.loads(args.feast_side))))
        return
    if args.quick:
        args.entities, args.versions, args.reads, args.events = 2000, 3, 300, 400_000
    batch = args.batch or (50_000 if args.quick else 100_000)
    if args.stream_only:
        with tempfile.TemporaryDirectory(prefix="fs-bench-") as tmp:
            stream = run_stream(Path(tmp), args.events, batch)
        summary = {"stream_events_per_s": stream["events_per_s"], "stream": stream}
        text = json.dumps(summary, indent=1)
        print(text)
        if args.json:
            args.json.write_text(text)
        return
    sample = list(range(0, args.entities, max(1, args.entities // 50)))
    with tempfile.TemporaryDirectory(prefix="fs-bench-") as tmp:
        work = Path(tmp)
        parquet = work / "features.parquet"
        make_data(parquet, args.entities, args.versions)
        rows = args.entities * args.versions
        redis, port = start_redis()
        try:
            print("raypipe: materialize and read", file=sys.stderr, flush=True)
            ours = run_raypipe(work, parquet, port, sample, args.reads)
            print("feast: materialize and read (its own venv)", file=sys.stderr, flush=True)
            feast = run_feast(work, parquet, port, sample, args.reads, rows)
        finally:
            redis.terminate()
            redis.wait()
        print("stream", file=sys.stderr, flush=True)
        stream = run_stream(work, args.events, batch)
    equal = ours["values"] == feast["values"] and len(ours["values"]) == len(sample)
    summary = {
        "rows": rows,
        "entities": args.entities,
        "features": FEATURES,
        "reads": args.reads,
        "raypipe_p99_ms_sqlite": ours["sqlite"]["one"]["p99_ms"],
        "feast_p99_ms_sqlite": feast["sqlite"]["one"]["p99_ms"],
        "raypipe_p99_ms_redis": ours["redis"]["one"]["p99_ms"],
        "feast_p99_ms_redis": feast["redis"]["one"]["p99_ms"],
        "raypipe_materialize_rows_per_s": ours["sqlite"]["materialize_rows_per_s"],
        "feast_materialize_rows_per_s": feast["sqlite"]["materialize_rows_per_s"],
        "stream_events_per_s": stream["events_per_s"],
        "equal": equal,
        "raypipe": {k: v for k, v in ours.items() if k != "values"},
        "feast": {k: v for k, v in feast.items() if k != "values"},
        "stream": stream,
    }
    text = json.dumps(summary, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
