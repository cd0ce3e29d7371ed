"""Run every benchmark one after another, then rewrite the figures table of the README.

Every figure in ``benchmarks/README.md`` then comes from one sitting on one machine: the
benchmarks run back to back (never two at once, they would share the CPUs), each writes its
``--json``, and the table between the ``figures`` markers is rendered from those files with the
machine (CPU model, cores, memory) and the date. Each row's figures and targets come from
``summaries.py``.

Usage::

    python benchmarks/run_all.py                 # full sizes (an hour or more): rewrites the README
    python benchmarks/run_all.py --quick         # smoke sizes; writes results/figures.md only
    python benchmarks/run_all.py --render-only   # re-render the table from results/*.json

``make bench`` and ``make bench-quick`` run the first two.
"""

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
from typing import Any

from summaries import (
    Summary,
    summarize_batch_inference,
    summarize_churn,
    summarize_continual,
    summarize_drift,
    summarize_feature_store,
    summarize_features,
    summarize_federated,
    summarize_hpo,
    summarize_serving,
    summarize_studio,
    summarize_studio_generation,
    summarize_synth,
)

logger = logging.getLogger("benchmarks.run_all")

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
BEGIN = "<!-- figures:begin (benchmarks/run_all.py rewrites this part) -->"
END = "<!-- figures:end -->"


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
        # Flower did not finish in 900 s here: 300 s still bounds its lead from below (> 25x).
        ("--clients", "1000", "--partitions", "iid", "--timeout", "300"),
        in_quick=False,
    ),
    Benchmark("hpo", "hpo.py", summarize_hpo, ("--seeds", "3")),
    Benchmark("observability", "churn_observability.py", summarize_churn),
    Benchmark("feature_store", "feature_store.py", summarize_feature_store),
    Benchmark("serving", "serving.py", summarize_serving, ("--seconds", "6")),
    Benchmark("continual", "continual.py", summarize_continual, ("--players", "5000")),
    Benchmark(
        "continual_warm_start",
        "continual.py",
        summarize_continual,
        ("--players", "5000", "--warm-start"),
        in_quick=False,
    ),
    Benchmark("studio", "studio_models.py", summarize_studio),
    Benchmark(
        "studio_10m",
        "studio_models.py",
        summarize_studio_generation,
        ("--generate-only", "--players", "10000000", "--set", "stages.simulate.with.seeds=2"),
        in_quick=False,
    ),
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


def child_environment() -> dict[str, str]:
    """This environment with the checkout first on ``PYTHONPATH``.

    The processes a benchmark starts (serving's servers, Ray's workers) import raypipe too; with
    the checkout first they all run this checkout's code, not an installed copy of raypipe.
    """
    paths = [str(HERE.parent), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


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
            command,
            cwd=HERE.parent,
            env=child_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
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


def unsummarizable(outcome: Outcome) -> str | None:
    """Why the summary cannot read ``outcome``'s JSON (a figure it reads is missing), or None."""
    try:
        outcome.benchmark.summarize(outcome.data)
    except (KeyError, IndexError, TypeError, ZeroDivisionError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def render_row(outcome: Outcome) -> str:
    benchmark = outcome.benchmark
    command = f"`{benchmark.display()}`"
    if outcome.data is None:
        failed = f"failed (exit {outcome.returncode})" if outcome.returncode else "not run"
        return f"| {command} | {failed}, no JSON; see `{Path(outcome.log).name}` | — | — |"
    problem = unsummarizable(outcome)
    if problem is not None:
        # The benchmark changed what it writes: say so instead of guessing a figure.
        return (
            f"| {command} | JSON without the expected figures ({problem}); "
            f"update `{benchmark.summarize.__name__}` in summaries.py | — | — |"
        )
    summary = benchmark.summarize(outcome.data)
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
    failed = [
        o.benchmark.name
        for o in outcomes
        if o.returncode or o.data is None or unsummarizable(o) is not None
    ]
    if failed:
        logger.error("failed, without JSON, or without the expected figures: %s", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
