"""Run every benchmark one after another, then rewrite the figures table of the README.

Every figure in ``benchmarks/README.md`` then comes from one sitting on one machine: the
benchmarks run back to back (never two at once, they would share the CPUs), each writes its
``--json``, and the table between the ``figures`` markers is rendered from those files with the
machine (CPU model, cores, memory) and the date.

Usage::

    python benchmarks/run_all.py                 # full sizes (hours); rewrites the README table
    python benchmarks/run_all.py --quick         # smoke sizes (CI); writes results/figures.md only
    python benchmarks/run_all.py --render-only   # re-render the table from results/*.json

``make bench`` and ``make bench-quick`` run the first two.
"""

# ruff: noqa: RUF001 - the README's tables use the multiplication and minus signs

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from statistics import mean
from typing import Any

logger = logging.getLogger("benchmarks.run_all")

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
BEGIN = "<!-- figures:begin (benchmarks/run_all.py rewrites this part) -->"
END = "<!-- figures:end -->"


@dataclass(frozen=True)
class Check:
    """One target of a benchmark: what it says, and whether the run met it (None: unknown)."""

    target: str
    holds: bool | None


@dataclass(frozen=True)
class Summary:
    """The figures of one benchmark run, as one table row."""

    figures: str
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True)
class Benchmark:
    """A benchmark script, its full-size arguments, and how to summarise its JSON."""

    name: str
    script: str
    summarize: Callable[[Any], Summary]
    args: tuple[str, ...] = ()
    #: False when ``--quick`` would only repeat another benchmark's smoke run.
    in_quick: bool = True

    def command(self, json_path: Path, *, quick: bool) -> list[str]:
        size = ("--quick",) if quick else self.args
        return [sys.executable, str(HERE / self.script), *size, "--json", str(json_path)]

    def display(self) -> str:
        return " ".join((self.script, *self.args))


@dataclass(frozen=True)
class Outcome:
    """What one benchmark run left: its JSON (if any), its exit status and wall time."""

    benchmark: Benchmark
    data: Any = None
    returncode: int = 0
    seconds: float = 0.0
    log: str = ""


# --- summaries: each reads the keys its benchmark writes with --json -------------------------


def _x(value: float) -> str:
    return f"{value:.2f}×"


def _rate(value: float) -> str:
    return f"{value / 1e6:.2f}M/s" if value >= 1e6 else f"{value / 1e3:.0f}k/s"


def summarize_synth(data: Any) -> Summary:
    rows = data["rows"]
    largest = max(row["players"] for row in rows)
    parts = [
        f"{row['mode']} {_rate(row['events_per_s'])} ({_x(row['speedup_vs_single'])})"
        for row in rows
        if row["players"] == largest
    ]
    events = next(row["events"] for row in rows if row["players"] == largest)
    return Summary(f"{largest:,} players, {events / 1e6:.1f}M events: " + "; ".join(parts))


def summarize_features(data: Any) -> Summary:
    first, last = data[0], data[-1]
    ratio = last["raypipe_s"] / last["polars_s"]
    figures = [
        f"{row['rows'] / 1e6:g}M events: polars {row['polars_s']:.2f} s, "
        f"raypipe {row['raypipe_s']:.2f} s ({_x(row['raypipe_s'] / row['polars_s'])})"
        for row in data
    ]
    checks = [
        Check(f"≤ 1.25× polars at {last['rows'] / 1e6:g}M", ratio <= 1.25),
        Check("outputs equal at every size", all(row["equal"] for row in data)),
    ]
    if len(data) > 1:
        rows_growth = last["rows"] / first["rows"]
        time_growth = last["raypipe_s"] / first["raypipe_s"]
        figures.append(f"{rows_growth:.0f}× the rows in {time_growth:.2f}× the time")
        checks.append(
            Check(
                f"{rows_growth:.0f}× rows in ≤ {1.1 * rows_growth:.0f}× time",
                time_growth <= 1.1 * rows_growth,
            )
        )
    return Summary("; ".join(figures), tuple(checks))


def summarize_drift(data: Any) -> Summary:
    full = data["scaling"][-1]
    speedup = data["scipy_s"] / data["raypipe_s"]
    figures = (
        f"{full['rows']:,} rows × {full['columns']} columns: raypipe {data['raypipe_s']:.1f} s, "
        f"scipy loop {data['scipy_s']:.1f} s ({_x(speedup)} faster), "
        f"{len(full['drifted_columns'])} drifted"
    )
    return Summary(figures, (Check("same drift decisions", bool(data["same"])),))


def summarize_batch_inference(data: Any) -> Summary:
    single = data["single_s"] / data["raypipe_s"]
    raydata = data["raydata_s"] / data["raypipe_s"]
    peak = data["raypipe_peak_mib"]
    figures = (
        f"{data['rows']:,} rows: single {_rate(data['rows'] / data['single_s'])}, "
        f"Ray Data {_rate(data['rows'] / data['raydata_s'])}, "
        f"raypipe {_rate(data['rows'] / data['raypipe_s'])} = {_x(single)} single, "
        f"{_x(raydata)} Ray Data; peak {peak:,.0f} MiB"
    )
    checks = [
        Check("≥ 0.9× single", single >= 0.9),
        Check("≥ 2× Ray Data", raydata >= 2),
        Check("peak < 1.5 GiB", peak < 1536),
    ]
    if "job_s" in data:  # each variant in its own process, start-up included
        job = data["single_s"] / data["job_s"]
        startup = data["startup_s"]["cli"]
        on_ray = data["startup_s"].get("cli_ray")
        figures += f"; job {_x(job)} single; `raypipe infer` start-up {startup:.2f} s"
        if on_ray is not None:
            figures += f" (in process; on a local Ray {on_ray:.2f} s)"
        checks += [Check("job ≥ 0.9× single", job >= 0.9), Check("start-up ≤ 2 s", startup <= 2)]
    return Summary(figures, tuple(checks))


def summarize_federated(data: Any) -> Summary:
    raypipe_s, flower_s = data["raypipe_s"], data["flower_s"]
    gap = data["auc_centralized"] - data["auc_federated"]
    rounds = data["raypipe_rounds_per_s"] / data["numpy_rounds_per_s"]
    if flower_s is None:
        flower = f"Flower did not finish ({data.get('flower_error') or 'not run'})"
        lead: bool | None = None if data.get("flower_error") is None else True
    else:
        flower = f"Flower {flower_s:.1f} s ({_x(flower_s / raypipe_s)})"
        lead = flower_s / raypipe_s >= 2.5
    figures = (
        f"raypipe {raypipe_s:.1f} s whole process vs {flower}; steady "
        f"{data['raypipe_rounds_per_s']:.1f} rounds/s vs numpy "
        f"{data['numpy_rounds_per_s']:.1f} ({_x(rounds)}); AUC {data['auc_federated']:.4f} "
        f"federated, {data['auc_centralized']:.4f} central"
    )
    return Summary(
        figures,
        (
            Check("≥ 2.5× Flower", lead),
            Check("≥ 0.8× numpy rounds/s", rounds >= 0.8),
            Check("AUC gap ≤ 1 pt", gap <= 0.01),
        ),
    )


def summarize_hpo(data: Any) -> Summary:
    ratio = data["wall_ratio"]
    delta = data["raypipe_best_auc"] - data["optuna_best_auc"]
    figures = (
        f"Optuna {data['optuna_s']:.1f} s, best {data['optuna_best_auc']:.4f}; raypipe "
        f"{data['raypipe_s']:.1f} s, best {data['raypipe_best_auc']:.4f} = {_x(ratio)} the time, "
        f"{delta:+.4f} AUC (Bayes AUC {data['bayes_auc']:.4f})"
    )
    return Summary(
        figures,
        (
            Check("≤ 0.5× Optuna's time", ratio <= 0.5),
            Check("best AUC ≥ Optuna's − 0.002", delta >= -0.002),
        ),
    )


def summarize_churn(data: Any) -> Summary:
    results = data["results"]
    ratios = [result["ratio"] for result in results]
    figures = "; ".join(
        f"seed {r['seed']}: test AUC {r['test_auc']:.3f} / Bayes {r['bayes_auc']:.3f} "
        f"= {r['ratio']:.3f}"
        for r in results
    )
    return Summary(
        f"{results[0]['players']:,} players: {figures} (mean {mean(ratios):.3f})",
        (Check("AUC / Bayes AUC ≥ 0.97", min(ratios) >= 0.97),),
    )


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("synth", "synth_generation.py", summarize_synth),
    Benchmark("features", "feature_generation.py", summarize_features),
    Benchmark("drift", "drift.py", summarize_drift),
    Benchmark("inference", "batch_inference.py", summarize_batch_inference, ("--rounds", "2")),
    Benchmark("federated", "federated.py", summarize_federated),
    Benchmark(
        "federated_1000",
        "federated.py",
        summarize_federated,
        ("--clients", "1000", "--partitions", "iid", "--timeout", "900"),
        in_quick=False,
    ),
    Benchmark("hpo", "hpo.py", summarize_hpo, ("--seeds", "3")),
    Benchmark("observability", "churn_observability.py", summarize_churn),
)


# --- the machine, running, rendering -----------------------------------------------------------


def describe_machine(
    cpuinfo: Path = Path("/proc/cpuinfo"), meminfo: Path = Path("/proc/meminfo")
) -> str:
    """CPU model, logical cores, memory, Python and Ray versions, in one line."""
    model = platform.processor() or platform.machine()
    try:
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        model = found.group(1).strip() if found else model
    except OSError:
        pass
    memory = "memory unknown"
    try:
        found = re.search(r"^MemTotal:\s*(\d+) kB", meminfo.read_text(), re.MULTILINE)
        memory = f"{int(found.group(1)) / 2**20:.0f} GiB" if found else memory
    except OSError:
        pass
    try:
        ray = f"Ray {version('ray')}"
    except PackageNotFoundError:
        ray = "no Ray"
    return (
        f"{model}, {os.cpu_count()} logical cores, {memory}; "
        f"Python {platform.python_version()}, {ray}"
    )


def run_benchmark(benchmark: Benchmark, out: Path, *, quick: bool) -> Outcome:
    """Run one benchmark to the end; its output goes to the terminal and ``<name>.log``."""
    json_path = out / f"{benchmark.name}.json"
    json_path.unlink(missing_ok=True)  # a stale file from an earlier sitting must not count
    log_path = out / f"{benchmark.name}.log"
    command = benchmark.command(json_path, quick=quick)
    logger.info("running %s", " ".join(command[1:]))
    started = time.perf_counter()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, cwd=HERE.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            log.write(line)
        returncode = process.wait()
    seconds = time.perf_counter() - started
    logger.info("%s: exit %d after %.0f s", benchmark.name, returncode, seconds)
    return load_outcome(benchmark, out, returncode=returncode, seconds=seconds)


def load_outcome(
    benchmark: Benchmark, out: Path, *, returncode: int = 0, seconds: float = 0.0
) -> Outcome:
    json_path = out / f"{benchmark.name}.json"
    try:
        data = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError):
        data = None  # rendered as "no JSON", with the log to read
    return Outcome(benchmark, data, returncode, seconds, log=str(out / f"{benchmark.name}.log"))


def render_row(outcome: Outcome) -> str:
    benchmark = outcome.benchmark
    command = f"`{benchmark.display()}`"
    if outcome.data is None:
        failed = f"failed (exit {outcome.returncode})" if outcome.returncode else "not run"
        return f"| {command} | {failed}, no JSON; see `{Path(outcome.log).name}` | — | — |"
    try:
        summary = benchmark.summarize(outcome.data)
    except (KeyError, IndexError, TypeError, ZeroDivisionError) as exc:
        # The benchmark changed what it writes: say so instead of guessing a figure.
        return (
            f"| {command} | JSON without the expected figures ({type(exc).__name__}: {exc}); "
            f"update `{benchmark.summarize.__name__}` in run_all.py | — | — |"
        )
    if outcome.returncode:
        summary = Summary(f"{summary.figures} (exit {outcome.returncode})", summary.checks)
    targets = "; ".join(check.target for check in summary.checks) or "—"
    holds = "; ".join(
        {True: "yes", False: "**no**", None: "?"}[check.holds] for check in summary.checks
    )
    return f"| {command} | {summary.figures} | {targets} | {holds or '—'} |"


def render_figures(
    outcomes: Sequence[Outcome], *, machine: str, date: str, quick: bool = False
) -> str:
    """The README's figures section: when and where, then one row per benchmark."""
    size = "smoke sizes (`--quick`)" if quick else "full sizes"
    seconds = sum(outcome.seconds for outcome in outcomes)
    lines = [
        f"**Machine:** {machine}. All figures below come from one sitting on {date}: "
        f"`make bench` ran each benchmark at {size}, one after another "
        f"({seconds / 60:.0f} min in all), and rendered this table from their JSON.",
        "",
        "| script | result | target | holds |",
        "|---|---|---|---|",
        *(render_row(outcome) for outcome in outcomes),
    ]
    return "\n".join(lines)


def replace_figures(readme: str, figures: str) -> str:
    """``readme`` with the text between the figures markers replaced by ``figures``."""
    begin, end = readme.find(BEGIN), readme.find(END)
    if begin < 0 or end < begin:
        msg = (
            f"the README has no `{BEGIN}` ... `{END}` section; "
            "Hint: put both markers around the figures table"
        )
        raise ValueError(msg)
    # Blank lines around the table: a comment line right after a row would not end it everywhere.
    return f"{readme[: begin + len(BEGIN)]}\n\n{figures}\n\n{readme[end:]}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke sizes; leave the README")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="JSON and logs here")
    parser.add_argument(
        "--render-only", action="store_true", help="render from the JSON in --out, run nothing"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    sitting_path = args.out / "sitting.json"
    if args.render_only:
        sitting = json.loads(sitting_path.read_text())
        outcomes = [
            load_outcome(
                benchmark,
                args.out,
                returncode=sitting["returncodes"].get(benchmark.name, 0),
                seconds=sitting["seconds"].get(benchmark.name, 0.0),
            )
            for benchmark in BENCHMARKS
            if benchmark.name in sitting["seconds"]
        ]
    else:
        sitting = {
            "machine": describe_machine(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "quick": args.quick,
        }
        chosen = [b for b in BENCHMARKS if b.in_quick or not args.quick]
        outcomes = [run_benchmark(benchmark, args.out, quick=args.quick) for benchmark in chosen]
        sitting["seconds"] = {o.benchmark.name: round(o.seconds, 1) for o in outcomes}
        sitting["returncodes"] = {o.benchmark.name: o.returncode for o in outcomes}
        sitting_path.write_text(json.dumps(sitting, indent=2))
    figures = render_figures(
        outcomes, machine=sitting["machine"], date=sitting["date"], quick=sitting["quick"]
    )
    (args.out / "figures.md").write_text(figures + "\n")
    if sitting["quick"]:
        sys.stdout.write(figures + "\n")  # smoke figures never replace the README's
    else:
        README.write_text(replace_figures(README.read_text(), figures))
        logger.info("rewrote the figures in %s", README)
    failed = [o.benchmark.name for o in outcomes if o.returncode or o.data is None]
    if failed:
        logger.error("failed or without JSON: %s", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
