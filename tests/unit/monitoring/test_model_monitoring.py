"""Model monitoring: fairness, CBPE, performance windows, SHAP, causes, LLM hook, report."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raypipe.monitoring.anomaly import SegmentDrop, ask_model, explain_alert
from raypipe.monitoring.cbpe import CBPE, expected_metrics
from raypipe.monitoring.drift import detect_drift
from raypipe.monitoring.fairness import fairness_by_group
from raypipe.monitoring.model_monitor import MonitorSpec, run_model_monitoring
from raypipe.monitoring.performance import degradation, performance_by_window
from raypipe.monitoring.report import render_html, report_json


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.booleans(), st.sampled_from("abc")), min_size=1, max_size=80
    )
)
def test_fairness_equals_brute_force(rows: list[tuple[bool, bool, str]]) -> None:
    y = np.array([r[0] for r in rows])
    h = np.array([r[1] for r in rows])
    g = np.array([r[2] for r in rows])
    report = fairness_by_group("g", y, h, g)

    def rate(mask: np.ndarray) -> float:
        return float(h[mask].mean()) if mask.any() else float("nan")

    groups = sorted(set(g.tolist()))
    sel = [rate(g == k) for k in groups]
    tpr = [rate((g == k) & y) for k in groups]
    fpr = [rate((g == k) & ~y) for k in groups]

    def diff(v: list[float]) -> float:
        f = [x for x in v if x == x]
        return max(f) - min(f) if f else float("nan")

    assert report.demographic_parity_difference == pytest.approx(diff(sel))
    want_eo = max(diff(tpr), diff(fpr))
    got_eo = report.equalized_odds_difference
    assert (got_eo != got_eo and want_eo != want_eo) or got_eo == pytest.approx(want_eo)
    if max(sel) > 0:
        assert report.demographic_parity_ratio == pytest.approx(min(sel) / max(sel))


def test_cbpe_estimates_calibrated_performance() -> None:
    rng = np.random.default_rng(0)
    p_ref = rng.beta(2, 3, 20_000)
    y_ref = rng.random(20_000) < p_ref
    p_cur = rng.beta(3, 2, 20_000)  # covariate shift, same P(y|x)
    y_cur = rng.random(20_000) < p_cur
    cbpe = CBPE().fit(y_ref, p_ref)
    estimate = cbpe.estimate(p_cur)
    from sklearn.metrics import roc_auc_score

    assert estimate["roc_auc"] == pytest.approx(roc_auc_score(y_cur, p_cur), abs=0.015)
    assert estimate["accuracy"] == pytest.approx(np.mean((p_cur >= 0.5) == y_cur), abs=0.015)
    low, high = cbpe.band("roc_auc")
    assert low < cbpe.reference_["roc_auc"][0] < high
    # certain predictions: expected metrics are exact
    exact = expected_metrics(np.array([1.0, 1.0, 0.0, 0.0]))
    assert exact["accuracy"] == 1.0 and exact["roc_auc"] == 1.0


def test_performance_windows_and_degradation() -> None:
    frame = pl.DataFrame(
        {
            "ts": pl.datetime_range(
                pl.datetime(2026, 1, 1), pl.datetime(2026, 1, 28), "1h", eager=True
            )[:600],
            "y": ([0, 1] * 300),
            "p": np.tile([0.2, 0.8], 300),
        }
    )
    windows = performance_by_window(frame, label="y", score="p", time_column="ts", every="1w")
    assert sum(w.rows for w in windows) == 600 and len(windows) >= 3
    assert all(w.metrics["roc_auc"] == 1.0 for w in windows)
    chunks = performance_by_window(frame, label="y", score="p", chunks=4)
    assert [w.rows for w in chunks] == [150] * 4
    found = {
        d.metric: d
        for d in degradation({"roc_auc": 0.7, "brier": 0.3}, {"roc_auc": 0.8, "brier": 0.2})
    }
    assert found["roc_auc"].degraded and found["brier"].degraded
    assert found["roc_auc"].relative_change == pytest.approx(-0.125)


def test_xgboost_contributions_sum_to_margin() -> None:
    xgb = pytest.importorskip("xgboost")
    from raypipe.monitoring.explain import global_importance, shap_contributions, top_features

    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 4)).astype(np.float32)
    y = (x[:, 0] + 0.3 * x[:, 1] > 0).astype(int)
    names = ["a", "b", "c", "d"]
    booster = xgb.train(
        {"max_depth": 3, "objective": "binary:logistic", "nthread": 1},
        xgb.DMatrix(x, y, feature_names=names),
        num_boost_round=20,
    )
    contribs = shap_contributions(booster, x, names)
    margin = booster.predict(xgb.DMatrix(x, feature_names=names), output_margin=True)
    np.testing.assert_allclose(contribs.sum(axis=1), margin, atol=1e-4)
    ranking = global_importance(contribs, names)
    assert ranking[0][0] == "a"
    assert top_features(contribs, names, k=2)[0][0][0] in names


def _drifted_tables() -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng(3)
    ref = pa.table({"f1": rng.normal(size=3000), "f2": rng.normal(size=3000)})
    cur = pa.table({"f1": rng.normal(1.5, size=3000), "f2": rng.normal(size=3000)})
    return ref, cur


def test_causes_rank_important_drift_first() -> None:
    ref, cur = _drifted_tables()
    drift = detect_drift(ref, cur)
    from raypipe.validation.checking import RuleResult

    causes = explain_alert(
        drift=drift,
        importance={"f1": 0.9, "f2": 0.1},
        segments=[SegmentDrop("platform=web", "roc_auc", 0.8, 0.7, 0.05)],
        quality=[RuleResult("amount_not_null", "not_null", "warn", False, 30)],
        rows=3000,
    )
    assert causes[0].kind == "feature_drift" and causes[0].subject == "f1"
    assert {c.kind for c in causes} == {"feature_drift", "segment_performance", "data_quality"}
    assert all(c.action for c in causes)
    quality = explain_alert(
        quality=[
            RuleResult("p_ok", "allowed_values", "warn", False, 10, rows=1000, column="platform"),
            RuleResult("a_nn", "not_null", "warn", False, 500, rows=1000, column="amount"),
            RuleResult("fine", "range", "warn", True, 0, rows=1000, column="x"),
        ]
    )
    assert [c.subject for c in quality] == ["a_nn", "p_ok"]  # more failing rows rank higher
    assert "`amount`" in quality[0].action and "`platform`" in quality[1].action


class _FakeLLM(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _FakeLLM.seen.append({"path": self.path, "body": body})
        reply = {"choices": [{"message": {"content": "f1 drifted; retrain."}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        return None


def test_llm_hook_against_fake_local_server() -> None:
    server = HTTPServer(("127.0.0.1", 0), _FakeLLM)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        ref, cur = _drifted_tables()
        causes = explain_alert(drift=detect_drift(ref, cur))
        url = f"http://127.0.0.1:{server.server_port}/v1"
        assert ask_model(url, causes, model="m") == "f1 drifted; retrain."
        assert _FakeLLM.seen[-1]["path"] == "/v1/chat/completions"
        assert _FakeLLM.seen[-1]["body"]["model"] == "m"
        assert "f1" in _FakeLLM.seen[-1]["body"]["messages"][1]["content"]
    finally:
        server.shutdown()
        server.server_close()
    # a dead endpoint does not break the report
    assert ask_model(f"http://127.0.0.1:{server.server_port}/v1", causes, timeout_s=1) is None


def monitoring_frames(seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    n = 4000

    def frame(shift: float) -> pl.DataFrame:
        x = rng.normal(shift, 1, n)
        p = 1 / (1 + np.exp(-x))
        return pl.DataFrame(
            {
                "player_id": np.arange(n),
                "score": p,
                "churned": (rng.random(n) < p).astype(int),
                "platform": rng.choice(["ios", "android"], n),
                "shap_x": x,
                "shap_z": rng.normal(0, 0.1, n),
            }
        )

    return frame(0.0), frame(1.0)


def test_report_has_every_section_and_valid_json() -> None:
    reference, current = monitoring_frames()
    ref_t, cur_t = _drifted_tables()
    report = run_model_monitoring(
        reference, current, MonitorSpec(groups=("platform",)), drift=detect_drift(ref_t, cur_t)
    )
    assert report.prediction_drift.drifted and report.alert
    html = render_html(report)
    for kind in ("histogram", "performance", "calibration", "fairness", "shap"):
        assert f'data-plot="{kind}"' in html, kind
    assert "http://" not in html and "https://" not in html  # self-contained
    doc = report_json(report)
    json.dumps(doc, allow_nan=False)
    assert doc["shap_importance"][0]["feature"] == "x"
    assert doc["causes"] and doc["fairness"][0]["feature"] == "platform"
