"""Federated simulation: raypipe against Flower's simulation engine and a plain numpy process.

Workload (the measured anchor's): 100 clients, IID and Dirichlet(0.5) splits of 200k rows x 20
features (45 % positive; logistic of a linear score plus a mild nonlinear part), 20 rounds of
FedAvg over a numpy logistic regression (1 epoch of mini-batch SGD, batch 64, lr 0.1, shuffle seed
from (round, client): every implementation does identical client work), every client every
round, and the central test AUC (50k rows) after every round.

Variants, each in its own process (whole-process wall includes interpreter, imports, Ray start
and shutdown):

- ``numpy``   one process, a plain per-client loop: the no-framework limit.
- ``raypipe`` ``raypipe.engine.federation.RayFederation``: 2 actors (0.5 CPU each) hosting 50
              clients each, vectorised local training, one shared request per round.
- ``raypipe+<protection>``  the same with ``dp`` (z 0.5, C 1), ``secagg`` (SecAgg+ between the
              clients in the actors and the driver: 10 neighbours, threshold 4), ``he`` (CKKS
              through TenSEAL, N 4096, scale 2^40), ``dp+secagg`` or ``dp+he`` (IID split only).
- ``flower``  flwr 1.42 Message API (``ClientApp``/``ServerApp``, ``FedAvg(fraction_evaluate=0)``,
              ``run_simulation``, 1 CPU per client), in its own venv (it pins Ray 2.55.1),
              created by this script with ``python3 -m venv`` + ``pip install flwr[simulation]``.

"Steady" rounds/s are rounds 2..R (round 1 absorbs start-up). AUC of a central scikit-learn
logistic regression on all training rows is the reference. ``OPENBLAS_NUM_THREADS=1`` for all.

Bytes per client per round: the weights down and the parameters up (8 bytes each) in a plain
round; with secagg or he, the protocol's messages or ciphertexts plus the public context, as the
run records them. The JSON's top level adds, for the IID split: ``plain_round_s``,
``secagg_round_s``, ``he_round_s``, ``flower_round_s`` (steady seconds per round, Flower without
secure aggregation), ``auc_secagg`` and ``auc_he`` next to ``auc_centralized``.

Usage::

    python benchmarks/federated.py --quick --json /tmp/fl.json
    python benchmarks/federated.py --clients 1000          # the 1,000-client point (IID)

At 1,000 clients over 200k rows (200 rows each) a Dirichlet(0.5) label split leaves some clients
(nearly) empty whatever the seed, so above 200 clients the default is the IID split only
(``--partitions iid,dir`` still asks for both and fails with a clear error). A variant that runs
past ``--timeout`` is reported as such; its whole process group (Ray's processes included) is
killed so nothing it started keeps the CPUs busy for the next variant.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from peer_venv import peer_python

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
FLOWER_VENV = Path(os.environ.get("FLWR_VENV", "/tmp/flwr-venv"))
#: The Flower release every figure in benchmarks/README.md was measured with.
FLOWER_VERSION = "1.42.0"
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
BATCH, LR = 64, 0.1


# ----------------------------------------------------------------------------- data
def make_data(path: Path, rows: int, clients: int, partitions: list[str], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    d = 20
    beta = rng.normal(0, 0.6, size=d)
    total = rows + rows // 4
    x = rng.normal(size=(total, d))
    score = x @ beta + 0.4 * np.sin(2 * x[:, 0]) * x[:, 1] - 0.2
    y = (rng.random(total) < 1 / (1 + np.exp(-score))).astype(np.float64)
    xtr, ytr, xte, yte = x[:rows], y[:rows], x[rows:], y[rows:]
    sys.path.insert(0, str(ROOT))
    from raypipe.federated.partition import partition_dirichlet, partition_iid

    split = {
        "iid": lambda: partition_iid(rows, clients, seed=42),
        "dir": lambda: partition_dirichlet(ytr, clients, 0.5, min_partition_size=10, seed=42),
    }
    parts = {name: split[name]() for name in partitions}
    arrays = {"x": xtr, "y": ytr, "xt": xte, "yt": yte}
    for name, p in parts.items():
        arrays[f"{name}_rows"] = np.concatenate(p)
        arrays[f"{name}_offsets"] = np.concatenate([[0], np.cumsum([len(q) for q in p])])
    np.savez(path, **arrays)


def load(path: str, partition: str) -> tuple[np.ndarray, ...]:
    z = np.load(path)
    return z["x"], z["y"], z["xt"], z["yt"], z[f"{partition}_rows"], z[f"{partition}_offsets"]


def auc(y: np.ndarray, p: np.ndarray) -> float:
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    ranks[order] = np.arange(1, len(p) + 1)
    pos = y > 0.5
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum()))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def local_sgd(w: np.ndarray, x: np.ndarray, y: np.ndarray, rnd: int, cid: int) -> np.ndarray:
    """The plain client: 1 epoch of mini-batch SGD (same order as raypipe's client_order)."""
    w = w.copy()
    order = np.random.default_rng([0, rnd, cid]).permutation(len(y))
    for s in range(0, len(y), BATCH):
        rows = order[s : s + BATCH]
        xb = x[rows]
        r = (sigmoid(xb @ w[:-1] + w[-1]) - y[rows]) / len(rows)
        w[:-1] -= LR * (xb.T @ r)
        w[-1] -= LR * r.sum()
    return w


# ----------------------------------------------------------------------------- children
def child_numpy(path: str, partition: str, rounds: int) -> dict:
    x, y, xt, yt, rows, offsets = load(path, partition)
    clients = [(x[rows[a:b]], y[rows[a:b]]) for a, b in itertools.pairwise(offsets)]
    w = np.zeros(x.shape[1] + 1)
    marks = [time.perf_counter()]
    for rnd in range(1, rounds + 1):
        ws = [local_sgd(w, cx, cy, rnd, cid) for cid, (cx, cy) in enumerate(clients)]
        n = np.array([len(cy) for _, cy in clients], dtype=np.float64)
        w = np.tensordot(n / n.sum(), np.array(ws), axes=1)
        final = auc(yt, xt @ w[:-1] + w[-1])
        marks.append(time.perf_counter())
    return {"auc": final, "marks": marks, "weights": w.tolist()}


PROTECTIONS = ("plain", "dp", "secagg", "he", "dp+secagg", "dp+he")
#: The smoke run's: each mechanism, and DP composed with one (each variant is a process and a Ray).
QUICK_PROTECTIONS = "secagg,he,dp+secagg"


def protected(protection: str, rounds: int) -> tuple:
    """The strategy and federation spec of a protection variant."""
    from raypipe.federated.privacy import DPFixedClipping, SecAggConfig
    from raypipe.federated.privacy.homomorphic import HeConfig
    from raypipe.federated.simulation import FederationSpec
    from raypipe.federated.strategies import FedAvg

    parts = set(protection.split("+"))
    strategy = FedAvg()
    if "dp" in parts:
        strategy = DPFixedClipping(strategy, noise_multiplier=0.5, clipping_norm=1.0)
    spec = FederationSpec(
        rounds=rounds,
        evaluate_clients=False,
        secure_aggregation=SecAggConfig(num_shares=10, reconstruction_threshold=4)
        if "secagg" in parts
        else None,
        homomorphic=HeConfig() if "he" in parts else None,
    )
    return strategy, spec


def child_raypipe(path: str, partition: str, rounds: int, protection: str = "plain") -> dict:
    sys.path.insert(0, str(ROOT))
    from raypipe.engine.federation import RayFederation
    from raypipe.engine.runtime import RayRuntime, RuntimeOptions
    from raypipe.federated.clients import build_shards
    from raypipe.federated.simulation import run_federation

    x, y, xt, yt, rows, offsets = load(path, partition)
    parts = [rows[a:b] for a, b in itertools.pairwise(offsets)]
    with RayRuntime(RuntimeOptions(num_cpus=2, object_store_bytes=512 * 1024**2)):
        setup = time.perf_counter()
        backend = RayFederation(build_shards(x, y, parts, 2, holdout_fraction=0.0), num_cpus=0.5)
        backend.wait_ready()
        setup = time.perf_counter() - setup
        strategy, spec = protected(protection, rounds)
        result = run_federation(backend, strategy, spec, np.zeros(x.shape[1] + 1), test=(xt, yt))
        backend.close()
    seconds = [r.seconds for r in result.history]
    params = x.shape[1] + 1
    extra = [r.privacy_bytes_per_client for r in result.history if r.privacy_bytes_per_client]
    # down: the weights; up: the parameters, or the protocol's messages / ciphertexts instead
    per_client = 8 * params + (float(np.mean(extra)) if extra else 8 * params)
    return {
        "auc": result.final_test["auc"],
        "marks": list(np.cumsum([0.0, *seconds])),
        "weights": result.weights.tolist(),
        "actor_setup_s": setup,
        "bytes_per_client_round": per_client,
        "epsilon": result.history[-1].epsilon,
    }


def child_flower(path: str, partition: str, rounds: int) -> dict:
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    cache: dict = {}

    def data() -> tuple:
        if not cache:
            x, y, xt, yt, rows, offsets = load(path, partition)
            cache["clients"] = [
                (x[rows[a:b]], y[rows[a:b]]) for a, b in itertools.pairwise(offsets)
            ]
            cache["test"] = (xt, yt)
        return cache["clients"], cache["test"]

    clients_n = len(np.load(path)[f"{partition}_offsets"]) - 1
    client_app = ClientApp()

    @client_app.train()
    def train(msg: Message, context: Context) -> Message:
        cid = int(context.node_config["partition-id"])
        rnd = int(msg.content["config"]["server-round"])
        w = msg.content["arrays"].to_numpy_ndarrays()[0]
        cx, cy = data()[0][cid]
        new = local_sgd(w, cx, cy, rnd, cid)
        reply = RecordDict(
            {"arrays": ArrayRecord([new]), "metrics": MetricRecord({"num-examples": len(cy)})}
        )
        return Message(content=reply, reply_to=msg)

    marks: list[float] = []
    result: dict = {}

    def central(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        w = arrays.to_numpy_ndarrays()[0]
        xt, yt = data()[1]
        result["auc"] = auc(yt, xt @ w[:-1] + w[-1])
        result["weights"] = w.tolist()
        marks.append(time.perf_counter())
        return MetricRecord({"auc": result["auc"]})

    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(
            fraction_train=1.0,
            fraction_evaluate=0.0,
            min_train_nodes=clients_n,
            min_available_nodes=clients_n,
        )
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord([np.zeros(21)]),
            num_rounds=rounds,
            evaluate_fn=central,
        )

    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=clients_n,
        backend_config={
            "init_args": {"num_cpus": 2, "address": "local", "include_dashboard": False},
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        },
    )
    return {"auc": result.get("auc"), "marks": marks, "weights": result.get("weights")}


# ----------------------------------------------------------------------------- parent
def ensure_flower() -> Path | None:
    """Flower's own venv (created or completed here), or None when it cannot be installed."""
    try:
        return peer_python(FLOWER_VENV, "flwr", FLOWER_VERSION, extras="simulation")
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"Flower could not be installed: {exc}")
        return None


def run_child(
    python: str, variant: str, path: str, partition: str, rounds: int, timeout: int
) -> dict:
    started = time.perf_counter()
    child, _, protection = variant.partition("+")
    with subprocess.Popen(
        [
            python,
            str(HERE),
            "--protection",
            protection or "plain",
            "--child",
            child,
            "--data",
            path,
            "--partition",
            partition,
            "--rounds",
            str(rounds),
        ],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: Ray's processes join it
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            return {
                "error": f"timed out after {timeout} s",
                "wall_s": time.perf_counter() - started,
            }
        wall = time.perf_counter() - started
        _kill_group(proc)  # leftovers (e.g. a raylet) of a child that exited
    line = next((ln for ln in stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        return {"error": (stderr or stdout)[-1500:], "wall_s": wall}
    out = json.loads(line[len("RESULT ") :])
    marks = out.pop("marks")
    out["wall_s"] = wall
    out["rounds_s"] = marks[-1] - marks[0]
    out["steady_rounds_per_s"] = (len(marks) - 2) / (marks[-1] - marks[1])
    return out


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL every process left in the child's process group (the child leads it)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke: 40k rows, 5 rounds, the IID split, fewer protected variants",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--rows", type=int)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rounds", type=int)
    parser.add_argument(
        "--partitions", help="default: iid,dir (iid above 200 clients or with --quick)"
    )
    parser.add_argument("--no-flower", action="store_true")
    parser.add_argument("--timeout", type=int, default=600)
    parser.add_argument("--child")
    parser.add_argument("--data")
    parser.add_argument("--partition")
    parser.add_argument("--protection", default="plain", choices=PROTECTIONS)
    parser.add_argument(
        "--protections",
        help="raypipe variants beyond plain, on the IID split (comma-separated; '' for none; "
        f"default: {','.join(PROTECTIONS[1:])}, with --quick {QUICK_PROTECTIONS})",
    )
    args = parser.parse_args()
    if args.child:
        if args.child == "raypipe":
            out = child_raypipe(args.data, args.partition, args.rounds, args.protection)
        else:
            fn = {"numpy": child_numpy, "flower": child_flower}[args.child]
            out = fn(args.data, args.partition, args.rounds)
        print("RESULT " + json.dumps(out), flush=True)
        return
    # not at the top: each child is a timed whole process and has no use for it (~60 ms)
    from run_all import describe_machine

    rows = args.rows or (40_000 if args.quick else 200_000)
    if args.partitions is None:
        args.partitions = "iid" if args.quick or args.clients > 200 else "iid,dir"
    rounds = args.rounds or (5 if args.quick else 20)
    if args.protections is None:
        args.protections = QUICK_PROTECTIONS if args.quick else ",".join(PROTECTIONS[1:])
    flower = None if args.no_flower else ensure_flower()
    report: dict = {
        "rows": rows,
        "clients": args.clients,
        "rounds": rounds,
        "machine": describe_machine(),
        "partitions": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "fl.npz")
        make_data(Path(path), rows, args.clients, args.partitions.split(","))
        from sklearn.linear_model import LogisticRegression

        z = np.load(path)
        central = auc(
            z["yt"],
            LogisticRegression(max_iter=1000).fit(z["x"], z["y"]).decision_function(z["xt"]),
        )
        for partition in args.partitions.split(","):
            results = {
                "numpy": run_child(sys.executable, "numpy", path, partition, rounds, args.timeout),
                "raypipe": run_child(
                    sys.executable, "raypipe", path, partition, rounds, args.timeout
                ),
            }
            if partition == "iid":
                for protection in filter(None, args.protections.split(",")):
                    results[f"raypipe+{protection}"] = run_child(
                        sys.executable,
                        f"raypipe+{protection}",
                        path,
                        partition,
                        rounds,
                        args.timeout,
                    )
            if flower is not None:
                results["flower"] = run_child(
                    str(flower), "flower", path, partition, rounds, args.timeout
                )
            ref = results["numpy"].get("weights")
            for _name, res in results.items():
                if ref is not None and res.get("weights") is not None:
                    res["max_weight_diff_vs_numpy"] = float(
                        np.abs(np.array(res["weights"]) - np.array(ref)).max()
                    )
                res.pop("weights", None)
            report["partitions"][partition] = {"central_auc": central, **results}
    _print(report)
    iid = report["partitions"].get("iid", next(iter(report["partitions"].values())))
    flower_res = iid.get("flower", {})
    summary = {
        "raypipe_s": iid["raypipe"].get("wall_s"),
        # a failed or timed-out Flower run has no time; its error says why
        "flower_s": None if "error" in flower_res else flower_res.get("wall_s"),
        "flower_error": flower_res.get("error"),
        "auc_federated": iid["raypipe"].get("auc"),
        "auc_centralized": iid["central_auc"],
        "raypipe_rounds_per_s": iid["raypipe"].get("steady_rounds_per_s"),
        "numpy_rounds_per_s": iid["numpy"].get("steady_rounds_per_s"),
        "flower_rounds_per_s": iid.get("flower", {}).get("steady_rounds_per_s"),
        "plain_round_s": _round_s(iid.get("raypipe")),
        "secagg_round_s": _round_s(iid.get("raypipe+secagg")),
        "he_round_s": _round_s(iid.get("raypipe+he")),
        "flower_round_s": _round_s(iid.get("flower")),
        "auc_secagg": iid.get("raypipe+secagg", {}).get("auc"),
        "auc_he": iid.get("raypipe+he", {}).get("auc"),
    }
    report.update(summary)
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))


def _round_s(result: dict | None) -> float | None:
    """Steady seconds per round (rounds 2..R) of a variant that ran."""
    if not result or "error" in result or not result.get("steady_rounds_per_s"):
        return None
    return 1.0 / result["steady_rounds_per_s"]


def _print(report: dict) -> None:
    print(
        f"\n{report['clients']} clients, {report['rows']} rows, {report['rounds']} rounds "
        f"({report['machine']})"
    )
    head = (
        f"{'partition':9} {'impl':17} {'wall s':>8} {'rounds s':>9} {'s/round':>8} "
        f"{'B/client/round':>15} {'AUC':>7} {'central':>8} {'|w-numpy|':>10}"
    )
    print(head)
    for partition, res in report["partitions"].items():
        for name, r in res.items():
            if not isinstance(r, dict):
                continue
            if "error" in r:
                print(f"{partition:9} {name:17} FAILED: {r['error'][-300:]}")
                continue
            print(
                f"{partition:9} {name:17} {r['wall_s']:8.2f} {r['rounds_s']:9.2f} "
                f"{1 / r['steady_rounds_per_s']:8.3f} "
                f"{r.get('bytes_per_client_round', float('nan')):15.0f} {r['auc']:7.4f} "
                f"{res['central_auc']:8.4f} "
                f"{r.get('max_weight_diff_vs_numpy', float('nan')):10.2e}"
            )
        if (
            "raypipe" in res
            and "flower" in res
            and "error" not in res["flower"]
            and "error" not in res["raypipe"]
        ):
            wall = res["flower"]["wall_s"] / res["raypipe"]["wall_s"]
            steady = res["raypipe"]["steady_rounds_per_s"] / res["numpy"]["steady_rounds_per_s"]
            print(
                f"{partition:9} flower/raypipe wall {wall:.2f}x, raypipe/numpy steady {steady:.2f}x"
            )
        elif "timed out" in res.get("flower", {}).get("error", "") and "error" not in res.get(
            "raypipe", {"error": "missing"}
        ):
            bound = res["flower"]["wall_s"] / res["raypipe"]["wall_s"]
            print(f"{partition:9} flower/raypipe wall > {bound:.2f}x (Flower hit --timeout)")


if __name__ == "__main__":
    main()
