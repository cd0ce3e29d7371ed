"""Two-sample drift statistics, with Evidently's binning and TFDV's divergences.

Every function takes a column's reference and current distribution as a :class:`Sample`:
either raw finite values or exact value counts (what partition tasks merge), and returns the
same number either way. Semantics follow Evidently 0.7 (``legacy/calculations/stattests``) and
TFDV (``anomalies/metrics.cc``); see ``shared/reference`` section D.2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from scipy import stats
from scipy.spatial import distance

__all__ = [
    "Sample",
    "binned_percents",
    "binned_view",
    "chisquare_pvalue",
    "fill_zeroes",
    "hellinger",
    "js_distance",
    "js_divergence_log2",
    "kl_div",
    "ks_pvalue",
    "linf_distance",
    "psi",
    "sturges_edges",
    "union_nunique",
    "wasserstein_normed",
    "z_pvalue",
]

#: Evidently bins numerical columns with more distinct reference values than this (Sturges).
BINNING_UNIQUE = 20
#: Evidently's floor for empty bins (PSI and KL).
EMPTY_BIN_SHARE = 1e-4


@dataclass(frozen=True)
class Sample:
    """One side of a column: ``values`` (raw, NaN/inf/nulls removed) or ``counts`` per key."""

    values: np.ndarray | None = None
    counts: dict[Any, int] | None = None

    def __post_init__(self) -> None:
        if (self.values is None) == (self.counts is None):
            raise ValueError("a Sample holds either raw values or counts")

    @property
    def _counts(self) -> dict[Any, int]:
        """``counts`` of a sample without raw values (never None then: see __post_init__)."""
        assert self.counts is not None
        return self.counts

    @property
    def size(self) -> int:
        if self.values is not None:
            return len(self.values)
        return int(sum(self._counts.values()))

    @cached_property
    def _unique(self) -> tuple[np.ndarray, np.ndarray]:
        if self.values is not None:
            return np.unique(self.values, return_counts=True)
        pairs = [(k, c) for k, c in self._counts.items() if c > 0]
        keys = np.empty(len(pairs), dtype=object)
        keys[:] = [k for k, _ in pairs]
        return keys, np.array([c for _, c in pairs], dtype=np.int64)

    def nunique(self) -> int:
        return len(self._unique[0])

    def keys(self) -> list[Any]:
        return list(self._unique[0].tolist())

    def count_of(self, keys: Sequence[Any]) -> np.ndarray:
        """Counts of each key (exact-value bins)."""
        found, counts = self._unique
        table = dict(zip(found.tolist(), counts.tolist(), strict=True))
        return np.array([table.get(k, 0) for k in keys], dtype=np.float64)

    def numeric(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Values and weights (``None`` for raw values) as float64."""
        if self.values is not None:
            return np.asarray(self.values, dtype=np.float64), None
        keys = np.array(list(self._counts), dtype=np.float64)
        weights = np.array(list(self._counts.values()), dtype=np.float64)
        return keys, weights

    def histogram(self, edges: np.ndarray) -> np.ndarray:
        values, weights = self.numeric()
        return np.histogram(values, bins=edges, weights=weights)[0].astype(np.float64)

    def min_max(self) -> tuple[float, float]:
        values, weights = self.numeric()
        if weights is not None:
            values = values[weights > 0]
        return float(values.min()), float(values.max())


def union_nunique(reference: Sample, current: Sample) -> int:
    """Distinct values over both samples."""
    if reference.values is not None and current.values is not None:
        both = np.concatenate([reference._unique[0], current._unique[0]])
        return len(np.unique(both))
    return len(set(reference.keys()) | set(current.keys()))


def sturges_edges(reference: Sample, current: Sample) -> np.ndarray:
    """``np.histogram_bin_edges(ref | cur, bins="sturges")`` from sizes and ranges only."""
    lows, highs = zip(reference.min_max(), current.min_max(), strict=True)
    low, high = min(lows), max(highs)
    size = reference.size + current.size
    first, last = (low - 0.5, high + 0.5) if low == high else (low, high)
    width = (high - low) / (np.log2(size) + 1.0)
    bins = int(np.ceil((last - first) / width)) if width else 1
    return np.linspace(first, last, bins + 1, endpoint=True, dtype=np.float64)


def binned_percents(
    reference: Sample, current: Sample, *, numerical: bool, feel_zeroes: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Evidently's ``get_binned_data``: shares per bin of each side.

    Numerical columns with more than 20 distinct reference values use Sturges edges over both
    samples; other columns use one bin per distinct value. ``feel_zeroes`` replaces empty bins
    by ``1e-4`` (or ``min_nonzero / 1e6`` when the smallest share is ``<= 1e-4``).
    """
    _, ref, cur = binned_view(reference, current, numerical=numerical)
    if feel_zeroes:
        ref, cur = fill_zeroes(ref), fill_zeroes(cur)
    return ref, cur


def binned_view(
    reference: Sample, current: Sample, *, numerical: bool
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Bin labels and the (unfilled) shares of each side, as :func:`binned_percents` bins."""
    if numerical and reference.nunique() > BINNING_UNIQUE:
        edges = sturges_edges(reference, current)
        labels = [f"{edges[i]:.4g}..{edges[i + 1]:.4g}" for i in range(len(edges) - 1)]
        ref = reference.histogram(edges) / reference.size
        cur = current.histogram(edges) / current.size
        return labels, ref, cur
    keys = sorted(set(reference.keys()) | set(current.keys()), key=_order)
    ref = reference.count_of(keys) / reference.size
    cur = current.count_of(keys) / current.size
    return [str(key) for key in keys], ref, cur


def fill_zeroes(shares: np.ndarray) -> np.ndarray:
    """Evidently's empty-bin floor (PSI, KL)."""
    out = shares.copy()
    nonzero = out[out != 0]
    if len(nonzero) == len(out) or not len(nonzero):
        return out
    smallest = float(nonzero.min())
    out[out == 0] = smallest / 1e6 if smallest <= EMPTY_BIN_SHARE else EMPTY_BIN_SHARE
    return out


def ks_pvalue(reference: Sample, current: Sample) -> float:
    """p-value of ``scipy.stats.ks_2samp`` (two-sided, method auto)."""
    return float(stats.ks_2samp(_expand(reference), _expand(current)).pvalue)


def wasserstein_normed(reference: Sample, current: Sample) -> float:
    """``wasserstein_distance(ref, cur) / max(std(ref), 0.001)`` (population std)."""
    ref_values, ref_weights = reference.numeric()
    cur_values, cur_weights = current.numeric()
    if ref_weights is None:
        std = float(np.std(ref_values))
    else:
        mean = np.average(ref_values, weights=ref_weights)
        std = float(np.sqrt(np.average((ref_values - mean) ** 2, weights=ref_weights)))
    value = stats.wasserstein_distance(ref_values, cur_values, ref_weights, cur_weights)
    return float(value) / max(std, 0.001)


def chisquare_pvalue(reference: Sample, current: Sample) -> float:
    """Evidently's chi-square: observed = current counts, expected = ref counts * n_cur/n_ref."""
    keys = sorted(set(reference.keys()) | set(current.keys()), key=_order)
    observed = current.count_of(keys)
    expected = reference.count_of(keys) * (current.size / reference.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(stats.chisquare(observed, expected).pvalue)


def z_pvalue(reference: Sample, current: Sample) -> float:
    """Evidently's two-proportion Z-test on a column with at most two values."""
    keys = sorted(set(reference.keys()) | set(current.keys()), key=_order)
    if len(keys) > 2:
        raise ValueError("the Z-test needs a column with at most two distinct values")
    if len(keys) == 1:
        return 1.0
    n1, n2 = reference.size, current.size
    p1 = float(reference.count_of(keys[1:])[0]) / n1
    p2 = float(current.count_of(keys[1:])[0]) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    denominator = math.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    if denominator == 0:
        return 1.0
    z = (p1 - p2) / denominator
    return float(2 * (1 - stats.norm.cdf(abs(z))))


def js_distance(ref: np.ndarray, cur: np.ndarray) -> float:
    """Evidently's Jensen-Shannon *distance* (natural log): ``scipy...jensenshannon``."""
    return float(distance.jensenshannon(ref, cur))


def js_divergence_log2(ref: np.ndarray, cur: np.ndarray) -> float:
    """TFDV's Jensen-Shannon *divergence* in bits, capped at 1."""
    value = float(distance.jensenshannon(ref, cur, base=2)) ** 2
    return min(value, 1.0)


def psi(ref: np.ndarray, cur: np.ndarray) -> float:
    """Population stability index ``sum (ref - cur)*ln(ref/cur)`` on zero-filled shares."""
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def kl_div(ref: np.ndarray, cur: np.ndarray) -> float:
    """``scipy.stats.entropy(ref, cur)`` on zero-filled shares (KL of ref from cur, nats)."""
    return float(stats.entropy(ref, cur))


def hellinger(ref: np.ndarray, cur: np.ndarray) -> float:
    """Hellinger distance ``sqrt(sum (sqrt(p) - sqrt(q))**2) / sqrt(2)`` of normalised shares."""
    p, q = ref / ref.sum(), cur / cur.sum()
    return float(np.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)) / np.sqrt(2))


def linf_distance(reference: Sample, current: Sample) -> float:
    """TFDV's L-infinity distance: ``max |p_i - q_i|``, each side over its own total."""
    keys = sorted(set(reference.keys()) | set(current.keys()), key=_order)
    p = reference.count_of(keys) / reference.size
    q = current.count_of(keys) / current.size
    return float(np.max(np.abs(p - q))) if keys else 0.0


def _expand(sample: Sample) -> np.ndarray:
    values, weights = sample.numeric()
    if weights is None:
        return values
    return np.repeat(values, weights.astype(np.int64))


def _order(key: Any) -> tuple[int, Any]:
    # Mixed key types (e.g. bool and int) sort without comparing across types.
    return (0, key) if isinstance(key, (int, float, np.number)) else (1, str(key))
