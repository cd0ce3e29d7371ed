from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from raypipe.errors import SpecError
from raypipe.serving.spec import ServiceSpec, SloSpec, TrafficSpec
from raypipe.serving.traffic import ControlState, Router, SloGuard, control_path, sticky_points

KEYS = [str(i) for i in range(20_000)]
VARIANTS = {"a": "models:/m@champion", "b": "models:/m@challenger"}


def _router(tmp_path: Path, traffic: TrafficSpec) -> Router:
    return Router(ServiceSpec("svc", VARIANTS, data_dir=str(tmp_path), traffic=traffic))


def test_ab_split_is_weighted_and_sticky(tmp_path: Path) -> None:
    router = _router(tmp_path, TrafficSpec("ab", weights={"a": 0.8, "b": 0.2}))
    first = router.assign(KEYS)
    share = first.count("b") / len(KEYS)
    assert abs(share - 0.2) < 0.01  # 20,000 draws: 4 standard deviations is 0.011
    assert router.assign(KEYS) == first  # same entity, same variant
    assert router.assign(KEYS[::-1]) == first[::-1]  # regardless of batch order
    # Another service hashes independently: assignments are not shared across experiments.
    other = Router(ServiceSpec("other", VARIANTS, data_dir=str(tmp_path), traffic=router.traffic))
    assert other.assign(KEYS) != first


def test_sticky_points_are_uniform() -> None:
    points = sticky_points(KEYS, "svc")
    counts, _ = np.histogram(points, bins=10, range=(0, 1))
    assert counts.min() > 1_800 and counts.max() < 2_200


def test_canary_ramps_through_steps_and_entities_move_once(tmp_path: Path) -> None:
    router = _router(
        tmp_path,
        TrafficSpec("canary", baseline="a", candidate="b", steps=(0.1, 0.5, 1.0), hold_s=60),
    )
    start = router.state.started_at
    shares = []
    previous = ["a"] * len(KEYS)
    for elapsed in (0, 59, 61, 130, 10_000):
        assigned = router.assign(KEYS, now=start + elapsed)
        shares.append(round(assigned.count("b") / len(KEYS), 2))
        # An entity on the candidate stays there as the ramp grows.
        assert all(new == "b" for old, new in zip(previous, assigned, strict=True) if old == "b")
        previous = assigned
    assert shares == [0.1, 0.1, 0.5, 1.0, 1.0]


def test_shadow_never_answers_and_bluegreen_follows_control(tmp_path: Path) -> None:
    shadow = _router(tmp_path, TrafficSpec("shadow", baseline="a", candidate="b"))
    assert set(shadow.assign(KEYS[:100])) == {"a"} and shadow.shadow() == "b"
    blue = _router(tmp_path, TrafficSpec("bluegreen", active="a"))
    assert set(blue.assign(KEYS[:10])) == {"a"} and blue.shadow() is None
    path = control_path(str(tmp_path), "svc")
    ControlState(active="b").write(path)
    blue.update(ControlState.read(path))
    assert set(blue.assign(KEYS[:10])) == {"b"}


def test_slo_breach_rolls_back_to_baseline(tmp_path: Path) -> None:
    router = _router(tmp_path, TrafficSpec("ab", weights={"a": 0.5, "b": 0.5}))
    guard = SloGuard(SloSpec(max_error_rate=0.05, max_p99_ms=50, window=100, min_requests=50))
    for _ in range(49):
        guard.record("b", False, 1.0)
    assert guard.breach("b") is None  # too few requests to judge
    for _ in range(51):
        guard.record("b", True, 1.0)
        guard.record("a", False, 1.0)
    assert "error rate 0.490" in (guard.breach("b") or "")
    breaches = guard.breaches(VARIANTS, baseline="a")
    assert list(breaches) == ["b"]  # the baseline is never rolled back
    router.update(ControlState(disabled=breaches))
    assert set(router.assign(KEYS[:500])) == {"a"}
    slow = SloGuard(SloSpec(max_p99_ms=50, window=100, min_requests=10))
    for ms in [5.0] * 90 + [80.0] * 10:
        slow.record("b", True, ms)
    assert "p99" in (slow.breach("b") or "")


@pytest.mark.parametrize(
    ("traffic", "message"),
    [
        (TrafficSpec("ab", weights={"a": 1.0}), "at least two variants"),
        (TrafficSpec("canary", baseline="a"), "needs `baseline` and `candidate`"),
        (TrafficSpec("ab", weights={"a": 1, "zz": 1}), "unknown variant"),
        (TrafficSpec("single"), "several variants need a traffic policy"),
        # A misspelt kind used to pass and route everything to the baseline.
        (
            TrafficSpec("a/b", weights={"a": 0.5, "b": 0.5}),
            "traffic kind `a/b` is not one of single, ab, canary, shadow, bluegreen",
        ),
    ],
)
def test_bad_traffic_is_a_spec_error(traffic: TrafficSpec, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        ServiceSpec("svc", VARIANTS, traffic=traffic)
