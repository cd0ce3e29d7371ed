"""Where a scoring run spent its time, and what to change.

Workers time three phases per unit: reading (Parquet decode of the needed columns), predicting
(Arrow to matrix plus the model) and writing (output Parquet). The phase with the largest share
is the bottleneck; the advice names the knob that moves it (batch size, actors, file size).

Every statement follows from the measurements, and none contradicts another: capacity advice
("add nodes") only when the worker slots were busy and every CPU predicted; idle slots are
explained first (too few files, or start-up), and more actors are suggested only when there are
files enough to keep them busy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from raypipe.inference.ledger import UnitOutcome

__all__ = ["BUSY_ENOUGH", "PhaseTimes", "advise", "phase_times"]

#: Below this share of the slots' wall time busy, idle time, not a phase, limits the run.
BUSY_ENOUGH = 0.7


@dataclass(frozen=True)
class PhaseTimes:
    """Summed worker seconds per phase, and the run's wall time and shape."""

    read_s: float
    predict_s: float
    write_s: float
    wall_s: float
    workers: int
    threads_per_worker: int
    cluster_cpus: int
    units: int
    rows: int
    input_bytes: int
    batch_rows: int

    @property
    def busy_s(self) -> float:
        return self.read_s + self.predict_s + self.write_s

    @property
    def slots(self) -> int:
        """Units in flight at most: an actor scores as many units at once as it has threads."""
        return max(1, min(self.units, self.workers * self.threads_per_worker))

    @property
    def busy_fraction(self) -> float:
        """Share of the slots' wall time spent reading, predicting or writing (0..1)."""
        capacity = self.wall_s * self.slots
        return min(1.0, self.busy_s / capacity) if capacity > 0 else 1.0

    @property
    def used_cpus(self) -> int:
        return self.workers * self.threads_per_worker

    @property
    def bottleneck(self) -> str:
        phases = {"reading": self.read_s, "predicting": self.predict_s, "writing": self.write_s}
        return max(phases, key=phases.__getitem__)


def phase_times(
    outcomes: Sequence[UnitOutcome],
    *,
    wall_s: float,
    workers: int,
    threads_per_worker: int,
    cluster_cpus: int,
    input_bytes: int,
    batch_rows: int,
) -> PhaseTimes:
    """Sum the phases of the units scored in this run (resumed units are not counted)."""
    fresh = [outcome for outcome in outcomes if not outcome.resumed and outcome.status == "ok"]
    return PhaseTimes(
        read_s=sum(outcome.read_s for outcome in fresh),
        predict_s=sum(outcome.predict_s for outcome in fresh),
        write_s=sum(outcome.write_s for outcome in fresh),
        wall_s=wall_s,
        workers=workers,
        threads_per_worker=threads_per_worker,
        cluster_cpus=cluster_cpus,
        units=len(fresh),
        rows=sum(outcome.rows_in for outcome in fresh),
        input_bytes=input_bytes,
        batch_rows=batch_rows,
    )


def advise(times: PhaseTimes) -> list[str]:
    """Human sentences: the time split, the bottleneck and what to change."""
    if times.busy_s <= 0 or times.units == 0:
        return ["nothing was scored in this run (every unit was already committed)"]
    share = {
        "reading": times.read_s / times.busy_s,
        "predicting": times.predict_s / times.busy_s,
        "writing": times.write_s / times.busy_s,
    }
    lines = [
        f"worker time: reading {times.read_s:.2f} s ({share['reading']:.0%}), predicting "
        f"{times.predict_s:.2f} s ({share['predicting']:.0%}), writing {times.write_s:.2f} s "
        f"({share['writing']:.0%}); wall {times.wall_s:.2f} s with {times.workers} worker(s) x "
        f"{times.threads_per_worker} thread(s) on {times.cluster_cpus} CPU(s)"
    ]
    busy = times.busy_fraction
    idle = busy < BUSY_ENOUGH
    few_files = times.units < 2 * max(times.used_cpus, 1)
    if idle:
        lines.append(
            f"worker slots were busy {busy:.0%} of the wall time, so idle time limits this run "
            "more than any phase: "
            + (
                f"there are only {times.units} files for {times.used_cpus} worker slot(s) "
                f"({times.workers} worker(s) x {times.threads_per_worker} thread(s)); split the "
                "input into more files (at least two per slot)"
                if few_files
                else "start-up and scheduling dominate (worker processes importing libraries, "
                "small files); score more data per run or use fewer, larger files"
            )
        )
    bottleneck = times.bottleneck
    lead = "of the busy time, " if idle else ""
    if bottleneck == "predicting":
        advice = f"{lead}prediction is the bottleneck"
        if idle:
            advice += ": more nodes or actors will not help until the slots are kept busy"
        elif times.used_cpus < times.cluster_cpus and times.units < times.cluster_cpus:
            advice += (
                f": only {times.used_cpus} of {times.cluster_cpus} CPUs predict, and "
                f"{times.units} files can keep at most {times.units} busy; split the input into "
                "more files, then raise `--actors`"
            )
        elif times.used_cpus < times.cluster_cpus:
            advice += (
                f": only {times.used_cpus} of {times.cluster_cpus} CPUs predict; raise "
                "`--actors` (threads per actor follow the CPUs per actor)"
            )
        else:
            advice += (
                f": the worker slots were busy {busy:.0%} of the time and every CPU predicts, "
                "so add nodes, or use a smaller model (fewer or shallower trees); batch size "
                "and file size will not help much"
            )
        lines.append(advice)
    elif bottleneck == "reading":
        mean_mib = times.input_bytes / max(times.units, 1) / 1024**2
        lines.append(
            f"{lead}reading is the bottleneck (input files average {mean_mib:.1f} MiB): keep "
            "only the columns the model needs in the input, use larger files (64-256 MiB) if "
            f"they are small, raise `--batch-size` (now {times.batch_rows})"
            + ("" if idle else ", or raise `--actors` so reads overlap prediction")
        )
    else:
        lines.append(
            f"{lead}writing is the bottleneck: write fewer, larger output files (fewer "
            "`--partition-by` values, a larger target file size), drop `--shap` if not needed, "
            "or put the output on faster storage"
        )
    return lines
