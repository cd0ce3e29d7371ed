"""Regression detection over build telemetry: a two-proportion test per segment, explained away.

Telemetry becomes a dense cube ``(day, build, *dimension values)`` of sessions and outcome
counts, summed cumulatively over days. For a build on a day, each outcome's rate in each segment
(``dimension = value``) is compared with the same segment in the builds released before it (one-
sided pooled z test, Bonferroni over the segments, outcomes and builds tested, and a minimum rate
ratio so that a real but harmless wobble is not a regression). The strongest significant segment
is recorded and its sessions removed before testing again, so that a build crashing on one
device family is not also reported as crashing on every level (the device's share of each
level). A finding's first day is the first day it was significant: its time to detect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from scipy.stats import norm

from raypipe.errors import DataError

__all__ = ["Finding", "Telemetry", "detect", "naive_findings", "score_findings"]

#: Most findings recorded per build and outcome (the explain-away loop's bound).
MAX_FINDINGS_PER_OUTCOME = 5


@dataclass(frozen=True)
class Telemetry:
    """Cumulative counts ``(days, builds, *dims)`` per count column, with the axes' labels."""

    cumulative: Mapping[str, np.ndarray]
    builds: list[str]
    release_day: np.ndarray
    dimensions: list[str]
    values: list[np.ndarray]
    days: np.ndarray

    @classmethod
    def from_table(
        cls,
        table: pa.Table,
        *,
        build_column: str,
        time_column: str,
        dimensions: Sequence[str],
        counts: Sequence[str],
        releases: Mapping[str, int] | None = None,
    ) -> Telemetry:
        """Build the cube; builds are ordered by release day (given, or first day seen)."""
        import polars as pl

        needed = [build_column, time_column, *dimensions, *counts]
        missing = [c for c in needed if c not in table.column_names]
        if missing:
            raise DataError(
                f"telemetry lacks column(s) {', '.join(f'`{c}`' for c in missing)}; received "
                f"{table.column_names}",
                hint="set `build_column`, `time_column`, `dimensions`, `exposure` and "
                "`outcomes` to its columns",
            )
        frame = pl.DataFrame(table.select(needed)).with_columns(pl.col(build_column).cast(str))
        first_seen = dict(frame.group_by(build_column).agg(pl.col(time_column).min()).iter_rows())
        release = {b: int((releases or {}).get(b, first_seen[b])) for b in first_seen}
        builds = sorted(release, key=lambda b: (release[b], b))
        days = np.sort(frame[time_column].unique().to_numpy())
        axes = [np.searchsorted(days, frame[time_column].to_numpy())]
        axes.append(np.asarray([builds.index(b) for b in frame[build_column].to_list()]))
        values = []
        for dimension in dimensions:
            labels = np.sort(frame[dimension].cast(str).unique().to_numpy())
            values.append(labels)
            axes.append(np.searchsorted(labels, frame[dimension].cast(str).to_numpy()))
        shape = (len(days), len(builds), *[len(v) for v in values])
        flat = np.ravel_multi_index(tuple(axes), shape)
        cumulative = {}
        for column in counts:
            cube = np.bincount(
                flat,
                weights=frame[column].to_numpy().astype(np.float64),
                minlength=int(np.prod(shape)),
            ).reshape(shape)
            cumulative[column] = np.cumsum(cube, axis=0)
        return cls(
            cumulative,
            builds,
            np.asarray([release[b] for b in builds]),
            list(dimensions),
            values,
            days,
        )


@dataclass(frozen=True)
class Finding:
    """A regression: ``outcome`` rate of ``build`` where ``dimension == value`` rose."""

    build: str
    outcome: str
    dimension: str
    value: str
    baseline_rate: float
    rate: float
    z: float
    sessions: int
    share: float
    first_day: int
    days_to_detect: int

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.build, self.outcome, self.dimension, self.value)

    @property
    def ratio(self) -> float:
        return self.rate / self.baseline_rate if self.baseline_rate > 0 else float("inf")


def _segment_totals(cube: np.ndarray, dimension: int) -> np.ndarray:
    """Sum a ``(*dims)`` cube over every dimension but ``dimension``."""
    others = tuple(axis for axis in range(cube.ndim) if axis != dimension)
    totals: np.ndarray = cube.sum(axis=others)
    return totals


def _test_build(
    telemetry: Telemetry,
    day: int,
    build: int,
    exposure: str,
    outcome: str,
    z_threshold: float,
    min_ratio: float,
    min_sessions: int,
) -> list[tuple[int, int, float, float, float, float, float]]:
    """Greedy explain-away tests of one build on one day: (dim, value, p0, p1, z, n1, share)."""
    current_n = telemetry.cumulative[exposure][day, build].copy()
    current_c = telemetry.cumulative[outcome][day, build].copy()
    base_n = telemetry.cumulative[exposure][day, :build].sum(axis=0)
    base_c = telemetry.cumulative[outcome][day, :build].sum(axis=0)
    total = current_n.sum()
    found = []
    for _ in range(MAX_FINDINGS_PER_OUTCOME):
        best = None
        for axis in range(current_n.ndim):
            n1, c1 = _segment_totals(current_n, axis), _segment_totals(current_c, axis)
            n0, c0 = _segment_totals(base_n, axis), _segment_totals(base_c, axis)
            with np.errstate(divide="ignore", invalid="ignore"):
                p1, p0 = c1 / n1, c0 / n0
                pooled = (c0 + c1) / (n0 + n1)
                z = (p1 - p0) / np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
                ok = (n1 >= min_sessions) & (n0 >= min_sessions) & (p1 >= min_ratio * p0)
            z = np.where(ok & np.isfinite(z), z, -np.inf)
            value = int(np.argmax(z))
            if z[value] >= z_threshold and (best is None or z[value] > best[4]):
                best = (
                    axis,
                    value,
                    float(p0[value]),
                    float(p1[value]),
                    float(z[value]),
                    float(n1[value]),
                    float(n1[value] / total),
                )
        if best is None:
            break
        found.append(best)
        index: list[slice | int] = [slice(None)] * current_n.ndim
        index[best[0]] = best[1]
        current_n[tuple(index)] = 0  # explain these sessions away
        current_c[tuple(index)] = 0
    return found


def detect(
    telemetry: Telemetry,
    *,
    exposure: str,
    outcomes: Sequence[str],
    alpha: float = 0.01,
    min_ratio: float = 1.5,
    min_sessions: int = 200,
) -> list[Finding]:
    """Every build's regressions as of the last day, each with the day it was first seen.

    Parameters
    ----------
    alpha
        Family-wise false-alarm rate per day, split (Bonferroni) over every segment, outcome and
        build tested.
    min_ratio
        A segment's rate must be at least this multiple of the earlier builds' to count.
    min_sessions
        Segments with fewer sessions (in the build or before it) are not tested.
    """
    segments = sum(len(v) for v in telemetry.values)
    tests = max(1, segments * len(outcomes) * max(1, len(telemetry.builds) - 1))
    z_threshold = float(norm.isf(alpha / tests))
    first: dict[tuple[str, str, str, str], int] = {}
    final: list[Finding] = []
    last = len(telemetry.days) - 1
    for day_index, day in enumerate(telemetry.days):
        for build in range(1, len(telemetry.builds)):
            if telemetry.release_day[build] > day:
                continue
            for outcome in outcomes:
                for axis, value, p0, p1, z, n1, share in _test_build(
                    telemetry,
                    day_index,
                    build,
                    exposure,
                    outcome,
                    z_threshold,
                    min_ratio,
                    min_sessions,
                ):
                    key = (
                        telemetry.builds[build],
                        outcome,
                        telemetry.dimensions[axis],
                        str(telemetry.values[axis][value]),
                    )
                    first.setdefault(key, int(day))
                    if day_index == last:
                        final.append(
                            Finding(
                                *key,
                                p0,
                                p1,
                                z,
                                int(n1),
                                share,
                                first[key],
                                first[key] - int(telemetry.release_day[build]),
                            )
                        )
    return final


def naive_findings(
    telemetry: Telemetry,
    *,
    exposure: str,
    outcomes: Sequence[str],
    min_ratio: float = 1.5,
    min_sessions: int = 200,
) -> list[tuple[str, str, str, str]]:
    """The baseline: every segment whose rate is ``min_ratio`` times the previous build's, on the
    last day, without a test and without explaining away."""
    keys = []
    for build in range(1, len(telemetry.builds)):
        for outcome in outcomes:
            now_n = telemetry.cumulative[exposure][-1, build]
            now_c = telemetry.cumulative[outcome][-1, build]
            before_n = telemetry.cumulative[exposure][-1, build - 1]
            before_c = telemetry.cumulative[outcome][-1, build - 1]
            for axis, dimension in enumerate(telemetry.dimensions):
                n1, c1 = _segment_totals(now_n, axis), _segment_totals(now_c, axis)
                n0, c0 = _segment_totals(before_n, axis), _segment_totals(before_c, axis)
                with np.errstate(divide="ignore", invalid="ignore"):
                    flagged = (
                        (n1 >= min_sessions)
                        & (n0 >= min_sessions)
                        & (c1 / n1 >= min_ratio * np.maximum(c0 / n0, 1e-12))
                    )
                keys += [
                    (telemetry.builds[build], outcome, dimension, str(telemetry.values[axis][v]))
                    for v in np.nonzero(flagged)[0]
                ]
    return keys


def score_findings(
    found: Sequence[tuple[str, str, str, str]], injected: Sequence[tuple[str, str, str, str]]
) -> dict[str, float]:
    """Precision, recall and F1 of finding keys ``(build, outcome, dimension, value)``."""
    found_set, injected_set = set(found), set(injected)
    hits = len(found_set & injected_set)
    precision = hits / len(found_set) if found_set else (1.0 if not injected_set else 0.0)
    recall = hits / len(injected_set) if injected_set else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "found": len(found_set),
        "injected": len(injected_set),
        "hits": hits,
    }
