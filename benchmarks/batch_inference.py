"""Batch inference: raypipe (CLI and job) against a hand-written process and Ray Data.

Data: N Parquet files of ``player_id`` int64, ``event_date`` date32 and ``f00..f31`` float32
(8 latent factors plus noise); an XGBoost ``binary:logistic`` model, 200 trees of depth 6.
Task: read, ``score`` = probability, write Parquet with ``player_id`` and ``score``.

Each variant runs in its own process, started fresh for every round, and is timed from outside
as a user would time it (interpreter start, imports, Ray start, actor start and shutdown all
included); its peak memory is the peak summed PSS of that process and all its descendants (Ray's
processes included), sampled every 0.25 s:

(a) single  one process: ``pq.read_table`` per file, one F-ordered float32 matrix,
            ``inplace_predict(nthread=CPUs)``, ``pq.write_table``.
(b) raydata ``ray.init``, then ``read_parquet().select_columns().map_batches(<class holding the
            booster>, compute=ActorPoolStrategy(size=2), num_cpus=0.5, batch_format="pyarrow",
            batch_size=65536).write_parquet()`` (``num_cpus=0.5``: the 2-CPU hang fix).
(c) cli     ``raypipe infer --model M --input IN --output OUT --id-columns player_id``: with no
            ``--address`` or ``--actors`` it scores in its own process on all CPUs (on one
            machine Ray's default pool is one actor doing the same, after Ray's start-up).
(d) job     ``raypipe run job.yaml --force score``: the ``inference.score`` stage through the
            driver; its input is an ``ingest`` stage committed once before the rounds (cached in
            every timed run), so no stage asks for Ray and the stage scores where ``raypipe
            infer`` does: in the driver's process, Ray never started. Its output is removed before
            each round: ``--force`` reruns the stage, and the stage would find the same run
            (same model, same input) committed and score nothing.

Start-up: (a) and (c) on one file of 1,000 rows, where the fixed cost is everything
(``startup_s``); (c)'s start on a local Ray is measured too, with ``--actors 1``
(``cli_ray``). Rounds alternate the variants (the machine is shared: alternation spreads other
users' load over all). Outputs are checked equal to (a)'s. raypipe's modules are byte-compiled
first, as ``pip install`` leaves them and as the libraries every variant imports already are: on
a machine that sets ``PYTHONDONTWRITEBYTECODE`` each run would otherwise compile some 140 modules
again (~60 ms of (c)'s and (d)'s start-up on 2 CPUs).
Data runs at 1x and 4x (``--quick``, the smoke run: small sizes, 1x only).

Usage::

    python benchmarks/batch_inference.py --quick --json /tmp/infer.json
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import raypipe

FEATURES = [f"f{i:02d}" for i in range(32)]
RAYPIPE = [sys.executable, "-m", "raypipe.cli.main"]
VARIANTS = ("single", "raydata", "cli", "job")


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


def read_scores(output: Path, variant: str) -> pa.Table:
    if variant in ("cli", "job"):
        from raypipe.io.dataset import read_dataset

        table = read_dataset(str(output), columns=["player_id", "score"])
    else:
        files = sorted(output.rglob("*.parquet"))
        table = pa.concat_tables([pq.read_table(path) for path in files])
    return table.sort_by("player_id")


# ----------------------------------------------------------------------------- one process each
def child(variant: str, model: Path, inputs: Path, output: Path) -> None:
    """Run ``single`` or ``raydata`` in this (fresh) process."""
    if variant == "single":
        run_single(model, inputs, output)
        return
    import ray

    ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False)
    try:
        run_raydata(model, inputs, output)
    finally:
        ray.shutdown()


def job_spec(workdir: Path, scale: str, inputs: Path, model: Path) -> Path:
    """A job: ``ingest`` the scale's files (committed once, then cached), ``score`` them."""
    spec = workdir / f"job-{scale}.yaml"
    spec.write_text(
        json.dumps(
            {
                "name": f"bench_{scale}",
                "data_dir": str(workdir / "job-data"),
                "stages": {
                    "raw": {
                        "uses": "ingest",
                        "with": {
                            "source": f"{inputs}/*.parquet",
                            "format": "parquet",
                            "infer": True,
                        },
                    },
                    "score": {
                        "uses": "inference.score",
                        "inputs": {"data": "raw.data"},
                        "with": {"model": str(model), "id_columns": ["player_id"]},
                    },
                },
            }
        )
    )
    return spec


def job_output(workdir: Path, scale: str) -> Path:
    return workdir / "job-data" / "jobs" / f"bench_{scale}" / "datasets" / "score" / "scores"


def command(variant: str, model: Path, inputs: Path, output: Path, spec: Path | None) -> list[str]:
    if variant in ("cli", "cli_ray"):  # cli_ray: Ray's pool whatever the input's size
        return [*RAYPIPE, "infer", "--model", str(model), "--input", str(inputs),
                "--output", str(output), "--id-columns", "player_id",
                *(["--actors", "1"] if variant == "cli_ray" else [])]  # fmt: skip
    if variant == "job":
        return [*RAYPIPE, "run", str(spec), "--force", "score"]
    return [sys.executable, __file__, "--child", variant, str(model), str(inputs), str(output)]


def timed_process(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and the peak PSS of the process tree of ``argv``; raises if it fails."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak, done = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_pss_bytes(process.pid))
            done.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{argv} failed ({process.returncode}):\n{output.decode()[-3000:]}")
    return seconds, peak


# ----------------------------------------------------------------------------- harness
def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, one round")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    files, rows, trees = (4, 50_000, 200) if args.quick else (16, 250_000, 200)
    rounds = args.rounds or (1 if args.quick else 3)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="raypipe-bench-infer-"))
    workdir.mkdir(parents=True, exist_ok=True)
    compileall.compile_dir(Path(raypipe.__file__).parent, quiet=1)  # see the module's docstring
    model_path = workdir / "model.ubj"
    make_model(model_path, trees)
    scales = {"1x": files} if args.quick else {"1x": files, "4x": 4 * files}
    sizes = {
        scale: make_data(workdir / f"in-{scale}", count, rows) for scale, count in scales.items()
    }
    make_data(workdir / "in-tiny", 1, 1_000)

    def out(name: str) -> Path:
        path = workdir / "out" / name
        shutil.rmtree(path, ignore_errors=True)
        return path

    specs = {s: job_spec(workdir, s, workdir / f"in-{s}", model_path) for s in scales}
    for spec in specs.values():  # commits `raw` once: later runs find it cached
        subprocess.run([*RAYPIPE, "run", str(spec)], check=True, capture_output=True)
    startup = {
        variant: statistics.median(
            timed_process(command(variant, model_path, workdir / "in-tiny", out(f"t-{variant}"),
                                  None))[0]
            for _ in range(rounds)
        )
        for variant in ("single", "cli", "cli_ray")
    }  # fmt: skip
    results: dict[str, dict[str, list[tuple[float, int]]]] = {s: {} for s in scales}
    for scale in scales:
        variants = list(VARIANTS)
        for _ in range(rounds):
            for variant in variants:
                if variant == "job":  # else the stage finds its run committed: nothing to do
                    shutil.rmtree(job_output(workdir, scale), ignore_errors=True)
                argv = command(
                    variant, model_path, workdir / f"in-{scale}", out(f"{variant}-{scale}"),
                    specs[scale],
                )  # fmt: skip
                results[scale].setdefault(variant, []).append(timed_process(argv))
        reference = read_scores(workdir / "out" / f"single-{scale}", "single")
        for variant in variants[1:]:
            where = job_output(workdir, scale) if variant == "job" else workdir / "out"
            other = read_scores(where if variant == "job" else where / f"{variant}-{scale}",
                                variant)  # fmt: skip
            assert other["player_id"].equals(reference["player_id"]), f"{variant} ids differ"
            np.testing.assert_allclose(
                other["score"].to_numpy(), reference["score"].to_numpy(), rtol=1e-6
            )
    summary = report(results, scales, rows, sizes, trees, rounds, startup)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rows": files * rows,
                    "single_s": summary["1x_single"]["s"],
                    "raydata_s": summary["1x_raydata"]["s"],
                    "raypipe_s": summary["1x_cli"]["s"],
                    "job_s": summary["1x_job"]["s"],
                    "raypipe_peak_mib": max(summary[f"{s}_{v}"]["peak_mib"]
                                            for s in scales for v in ("cli", "job")),
                    "startup_s": startup,
                    "quick": args.quick,
                    "detail": summary,
                },
                indent=2,
            )
        )  # fmt: skip
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


def report(results, scales, rows, sizes, trees, rounds, startup):  # type: ignore[no-untyped-def]
    """Print the table; return the medians by ``<scale>_<variant>``."""
    summary = {}
    print(
        f"\nbatch inference: {scales['1x']}x{rows:,} rows (1x){' and 4x' * (len(scales) > 1)}, "
        f"{trees} trees, "
        f"{rounds} round(s), {os.cpu_count()} CPUs; every run a fresh process, start-up included"
    )
    print(
        f"{'scale':<5} {'variant':<8} {'median s':>9} {'rows/s':>12} {'MB/s':>8} "
        f"{'peak MiB':>9} {'vs single':>10}"
    )
    for scale, count in scales.items():
        total_rows = count * rows
        single_s = statistics.median(s for s, _ in results[scale]["single"])
        for variant in VARIANTS:
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
    for scale in scales:
        single = summary[f"{scale}_single"]["s"]
        line = ", ".join(
            f"{v} {single / summary[f'{scale}_{v}']['s']:.2f}x" for v in ("cli", "job")
        )
        raydata = summary.get(f"{scale}_raydata")
        vs_raydata = (
            f"; cli vs Ray Data {raydata['s'] / summary[f'{scale}_cli']['s']:.2f}x (target >= 2)"
            if raydata
            else ""
        )
        print(f"{scale}: raypipe vs single: {line} (target >= 0.9){vs_raydata}")
    print(
        f"start-up (1,000 rows): single {startup['single']:.2f} s, raypipe infer "
        f"{startup['cli']:.2f} s (target <= 2 s; in process, as without --actors/--address), "
        f"on a local Ray (--actors 1) "
        f"{startup['cli_ray']:.2f} s"
    )
    return summary


if __name__ == "__main__":
    main()
