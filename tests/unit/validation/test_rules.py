"""Quality rules: results equal a brute-force check; quarantine splits rows; policies apply."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raypipe.engine.inline import InlineBackend
from raypipe.errors import DataError, SpecError
from raypipe.io.dataset import read_dataset, write_dataset
from raypipe.stages.base import DatasetInput, StageContext
from raypipe.validation.check_stage import CheckOptions, CheckStage
from raypipe.validation.checking import check_table, run_check
from raypipe.validation.profiling import run_profile
from raypipe.validation.rule_inference import infer_rules
from raypipe.validation.rules import RuleSetSpec, read_rules, rules_to_yaml

RULES = {
    "rules": [
        {"check": "not_null", "column": "amount", "policy": "quarantine"},
        {"check": "range", "column": "amount", "min": 0, "max": 50, "policy": "quarantine"},
        {
            "check": "allowed_values",
            "column": "platform",
            "values": ["ios", "android"],
            "policy": "warn",
        },
        {"check": "regex", "column": "country", "pattern": "[A-Z]{2}", "policy": "warn"},
        {"check": "unique", "columns": ["id"], "policy": "warn"},
        {"check": "row_count", "min": 1, "max": 10_000, "policy": "fail"},
        {"check": "columns", "required": {"id": "int64", "amount": "double"}},
    ]
}

rows = st.lists(
    st.tuples(
        st.integers(0, 30),
        st.one_of(st.none(), st.floats(-10, 80)),
        st.sampled_from(["ios", "android", "web", None]),
        st.sampled_from(["DE", "FR", "usa", "x1", None]),
    ),
    min_size=1,
    max_size=60,
)


def as_table(data: list[tuple]) -> pa.Table:
    ids, amounts, platforms, countries = zip(*data, strict=True)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "amount": pa.array(amounts, pa.float64()),
            "platform": pa.array(platforms, pa.string()),
            "country": pa.array(countries, pa.string()),
        }
    )


@settings(max_examples=50, deadline=None)
@given(rows)
def test_row_rules_equal_brute_force(data: list[tuple]) -> None:
    report = check_table(as_table(data), read_rules(RULES))
    got = {r.rule: r.failing for r in report.results}
    ids = [d[0] for d in data]
    assert got["amount_not_null"] == sum(d[1] is None for d in data)
    assert got["amount_in_range"] == sum(d[1] is not None and not 0 <= d[1] <= 50 for d in data)
    assert got["platform_allowed_values"] == sum(d[2] == "web" for d in data)
    assert got["country_matches"] == sum(
        d[3] is not None and not re.fullmatch("[A-Z]{2}", d[3]) for d in data
    )
    assert got["id_unique"] == sum(ids.count(i) > 1 for i in ids)
    assert report.passed  # only warn/quarantine rules fail; row count and columns hold
    for result in report.results:
        assert len(result.examples) == min(5, result.failing)


def test_distributed_check_quarantines_and_matches_single_process(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 400
    amount = rng.uniform(-5, 60, n)
    amount[::17] = np.nan
    table = pa.table(
        {
            "part": np.arange(n) % 4,
            "id": np.concatenate([np.arange(n - 10), np.arange(10)]),
            "amount": pa.array([None if i % 23 == 0 else v for i, v in enumerate(amount)]),
            "platform": rng.choice(["ios", "android", "web"], n),
            "country": rng.choice(["DE", "fr"], n),
        }
    )
    manifest = write_dataset(str(tmp_path / "in"), table, partition_by=["part"])
    rules = read_rules(RULES)
    report = run_check(
        str(tmp_path / "in"),
        manifest,
        rules,
        InlineBackend(),
        data_url=str(tmp_path / "ok"),
        quarantine_url=str(tmp_path / "bad"),
    )
    oracle = check_table(table, rules)
    assert [(r.rule, r.failing) for r in report.results] == [
        (r.rule, r.failing) for r in oracle.results
    ]
    assert report.results[4].failing == 20  # 10 ids appear twice
    ok = read_dataset(str(tmp_path / "ok"))
    bad = read_dataset(str(tmp_path / "bad"))
    assert ok.num_rows + bad.num_rows == n
    broken = {r.rule: r.failing for r in report.results}
    assert bad.num_rows == report.quarantined > 0
    labels = bad.column("_rule").to_pylist()
    assert sum("amount_not_null" in x for x in labels) == broken["amount_not_null"]
    assert sum("amount_in_range" in x for x in labels) == broken["amount_in_range"]
    assert all(x for x in labels)


def test_stage_fails_on_fail_policy_and_infers_rules(tmp_path: Path) -> None:
    good = pa.table(
        {
            "id": np.arange(100),
            "platform": ["ios", "android"] * 50,
            "amount": np.linspace(0, 10, 100),
        }
    )
    bad = pa.table(
        {"id": np.arange(100), "platform": ["ios", "web"] * 50, "amount": np.linspace(-1, 20, 100)}
    )
    ref = DatasetInput(str(tmp_path / "ref"), write_dataset(str(tmp_path / "ref"), good))
    cur = DatasetInput(str(tmp_path / "cur"), write_dataset(str(tmp_path / "cur"), bad))
    context = StageContext("check", str(tmp_path), "r", InlineBackend())
    result = CheckStage().run(context, {"data": cur, "reference": ref}, CheckOptions())
    assert result.metrics["warnings"] >= 2  # platform values and amount range
    results = {r["rule"]: r for r in read_dataset(context.output_url("results")).to_pylist()}
    assert not results["platform_allowed_values"]["passed"]
    assert results["platform_allowed_values"]["failing"] == 50
    assert results["id_unique"]["passed"]
    options = CheckOptions(
        rules=[{"check": "range", "column": "amount", "min": 0, "policy": "fail"}]
    )
    with pytest.raises(DataError, match="amount_in_range"):
        CheckStage().run(context, {"data": cur}, options)


def test_freshness_and_rule_errors(tmp_path: Path) -> None:
    table = pa.table({"ts": pa.array([dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 3)])})
    rules = read_rules({"rules": [{"check": "freshness", "column": "ts", "max_lag": "2d"}]})
    assert check_table(table, rules, now=dt.datetime(2026, 1, 4)).passed
    assert not check_table(table, rules, now=dt.datetime(2026, 1, 6)).passed
    with pytest.raises(SpecError) as info:
        read_rules(
            {
                "rules": [
                    {"check": "range", "column": "x"},
                    {"check": "row_count", "policy": "quarantine"},
                    {"check": "nope"},
                ]
            }
        )
    assert len(info.value.problems) >= 3


def test_inferred_rules_round_trip_yaml(tmp_path: Path) -> None:
    table = pa.table({"id": np.arange(50), "c": ["a", "b"] * 25, "x": np.linspace(1, 2, 50)})
    url = str(tmp_path / "t")
    profile = run_profile("t", url, write_dataset(url, table), InlineBackend())
    rules = infer_rules(profile)
    checks = {(r.check, getattr(r, "column", None)) for r in rules}
    assert ("allowed_values", "c") in checks and ("range", "x") in checks
    assert ("unique", None) in checks and ("not_null", "id") in checks
    path = tmp_path / "rules.yaml"
    path.write_text(rules_to_yaml(rules))
    again = read_rules(path)
    assert isinstance(again, RuleSetSpec) and len(again.rules) == len(rules)
    assert check_table(table, again).passed and not any(
        not r.passed for r in check_table(table, again).results
    )


def test_rules_inferred_from_a_stored_profile(tmp_path: Path) -> None:
    from raypipe.validation.profile_stage import ProfileOptions, ProfileStage

    good = pa.table({"platform": ["ios", "android"] * 50})
    bad = pa.table({"platform": ["ios", "web"] * 50})
    ref = DatasetInput(str(tmp_path / "ref"), write_dataset(str(tmp_path / "ref"), good))
    cur = DatasetInput(str(tmp_path / "cur"), write_dataset(str(tmp_path / "cur"), bad))
    context = StageContext("profile", str(tmp_path), "r", InlineBackend())
    profiled = ProfileStage().run(context, {"players": ref}, ProfileOptions())
    stored = DatasetInput(context.output_url("profile"), profiled.outputs["profile"])
    executor = InlineBackend()
    context = StageContext("check", str(tmp_path), "r", executor)
    options = CheckOptions(profile_table="players", infer_policy="quarantine")
    result = CheckStage().run(context, {"data": cur, "reference_profile": stored}, options)
    assert result.metrics["quarantined"] == 50
    assert not any(call.startswith("profile") for call in executor.calls)  # no reread
    with pytest.raises(DataError, match="no table `nope`"):
        CheckStage().run(
            context,
            {"data": cur, "reference_profile": stored},
            CheckOptions(profile_table="nope"),
        )
