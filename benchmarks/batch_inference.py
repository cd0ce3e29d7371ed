"""Batch inference: raypipe against a hand-written single process and idiomatic Ray Data.

Data: N Parquet files of ``player_id`` int64, ``event_date`` date32 and ``f00..f31`` float32
(8 latent factors plus noise); an XGBoost ``binary:logistic`` model, 200 trees of depth 6.
Task: read, ``score`` = probability, write Parquet with ``player_id`` and ``score``.

Variants, on the same files, in one run:

(a) single  one process: ``pq.read_table`` per file, one F-ordered float32 matrix,
            ``inplace_predict(nthread=CPUs)``, ``pq.write_table``.
(b) raydata ``read_parquet().select_columns().map_batches(<class holding the booster>,
            compute=ActorPoolStrategy(size=2), num_cpus=0.5, batch_format="pyarrow",
            batch_size=65536).write_parquet()`` (``num_cpus=0.5``: the 2-CPU hang fix).
(c) raypipe ``run_batch_inference`` with the actor pool, on the already running Ray. One
            :class:`~raypipe.engine.scoring.ActorPoolRunner` serves all of (c)'s runs, as in a
            driver that scores several inputs: its actor starts in the first run; every run
            loads the model again (its load is timed).

(a) runs once before Ray starts (its peak memory). Then Ray starts once (not timed); (c) runs once
on 1x to start its actor (reported apart as the cold start: process start, imports, model load),
then timed rounds alternate (a) and (c) (the machine is shared: alternation spreads other users'
load over both); then (c)'s actor ends, and (b) warms and runs its rounds. Outputs are checked
equal. Peak memory is the peak of the summed PSS of this process and all its descendants (Ray's
processes included), sampled every 0.25 s. Data runs at 1x and 4x (``--quick`` runs (b) on 1x only:
it is slow).

Usage::

    python benchmarks/batch_inference.py --quick --json /tmp/infer.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FEATURES = [f"f{i:02d}" for i in range(32)]


# ----------------------------------------------------------------------------- data and model
def make_data(folder: Path, files: int, rows: int, seed: int = 0) -> int:
    """``files`` Parquet files of ``rows`` rows; returns their total bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(8, len(FEATURES))).astype(np.float32)
    for index in range(files):
        latent = rng.normal(size=(rows, 8)).astype(np.float32)
        values = latent @ mixing + rng.normal(size=(rows, len(FEATURES))).astype(np.float32)
        columns = {
            "player_id": pa.array(np.arange(index * rows, (index + 1) * rows, dtype=np.int64)),
            "event_date": pa.array(np.full(rows, 19000 + index, dtype=np.int32)).cast(pa.date32()),
        }
        for j, name in enumerate(FEATURES):
            columns[name] = pa.array(values[:, j])
        pq.write_table(pa.table(columns), folder / f"part-{index:04d}.parquet")
    return sum(path.stat().st_size for path in folder.glob("*.parquet"))


def make_model(path: Path, trees: int) -> None:
    import xgboost as xgb

    rng = np.random.default_rng(1)
    mixing = rng.normal(size=(8, len(FEATURES))).astype(np.float32)
    latent = rng.normal(size=(200_000, 8)).astype(np.float32)
    values = latent @ mixing + rng.normal(size=(200_000, len(FEATURES))).astype(np.float32)
    logits = values[:, 0] - 0.5 * values[:, 3] + 0.2 * values[:, 7] + rng.normal(size=200_000)
    labels = (logits > 0).astype(np.int8)
    matrix = xgb.DMatrix(values, label=labels, feature_names=FEATURES)
    params = {
        "objective": "binary:logistic",
        "max_depth": 6,
        "eta": 0.1,
        "tree_method": "hist",
        "nthread": os.cpu_count() or 1,
    }
    xgb.train(params, matrix, trees).save_model(str(path))


# ----------------------------------------------------------------------------- memory sampling
def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def tree_pss_bytes(root: int) -> int:
    """Summed PSS (RSS where PSS is unreadable) of ``root`` and its descendants."""
    children = _children_map()
    stack, total = [root], 0
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/smaps_rollup") as handle:
                for line in handle:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            try:
                with open(f"/proc/{pid}/statm") as handle:
                    total += int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except OSError:
                pass
    return total


class PeakSampler:
    """Samples the process tree's memory in a thread; ``peak`` in bytes."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_pss_bytes(os.getpid()))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_pss_bytes(os.getpid()))


# ----------------------------------------------------------------------------- variants
def run_single(model_path: Path, inputs: Path, output: Path) -> None:
    import xgboost as xgb

    booster = xgb.Booster(model_file=str(model_path))
    booster.set_param({"nthread": os.cpu_count() or 1})
    output.mkdir(parents=True)
    for path in sorted(inputs.glob("*.parquet")):
        table = pq.read_table(path, columns=["player_id", *FEATURES])
        matrix = np.empty((table.num_rows, len(FEATURES)), dtype=np.float32, order="F")
        for j, name in enumerate(FEATURES):
            matrix[:, j] = table.column(name).to_numpy()
        scores = booster.inplace_predict(matrix, validate_features=False).astype(np.float32)
        pq.write_table(
            pa.table({"player_id": table["player_id"], "score": scores}), output / path.name
        )


class _RayDataScorer:
    def __init__(self, model_bytes: bytes) -> None:
        import xgboost as xgb

        self.booster = xgb.Booster(model_file=bytearray(model_bytes))
        self.booster.set_param({"nthread": 1})

    def __call__(self, batch: pa.Table) -> pa.Table:
        matrix = np.empty((batch.num_rows, len(FEATURES)), dtype=np.float32, order="F")
        for j, name in enumerate(FEATURES):
            matrix[:, j] = batch.column(name).to_numpy()
        scores = self.booster.inplace_predict(matrix, validate_features=False).astype(np.float32)
        return pa.table({"player_id": batch["player_id"], "score": scores})


def run_raydata(model_path: Path, inputs: Path, output: Path) -> None:
    import ray

    dataset = ray.data.read_parquet(str(inputs)).select_columns(["player_id", *FEATURES])
    dataset.map_batches(
        _RayDataScorer,
        fn_constructor_args=(model_path.read_bytes(),),
        compute=ray.data.ActorPoolStrategy(size=2),
        num_cpus=0.5,
        batch_format="pyarrow",
        batch_size=65536,
    ).write_parquet(str(output))


def run_raypipe(model_path: Path, inputs: Path, output: Path, runner: Any) -> object:
    from raypipe.inference import InferenceSpec, read_model, run_batch_inference

    shape = runner.shape
    spec = InferenceSpec(input_url=str(inputs), output_url=str(output), id_columns=("player_id",))
    return run_batch_inference(
        read_model(str(model_path)),
        spec,
        runner,
        workers=shape.actors,
        threads_per_worker=shape.threads,
        cluster_cpus=os.cpu_count() or 1,
    )


def read_scores(output: Path, variant: str) -> pa.Table:
    if variant == "raypipe":
        from raypipe.io.dataset import read_dataset

        table = read_dataset(str(output), columns=["player_id", "score"])
    else:
        files = sorted(output.rglob("*.parquet"))
        table = pa.concat_tables([pq.read_table(path) for path in files])
    return table.sort_by("player_id")


# ----------------------------------------------------------------------------- harness
def timed(fn) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    with PeakSampler(interval=0.25) as sampler:
        started = time.perf_counter()
        fn()
        seconds = time.perf_counter() - started
    return seconds, sampler.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, one round")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--actors", type=int, default=None, help="raypipe actors (default 1/node)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    files, rows, trees = (4, 50_000, 200) if args.quick else (16, 250_000, 200)
    rounds = args.rounds or (1 if args.quick else 3)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="raypipe-bench-infer-"))
    model_path = workdir / "model.ubj"
    make_model(model_path, trees)
    scales = {"1x": files, "4x": 4 * files}
    sizes = {
        scale: make_data(workdir / f"in-{scale}", count, rows) for scale, count in scales.items()
    }
    results: dict[str, dict[str, list[tuple[float, int]]]] = {s: {} for s in scales}

    def out(name: str) -> Path:
        path = workdir / "out" / name
        shutil.rmtree(path, ignore_errors=True)
        return path

    single_peak: dict[str, int] = {}
    for scale in scales:  # (a) once before Ray exists: its memory is its own process tree
        single_peak[scale] = timed(
            partial(run_single, model_path, workdir / f"in-{scale}", out(f"a-{scale}"))
        )[1]

    from raypipe.engine.runtime import RayRuntime, RuntimeOptions
    from raypipe.engine.scoring import ActorPoolRunner, pool_shape

    with RayRuntime(RuntimeOptions(num_cpus=os.cpu_count() or 2)):
        idle = tree_pss_bytes(os.getpid())
        advice: list[str] = []
        runner = ActorPoolRunner(pool_shape(args.actors))
        # The first run of each on 1x is reported apart as its cold start: worker processes
        # import xgboost and pyarrow once (seconds on this machine). (c) runs all its rounds
        # before (b) starts, so Ray Data's idle worker processes do not count in (c)'s memory.
        cold = {
            "raypipe": timed(
                lambda: run_raypipe(model_path, workdir / "in-1x", out("c-cold"), runner)
            )[0]
        }
        for scale in scales:
            for _ in range(rounds):  # all (c) first: Ray Data's idle workers would inflate it
                # (a) and (c) alternate so that load from other users of the machine hits both
                single_s = timed(
                    partial(run_single, model_path, workdir / f"in-{scale}", out(f"a-{scale}"))
                )[0]
                results[scale].setdefault("single", []).append((single_s, single_peak[scale]))
                holder: list[object] = []
                run = partial(
                    run_raypipe,
                    model_path,
                    workdir / f"in-{scale}",
                    out(f"c-{scale}"),
                    runner,
                )
                seconds = timed(lambda run=run, holder=holder: holder.append(run()))
                results[scale].setdefault("raypipe", []).append(seconds)
                advice = list(holder[0].advice)  # type: ignore[attr-defined]
        runner.close()  # its actor reserves a CPU that Ray Data's actors need
        cold["raydata"] = timed(lambda: run_raydata(model_path, workdir / "in-1x", out("b-cold")))[
            0
        ]
        raydata_scales = ["1x"] if args.quick else list(scales)  # (b) is slow: 1x only if quick
        for scale in raydata_scales:
            for _ in range(rounds):
                seconds = timed(
                    partial(run_raydata, model_path, workdir / f"in-{scale}", out(f"b-{scale}"))
                )
                results[scale].setdefault("raydata", []).append(seconds)
        for scale in scales:
            reference = read_scores(workdir / "out" / f"a-{scale}", "single")
            for variant, letter in (("raydata", "b"), ("raypipe", "c")):
                if variant not in results[scale]:
                    continue
                other = read_scores(workdir / "out" / f"{letter}-{scale}", variant)
                assert other["player_id"].equals(reference["player_id"]), f"{variant} ids differ"
                np.testing.assert_allclose(
                    other["score"].to_numpy(), reference["score"].to_numpy(), rtol=1e-6
                )
    summary = {}
    print(
        f"\nbatch inference: {files}x{rows:,} rows (1x) and 4x, {trees} trees, "
        f"{rounds} round(s), {os.cpu_count()} CPUs; idle Ray tree PSS {idle / 2**20:.0f} MiB"
    )
    print(
        f"{'scale':<5} {'variant':<8} {'median s':>9} {'rows/s':>12} {'MB/s':>8} "
        f"{'peak MiB':>9} {'vs single':>10}"
    )
    for scale, count in scales.items():
        total_rows = count * rows
        single_s = statistics.median(s for s, _ in results[scale]["single"])
        for variant in ("single", "raydata", "raypipe"):
            if variant not in results[scale]:
                print(f"{scale:<5} {variant:<8} {'(not run in --quick)':>30}")
                continue
            seconds = statistics.median(s for s, _ in results[scale][variant])
            peak = max(p for _, p in results[scale][variant]) / 2**20
            summary[f"{scale}_{variant}"] = {
                "s": seconds,
                "peak_mib": peak,
                "rows_per_s": total_rows / seconds,
            }
            print(
                f"{scale:<5} {variant:<8} {seconds:>9.2f} {total_rows / seconds:>12,.0f} "
                f"{sizes[scale] / seconds / 1e6:>8.1f} {peak:>9.0f} {single_s / seconds:>9.2f}x"
            )
    ratio_single = summary["1x_single"]["s"] / summary["1x_raypipe"]["s"]
    ratio_raydata = summary["1x_raydata"]["s"] / summary["1x_raypipe"]["s"]
    memory_growth = summary["4x_raypipe"]["peak_mib"] / summary["1x_raypipe"]["peak_mib"]
    print(
        f"raypipe vs single {ratio_single:.2f}x (target >= 0.9), vs Ray Data "
        f"{ratio_raydata:.2f}x (target >= 2), peak 4x/1x {memory_growth:.2f} (target <= 1.2)"
    )
    print(
        f"first run on a fresh Ray (worker imports included), 1x: raypipe "
        f"{cold['raypipe']:.2f} s, Ray Data {cold['raydata']:.2f} s"
    )
    for line in advice:
        print(f"raypipe advice: {line}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rows": files * rows,
                    "single_s": summary["1x_single"]["s"],
                    "raydata_s": summary["1x_raydata"]["s"],
                    "raypipe_s": summary["1x_raypipe"]["s"],
                    "raypipe_peak_mib": summary["1x_raypipe"]["peak_mib"],
                    "raypipe_peak_growth_4x": memory_growth,
                    "idle_ray_pss_mib": idle / 2**20,
                    "cold_first_run_s": cold,
                    "quick": args.quick,
                    "detail": summary,
                },
                indent=2,
            )
        )
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
