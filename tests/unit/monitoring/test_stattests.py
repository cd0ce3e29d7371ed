"""Drift statistics equal scipy/numpy on the same data, from raw values or merged counts."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial import distance

from raypipe.monitoring import stattests as rs
from raypipe.monitoring.drift import METHODS, choose_method, column_drift, detect_drift
from raypipe.monitoring.stattests import Sample

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)
samples = st.lists(finite, min_size=2, max_size=120)
small_ints = st.lists(st.integers(min_value=0, max_value=30), min_size=2, max_size=200)


def counts_of(values: list[float]) -> Sample:
    keys, counts = np.unique(np.asarray(values, dtype=np.float64), return_counts=True)
    return Sample(counts=dict(zip(keys.tolist(), counts.tolist(), strict=True)))


def evidently_binned(ref: np.ndarray, cur: np.ndarray, fill: bool) -> tuple[np.ndarray, ...]:
    """Brute-force oracle of Evidently's get_binned_data for numerical columns."""
    if len(np.unique(ref)) > 20:
        bins = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        p = np.histogram(ref, bins)[0] / len(ref)
        q = np.histogram(cur, bins)[0] / len(cur)
    else:
        keys = np.union1d(ref, cur)
        p = np.array([(ref == k).sum() for k in keys]) / len(ref)
        q = np.array([(cur == k).sum() for k in keys]) / len(cur)
    if fill:
        for arr in (p, q):
            nz = arr[arr != 0]
            floor = nz.min() / 1e6 if nz.min() <= 1e-4 else 1e-4
            np.place(arr, arr == 0, floor)
    return p, q


@settings(max_examples=80, deadline=None)
@given(samples, samples)
def test_numeric_scores_equal_scipy_from_values_and_counts(a: list[float], b: list[float]) -> None:
    ref, cur = np.asarray(a), np.asarray(b)
    for r, c in ((Sample(values=ref), Sample(values=cur)), (counts_of(a), counts_of(b))):
        assert rs.ks_pvalue(r, c) == pytest.approx(stats.ks_2samp(ref, cur).pvalue, abs=1e-9)
        want = stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001)
        assert rs.wasserstein_normed(r, c) == pytest.approx(want, rel=1e-9, abs=1e-9)
        p, q = evidently_binned(ref, cur, fill=False)
        got_p, got_q = rs.binned_percents(r, c, numerical=True, feel_zeroes=False)
        np.testing.assert_allclose(got_p, p, atol=1e-12)
        np.testing.assert_allclose(got_q, q, atol=1e-12)
        assert rs.js_distance(got_p, got_q) == pytest.approx(distance.jensenshannon(p, q))
        fp, fq = evidently_binned(ref, cur, fill=True)
        got = rs.binned_percents(r, c, numerical=True, feel_zeroes=True)
        assert rs.psi(*got) == pytest.approx(np.sum((fp - fq) * np.log(fp / fq)), abs=1e-9)
        assert rs.kl_div(*got) == pytest.approx(stats.entropy(fp, fq), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(small_ints, small_ints)
def test_chisquare_and_sturges_edges(a: list[int], b: list[int]) -> None:
    ref, cur = np.asarray(a, float), np.asarray(b, float)
    r, c = counts_of(a), counts_of(b)
    keys = np.union1d(ref, cur)
    observed = np.array([(cur == k).sum() for k in keys])
    expected = np.array([(ref == k).sum() for k in keys]) * len(cur) / len(ref)
    with np.errstate(divide="ignore", invalid="ignore"):
        want = stats.chisquare(observed, expected).pvalue
    got = rs.chisquare_pvalue(r, c)
    assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, abs=1e-12)
    edges = rs.sturges_edges(r, c)
    np.testing.assert_array_equal(
        edges, np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
    )


def test_identical_samples_show_no_drift() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=3_000)
    table = pa.table({"x": values, "c": rng.choice(["a", "b", "c"], 3_000)})
    report = detect_drift(table, table)
    for column in report.columns:
        assert not column.drifted
        for name in ("psi", "kl_div", "jensenshannon", "hellinger"):
            assert column.scores[name] == pytest.approx(0.0, abs=1e-12)
    assert report.column("x").score == 0.0 and report.share_drifted == 0.0


def test_default_method_boundaries() -> None:
    # the switch is on *reference* rows: 1000 -> KS, 1001 -> Wasserstein
    assert choose_method(1000, True, 50) == "ks"
    assert choose_method(1001, True, 50) == "wasserstein"
    # 5 vs 6 unique values over ref | cur
    assert choose_method(500, True, 5) == "chisquare" and choose_method(500, True, 6) == "ks"
    assert choose_method(5000, True, 5) == "jensenshannon"
    assert choose_method(5000, True, 6) == "wasserstein"
    assert choose_method(10, False, 2) == "z" and choose_method(10, True, 2) == "z"
    assert choose_method(10, False, 3) == "chisquare"
    assert choose_method(5000, False, 2) == "jensenshannon"
    rng = np.random.default_rng(1)
    ref = Sample(values=rng.normal(size=1_000))
    assert column_drift("x", ref, ref, numerical=True).method == "ks"
    bigger = Sample(values=rng.normal(size=1_001))
    assert column_drift("x", bigger, ref, numerical=True).method == "wasserstein"


def test_constant_reference_uses_std_floor() -> None:
    ref = Sample(values=np.full(2_000, 3.0))
    cur = Sample(values=np.full(2_000, 3.5))
    assert rs.wasserstein_normed(ref, cur) == pytest.approx(0.5 / 0.001)


def test_category_only_in_current_is_finite() -> None:
    ref = Sample(counts={"a": 600, "b": 600})
    cur = Sample(counts={"a": 500, "b": 500, "new": 200})
    drift = column_drift("c", ref, cur, numerical=False)
    assert drift.method == "jensenshannon" and math.isfinite(drift.score)
    p, _q = rs.binned_percents(ref, cur, numerical=False, feel_zeroes=True)
    assert p.min() == pytest.approx(1e-4)  # the documented empty-bin floor
    assert math.isfinite(drift.scores["psi"])


def test_tfdv_parity() -> None:
    left = Sample(counts={"a": 1, "b": 2})
    right = Sample(counts={"a": 2, "b": 1})
    assert rs.linf_distance(left, right) == pytest.approx(1 / 3)
    assert rs.js_divergence_log2(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1)
    assert METHODS["linf"].drifted(0.01, 0.01) is False  # TFDV: strictly greater
    assert METHODS["psi"].drifted(0.1, 0.1) is True  # Evidently: greater or equal


def test_dataset_drift_share_is_inclusive() -> None:
    rng = np.random.default_rng(2)
    ref = {f"c{i}": rng.normal(size=2_000) for i in range(8)}
    cur = {f"c{i}": rng.normal(loc=2.0 if i < 4 else 0.0, size=2_000) for i in range(8)}
    report = detect_drift(pa.table(ref), pa.table(cur))
    assert report.number_drifted == 4 and report.share_drifted == 0.5
    assert report.dataset_drifted  # 4/8 >= 0.5
    doc = report.to_dict()
    assert set(doc["columns"]["c0"]) >= {"method", "score", "threshold", "drifted"}


def test_z_test_matches_two_proportion_formula() -> None:
    ref = Sample(counts={"x": 400, "y": 600})
    cur = Sample(counts={"x": 480, "y": 520})
    p1, p2, n = 0.6, 0.52, 1000
    pooled = (p1 + p2) / 2
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (2 / n))
    assert rs.z_pvalue(ref, cur) == pytest.approx(2 * (1 - stats.norm.cdf(abs(z))))


def test_distributed_drift_equals_single_process(tmp_path) -> None:
    from raypipe.engine.inline import InlineBackend
    from raypipe.io.dataset import write_dataset
    from raypipe.monitoring.drift_run import run_drift

    rng = np.random.default_rng(5)

    def table(n: int, shift: float) -> pa.Table:
        amount = rng.exponential(2.0 + shift, n)
        amount[rng.random(n) < 0.05] = np.nan
        return pa.table(
            {
                "part": rng.integers(0, 4, n),
                "amount": amount,
                "level": rng.integers(0, 4 + int(shift), n),
                "platform": rng.choice(["ios", "android"] + ["web"] * int(shift), n),
                "flag": rng.random(n) < 0.3 + 0.1 * shift,
            }
        )

    ref, cur = table(3_000, 0.0), table(2_000, 1.0)
    ref_m = write_dataset(str(tmp_path / "ref"), ref, partition_by=["part"])
    cur_m = write_dataset(str(tmp_path / "cur"), cur, partition_by=["part"])
    executor = InlineBackend()
    got = run_drift(str(tmp_path / "ref"), ref_m, str(tmp_path / "cur"), cur_m, executor)
    want = detect_drift(ref, cur)
    assert "drift.columns" in executor.calls  # `amount` went to a column task
    assert [c.column for c in got.columns] == [c.column for c in want.columns]
    for mine, oracle in zip(got.columns, want.columns, strict=True):
        assert (mine.method, mine.drifted, mine.n_unique) == (
            oracle.method,
            oracle.drifted,
            oracle.n_unique,
        )
        assert mine.score == pytest.approx(oracle.score, rel=1e-9, abs=1e-12)
        for key, value in oracle.scores.items():
            assert mine.scores[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert got.column("platform").drifted and got.column("amount").drifted
    assert got.to_dict()["dataset_drifted"] == want.dataset_drifted


def test_drift_from_a_stored_reference_profile(tmp_path) -> None:
    from raypipe.engine.inline import InlineBackend
    from raypipe.io.dataset import write_dataset
    from raypipe.monitoring.drift_run import run_drift
    from raypipe.validation.profiling import run_profile

    rng = np.random.default_rng(8)
    ref = pa.table(
        {
            "level": rng.integers(0, 6, 3_000),
            "flag": rng.random(3_000) < 0.3,
            "platform": rng.choice(["ios", "android"], 3_000),
            "amount": rng.exponential(2.0, 3_000),
        }
    )
    cur = pa.table(
        {
            "level": rng.integers(0, 8, 2_000),
            "flag": rng.random(2_000) < 0.5,
            "platform": rng.choice(["ios", "android", "web"], 2_000),
            "amount": rng.exponential(3.0, 2_000),
        }
    )
    ref_url, cur_url = str(tmp_path / "ref"), str(tmp_path / "cur")
    ref_m, cur_m = write_dataset(ref_url, ref), write_dataset(cur_url, cur)
    profile = run_profile("ref", ref_url, ref_m, InlineBackend())
    executor = InlineBackend()
    got = run_drift(ref_url, ref_m, cur_url, cur_m, executor, reference_profile=profile)
    assert "drift.count:reference" not in executor.calls  # counts came from the profile
    want = detect_drift(ref, cur)
    for mine, oracle in zip(got.columns, want.columns, strict=True):
        assert (mine.method, mine.drifted) == (oracle.method, oracle.drifted)
        assert mine.score == pytest.approx(oracle.score, rel=1e-9, abs=1e-12)


@settings(max_examples=15, deadline=None)
@given(
    st.integers(min_value=1, max_value=5),
    st.integers(min_value=20, max_value=1_500),
    st.integers(min_value=20, max_value=800),
    st.integers(min_value=0, max_value=2**31),
)
def test_partitioned_drift_equals_whole_table(
    parts: int, n_ref: int, n_cur: int, seed: int
) -> None:
    import tempfile

    from raypipe.engine.inline import InlineBackend
    from raypipe.io.dataset import write_dataset
    from raypipe.monitoring.drift_run import run_drift

    rng = np.random.default_rng(seed)

    def table(n: int, shift: float) -> pa.Table:
        wide = rng.normal(shift, 1, n)
        wide[rng.random(n) < 0.05] = np.nan
        return pa.table(
            {
                "part": rng.integers(0, parts, n),
                "wide": wide,
                "few": rng.integers(0, 3 + int(shift * 4), n),
                "cat": rng.choice(["a", "b", "c"][: 2 + int(shift > 0.2)], n),
            }
        )

    ref, cur = table(n_ref, 0.0), table(n_cur, float(rng.uniform(0, 0.5)))
    with tempfile.TemporaryDirectory() as tmp:
        ref_m = write_dataset(f"{tmp}/r", ref, partition_by=["part"])
        cur_m = write_dataset(f"{tmp}/c", cur, partition_by=["part"])
        got = run_drift(f"{tmp}/r", ref_m, f"{tmp}/c", cur_m, InlineBackend())
    want = detect_drift(ref, cur)
    for mine, oracle in zip(got.columns, want.columns, strict=True):
        assert (mine.column, mine.method, mine.drifted) == (
            oracle.column,
            oracle.method,
            oracle.drifted,
        )
        assert mine.score == pytest.approx(oracle.score, rel=1e-9, abs=1e-12)
