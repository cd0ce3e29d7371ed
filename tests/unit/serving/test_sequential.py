from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa

from raypipe.serving.sequential import SequentialTest, msprt_lambda, variant_outcomes

LOOKS, PER_LOOK, RUNS = 30, 300, 300


def _experiments(p_a: float, p_b: float, seed: int) -> tuple[float, float]:
    """Share of runs the mSPRT and a naive z-test ever reject, looking after every batch."""
    rng = np.random.default_rng(seed)
    msprt = naive = 0
    for _ in range(RUNS):
        test = SequentialTest("a", "b")
        s_a = np.cumsum(rng.binomial(PER_LOOK, p_a, LOOKS))
        s_b = np.cumsum(rng.binomial(PER_LOOK, p_b, LOOKS))
        z_rejected = False
        for look in range(LOOKS):
            n = PER_LOOK * (look + 1)
            test.look(str(look), n, int(s_a[look]), n, int(s_b[look]))
            pa_, pb_ = s_a[look] / n, s_b[look] / n
            se = math.sqrt(pa_ * (1 - pa_) / n + pb_ * (1 - pb_) / n)
            z_rejected |= abs(pb_ - pa_) / se > 1.96
        msprt += test.decided
        naive += z_rejected
    return msprt / RUNS, naive / RUNS


def test_msprt_keeps_its_error_rate_under_daily_peeking() -> None:
    msprt, naive = _experiments(0.1, 0.1, seed=0)
    # 300 runs: the binomial standard error at 5 % is 1.3 points.
    assert msprt <= 0.07
    assert naive >= 0.15  # what peeking does to a fixed-horizon test


def test_msprt_finds_a_real_difference() -> None:
    msprt, _ = _experiments(0.10, 0.13, seed=1)
    assert msprt >= 0.8


def test_p_value_never_rises_and_is_saved(tmp_path: Path) -> None:
    test = SequentialTest("a", "b")
    test.look("d1", 1000, 100, 1000, 140)
    test.look("d2", 2000, 200, 2000, 205)  # the evidence weakens; the p-value stays
    assert test.looks[1].p_value == test.looks[0].p_value < 1
    path = tmp_path / "test.json"
    test.save(path)
    assert SequentialTest.load(path, "a", "b").looks == test.looks
    assert msprt_lambda(0, 0, 10, 3, 1e-4) == 1.0


def test_variant_outcomes_join_labels_to_the_request_log() -> None:
    log = pa.table(
        {
            "entity": ["1", "2", "3", "4", "9"],
            "variant": ["a", "a", "b", "b", "b"],
            "score": [0.9, 0.2, 0.7, 0.6, 0.5],
        }
    )
    labels = pa.table({"player_id": [1, 2, 3, 4], "label": [1, 1, 0, 1]})
    out = variant_outcomes(log, labels, "player_id", "label", threshold=0.5)
    assert out["a"]["labelled"] == 2 and out["a"]["successes"] == 1
    assert out["b"]["labelled"] == 2 and out["b"]["success_rate"] == 0.5  # entity 9 unlabelled
