"""Per-variant success once labels arrive, with a test that stays valid when looked at daily.

The test is the **mixture sequential probability ratio test (mSPRT)** of Johari, Koomen,
Pekelis and Walsh ("Peeking at A/B tests", KDD 2017; "Always valid inference", Operations
Research 2022), in its two-sample normal form for the difference of success rates
``theta = p_variant - p_baseline``:

    V      = p_a (1 - p_a) / n_a + p_b (1 - p_b) / n_b        (plug-in variance of theta_hat)
    Lambda = sqrt(V / (V + tau^2)) * exp(theta_hat^2 tau^2 / (2 V (V + tau^2)))
    p_t    = min(p_{t-1}, 1 / Lambda_t),   p_0 = 1

``p_t`` is an *always-valid* p-value: the chance that it ever drops below ``alpha`` under
``theta = 0`` is at most ``alpha`` however often it is looked at (asymptotically, with the
plug-in variance), so a report every day, stopping at the first ``p <= alpha``, keeps the error
rate. ``tau^2`` is the mixing variance: the effect sizes the test is most sensitive to are of
order ``tau`` (default 0.01^2: differences of about one percentage point).

A row's success is whether the variant's decision was right: ``(score >= threshold) == label``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

__all__ = ["Look", "SequentialTest", "msprt_lambda", "variant_outcomes"]


def msprt_lambda(n_a: int, s_a: int, n_b: int, s_b: int, tau2: float) -> float:
    """The mixture likelihood ratio of ``theta != 0`` after ``n`` trials and ``s`` successes."""
    if min(n_a, n_b) == 0:
        return 1.0
    p_a, p_b = s_a / n_a, s_b / n_b
    variance = p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b
    if variance <= 0:
        variance = 0.25 / n_a + 0.25 / n_b  # all-equal outcomes: the largest Bernoulli variance
    theta = p_b - p_a
    log_lambda = 0.5 * math.log(variance / (variance + tau2)) + theta**2 * tau2 / (
        2 * variance * (variance + tau2)
    )
    return math.exp(min(log_lambda, 700.0))


@dataclass(frozen=True)
class Look:
    """One look at the data: cumulative counts so far and the always-valid p-value then."""

    at: str
    n_a: int
    s_a: int
    n_b: int
    s_b: int
    p_value: float


@dataclass
class SequentialTest:
    """An mSPRT of variant ``b`` against baseline ``a``, its looks kept in a JSON file.

    Parameters
    ----------
    alpha
        Error rate under no difference, whatever the number of looks.
    tau2
        Mixing variance (see the module docstring).
    """

    a: str
    b: str
    alpha: float = 0.05
    tau2: float = 1e-4
    looks: list[Look] = field(default_factory=list)

    @property
    def p_value(self) -> float:
        return self.looks[-1].p_value if self.looks else 1.0

    @property
    def decided(self) -> bool:
        return self.p_value <= self.alpha

    def look(self, at: str, n_a: int, s_a: int, n_b: int, s_b: int) -> Look:
        """Add a look with the cumulative counts up to now."""
        lam = msprt_lambda(n_a, s_a, n_b, s_b, self.tau2)
        look = Look(at, n_a, s_a, n_b, s_b, min(self.p_value, 1.0 / lam))
        self.looks.append(look)
        return look

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(path)

    @classmethod
    def load(
        cls, path: Path, a: str, b: str, alpha: float = 0.05, tau2: float = 1e-4
    ) -> SequentialTest:
        try:
            document = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(a, b, alpha, tau2)
        document["looks"] = [Look(**look) for look in document["looks"]]
        return cls(**document)


def variant_outcomes(
    log: pa.Table, labels: pa.Table, entity: str, label: str, threshold: float
) -> dict[str, dict[str, float]]:
    """Per variant: labelled requests, successes, success rate, mean score, log loss.

    ``log`` is the request log (``entity``, ``variant``, ``score``; every request of an entity
    counts), ``labels`` has the entity key column ``entity`` and a 0/1 ``label`` column.
    """
    truth = {
        str(k): int(v)
        for k, v in zip(labels[entity].to_pylist(), labels[label].to_pylist(), strict=True)
        if v is not None
    }
    out: dict[str, dict[str, float]] = {}
    variants = log["variant"].to_pylist()
    scores = np.asarray(log["score"].to_numpy(zero_copy_only=False), dtype=np.float64)
    keys = log["entity"].to_pylist()
    for variant in sorted(set(variants)):
        index = [i for i, v in enumerate(variants) if v == variant and keys[i] in truth]
        y = np.array([truth[keys[i]] for i in index], dtype=np.float64)
        s = np.clip(scores[index], 1e-7, 1 - 1e-7)
        hits = int(np.sum((s >= threshold) == (y == 1)))
        out[variant] = {
            "labelled": len(index),
            "successes": hits,
            "success_rate": hits / len(index) if index else float("nan"),
            "mean_score": float(s.mean()) if index else float("nan"),
            "log_loss": float(-np.mean(y * np.log(s) + (1 - y) * np.log(1 - s)))
            if index
            else float("nan"),
        }
    return out
