"""Drift: raypipe's distributed drift run against a single-process loop of the same scipy tests.

Data: a reference and a current dataset of R rows x C columns, each committed as Parquet in 8
files: 80 % continuous float64 columns (half of them shifted in ``current``), 10 % integer
columns with 5 values, 10 % string columns with 4 categories (some with a new category).
Evidently's default test per column (> 1000 reference rows: normed Wasserstein for numerical
columns with > 5 values, Jensen-Shannon distance otherwise; threshold 0.1).

Variants, in one run, on the same files:

(a) scipy   one process: ``pq.read_table`` of both datasets, then per column numpy/scipy:
            ``np.unique`` for the value count, ``scipy.stats.wasserstein_distance / std`` or
            ``np.histogram``/value counts + ``scipy.spatial.distance.jensenshannon``
            (string columns as Arrow dictionary codes).
(b) raypipe ``run_drift`` on a local Ray (started once, not timed; one warm-up run): counts
            per file group in tasks, merged on the driver; continuous columns in column tasks.

Both compute only the deciding test (``extra_scores=False``). Decisions (method, drifted) are
checked equal and scores close. Time is measured at 25 %, 50 % and 100 % of the columns.

Usage::

    python benchmarks/drift.py --quick --json /tmp/drift.json
    python benchmarks/drift.py --rows 1000000 --columns 100 --json drift.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import stats
from scipy.spatial import distance

FILES = 8


def make_data(root: Path, rows: int, columns: int, seed: int = 0) -> tuple[str, str]:
    from raypipe.io.dataset import DatasetWriter

    rng = np.random.default_rng(seed)
    urls = []
    for side, shift in (("reference", 0.0), ("current", 1.0)):
        writer = DatasetWriter(str(root / side))
        entries = []
        for part in range(FILES):
            n = rows // FILES
            data = {}
            for c in range(columns):
                kind = c % 10
                moved = shift if c % 2 == 0 else 0.0
                if kind < 8:
                    data[f"c{c:03d}"] = rng.normal(0.3 * moved, 1.0, n)
                elif kind == 8:
                    data[f"c{c:03d}"] = rng.integers(0, 5, n)
                else:
                    cats = ["a", "b", "c", "d"] + (["new"] if moved else [])
                    data[f"c{c:03d}"] = rng.choice(cats, n)
            entries += writer.write(pa.table(data), part)
        writer.commit(entries)
        urls.append(str(root / side))
    return urls[0], urls[1]


def scipy_loop(reference_url: str, current_url: str, names: list[str]) -> dict[str, tuple]:
    """The peer: read both datasets in one process, then Evidently's tests column by column."""
    ref = pq.read_table(_files(reference_url), columns=names)
    cur = pq.read_table(_files(current_url), columns=names)
    out = {}
    for name in names:
        if pa.types.is_string(ref.schema.field(name).type):
            # categories as integer codes of one dictionary over both sides (fast, exact)
            both = pa.chunked_array(ref.column(name).chunks + cur.column(name).chunks)
            codes = both.dictionary_encode().combine_chunks().indices.to_numpy()
            a, b = codes[: ref.num_rows], codes[ref.num_rows :]
            numerical = False
        else:
            a = ref.column(name).to_numpy()
            b = cur.column(name).to_numpy()
            numerical = a.dtype.kind in "if"
        if numerical:
            a = a[np.isfinite(a)]
            b = b[np.isfinite(b)]
        n_unique = len(np.unique(np.concatenate([a, b])))
        if numerical and n_unique > 5:
            score = stats.wasserstein_distance(a, b) / max(np.std(a), 0.001)
            method = "wasserstein"
        else:
            if numerical and len(np.unique(a)) > 20:
                edges = np.histogram_bin_edges(np.concatenate([a, b]), bins="sturges")
                p = np.histogram(a, edges)[0] / len(a)
                q = np.histogram(b, edges)[0] / len(b)
            else:
                keys, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
                p = np.bincount(inverse[: len(a)], minlength=len(keys)) / len(a)
                q = np.bincount(inverse[len(a) :], minlength=len(keys)) / len(b)
            score = float(distance.jensenshannon(p, q))
            method = "jensenshannon"
        out[name] = (method, float(score), bool(score >= 0.1))
    return out


def _files(url: str) -> list[str]:
    from raypipe.io.manifest import read_manifest

    return [f"{url}/{entry.path}" for entry in read_manifest(url).files]


def raypipe_run(executor: object, reference_url: str, current_url: str, names: list[str]) -> dict:
    from raypipe.io.manifest import read_manifest
    from raypipe.monitoring.drift_run import run_drift

    report = run_drift(
        reference_url,
        read_manifest(reference_url),
        current_url,
        read_manifest(current_url),
        executor,  # type: ignore[arg-type]
        columns=names,
        extra_scores=False,
    )
    return {c.column: (c.method, c.score, c.drifted) for c in report.columns}


def timed(fn, repeats: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k rows x 20 columns, 1 round")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.columns, args.repeats = 100_000, 20, 1

    from raypipe.engine.runtime import RayRuntime, RuntimeOptions
    from raypipe.engine.tasks import RayExecutor

    results = []
    with tempfile.TemporaryDirectory(prefix="raypipe-drift-bench-") as tmp:
        reference_url, current_url = make_data(Path(tmp), args.rows, args.columns)
        all_names = [f"c{c:03d}" for c in range(args.columns)]
        steps = sorted({max(1, args.columns * k // 4) for k in (1, 2, 4)})
        peer = {}
        for count in steps:
            peer[count] = timed(
                lambda count=count: scipy_loop(reference_url, current_url, all_names[:count]),
                args.repeats,
            )
        with RayRuntime(RuntimeOptions(num_cpus=args.cpus)) as runtime:
            executor = RayExecutor(runtime)
            raypipe_run(executor, reference_url, current_url, all_names[:2])  # warm workers
            for count in steps:
                names = all_names[:count]
                raypipe_s, mine = timed(
                    lambda names=names: raypipe_run(executor, reference_url, current_url, names),
                    args.repeats,
                )
                scipy_s, theirs = peer[count]
                same = all(
                    mine[n][0] == theirs[n][0]  # type: ignore[index]
                    and mine[n][2] == theirs[n][2]  # type: ignore[index]
                    and abs(mine[n][1] - theirs[n][1]) <= 1e-9 * max(1.0, abs(theirs[n][1]))  # type: ignore[index]
                    for n in names
                )
                drifted = sum(v[2] for v in mine.values())
                results.append(
                    {
                        "rows": args.rows,
                        "columns": count,
                        "raypipe_s": round(raypipe_s, 3),
                        "scipy_s": round(scipy_s, 3),
                        "ratio": round(scipy_s / raypipe_s, 3),
                        "same": same,
                        "drifted_columns": drifted,
                    }
                )
    print(f"drift: {args.rows:,} rows per side, {args.cpus} CPUs, median of {args.repeats}")
    print(f"{'columns':>8} {'raypipe s':>10} {'scipy s':>9} {'speed-up':>9} {'same':>5} drifted")
    for row in results:
        print(
            f"{row['columns']:>8} {row['raypipe_s']:>10.2f} {row['scipy_s']:>9.2f} "
            f"{row['ratio']:>8.2f}x {row['same']!s:>5} {row['drifted_columns']}"
        )
    full = results[-1]
    summary = {
        "benchmark": "drift",
        "raypipe_s": full["raypipe_s"],
        "scipy_s": full["scipy_s"],
        "same": all(r["same"] for r in results),
        "scaling": results,
        "cpus": args.cpus,
    }
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    if not summary["same"]:
        raise SystemExit("raypipe and the scipy loop disagree")


if __name__ == "__main__":
    main()
