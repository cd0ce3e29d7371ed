"""The report's verdict reflects everything it found (OK / WARN / ALERT, with causes)."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa

from raypipe.monitoring.drift import detect_drift
from raypipe.monitoring.performance import Degradation
from raypipe.monitoring.report import MAX_HISTOGRAMS, MonitoringReport, render_html, report_json
from raypipe.monitoring.verdict import judge, new_category_share
from raypipe.validation.checking import RuleResult


def _table(rows: int, seed: int, new_share: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    platform = rng.choice(["ios", "android"], rows)
    platform[rng.random(rows) < new_share] = "web"  # a value the reference never had
    return pa.table(
        {
            "player_id": np.arange(rows, dtype=np.int64) + seed * rows,
            "sessions": rng.poisson(5, rows).astype(np.float64),
            "spend": rng.gamma(1.0, 3.0, rows),
            "level": rng.integers(1, 50, rows),
            "platform": platform.tolist(),
            "churned": rng.random(rows) < (0.3 if seed == 1 else 0.6),
        }
    )


def _failing_rules(n: int) -> list[RuleResult]:
    return [
        RuleResult(f"rule_{i}", "not_null", "fail", False, failing=10 + i, detail="nulls")
        for i in range(n)
    ]


REFERENCE = _table(4000, 1)


def test_new_category_on_40_percent_and_five_failing_rules_is_an_alert_with_causes() -> None:
    drift = detect_drift(REFERENCE, _table(4000, 2, new_share=0.4))
    assert not drift.dataset_drifted  # one feature of four: the old verdict said "no drift"
    report = MonitoringReport(
        drift=drift,
        quality=_failing_rules(5),
        datasets={"reference": "ref (version aaa)", "current": "cur (version bbb)"},
    )
    verdict = report.verdict
    assert verdict.level == "ALERT" and report.alert
    kinds = [(f.severity, f.kind, f.subject) for f in verdict.findings]
    assert ("ALERT", "new_category", "platform") in kinds
    assert ("ALERT", "column_drift", "platform") in kinds  # PSI far above 0.25
    assert [k for k in kinds if k[1] == "quality_rule"] == [
        ("ALERT", "quality_rule", f"rule_{i}") for i in range(5)
    ]
    share, values = new_category_share(drift.column("platform"))
    assert values == ("web",) and 0.37 < share < 0.43
    assert drift.column("platform").scores["psi"] > 2
    # ids and labels are not features: not tested unless asked for
    assert {c.column for c in drift.columns} == {"sessions", "spend", "level", "platform"}
    assert dict(drift.skipped) == {"player_id": "id", "churned": "label"}
    page = render_html(report)
    assert re.search(r'Summary: <b class="bad" id="verdict">ALERT</b>', page)
    assert "no drift</b>" in page  # the dataset-share card still says so, beside the ALERT
    assert "new category: <b>platform</b>" in page and "`web`" in page
    assert "ref (version aaa)" in page and "cur (version bbb)" in page
    doc = report_json(report)
    assert doc["level"] == "ALERT" and len(doc["verdict"]["findings"]) == len(kinds)


def test_clean_data_and_passing_rules_are_ok() -> None:
    drift = detect_drift(REFERENCE, _table(4000, 1))  # the same sample
    passing = [RuleResult("rule_0", "not_null", "fail", True)]
    report = MonitoringReport(drift=drift, quality=passing)
    assert report.verdict.level == "OK" and report.verdict.findings == ()
    assert not report.alert
    page = render_html(report)
    assert '<b class="ok" id="verdict">OK</b>' in page
    assert "No drift, new category, failing rule or degradation was found." in page


def test_warn_levels_for_a_rare_new_value_and_a_warn_rule_alert_for_degradation() -> None:
    drift = detect_drift(REFERENCE, _table(4000, 1, new_share=0.01))
    assert judge(drift=drift).level == "WARN"
    warn_rule = [RuleResult("soft", "range", "warn", False, failing=3)]
    assert judge(quality=warn_rule).level == "WARN"
    worse = Degradation("roc_auc", 0.8, 0.7, -0.125, True)
    verdict = judge(drift=drift, quality=warn_rule, degradations=[worse])
    assert verdict.level == "ALERT"
    assert verdict.findings[0].kind == "performance"  # most severe first
    assert json.dumps(verdict.to_dict())


def test_histograms_say_which_are_shown_and_why() -> None:
    rng = np.random.default_rng(0)
    columns = {f"f{i:02d}": rng.integers(0, 5, 500) for i in range(20)}
    shifted = {name: values + (i % 3 == 0) for i, (name, values) in enumerate(columns.items())}
    drift = detect_drift(pa.table(columns), pa.table(shifted))
    page = render_html(MonitoringReport(drift=drift))
    assert f"{MAX_HISTOGRAMS} of 20 column histograms shown, most drifted first" in page
    drawn = re.findall(r"<title>(f\d\d): share of rows", page)
    assert len(drawn) == MAX_HISTOGRAMS
    drifted = {c.column for c in drift.columns if c.drifted}
    assert set(drawn[: len(drifted)]) == drifted  # the drifted ones come first
    assert "not drawn, less drifted:" in page
    for chart in re.findall(r"<svg class=\"plot\".*?</svg>", page):
        assert "x-label" in chart and "y-label" in chart  # every chart labels its axes
