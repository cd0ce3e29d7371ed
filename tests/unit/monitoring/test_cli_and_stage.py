"""`raypipe monitor drift|report` (in process) and the `monitor.report` stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import typer
from typer.testing import CliRunner

from raypipe.cli.monitor import register
from raypipe.engine.inline import InlineBackend
from raypipe.io.artifacts import read_artifact_file
from raypipe.io.dataset import read_dataset, write_dataset
from raypipe.monitoring.monitor_stage import MonitorReportOptions, MonitorReportStage
from raypipe.stages.base import DatasetInput, StageContext


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """raypipe (test)."""

    register(app)
    return app


def _datasets(tmp_path: Path) -> dict[str, DatasetInput]:
    rng = np.random.default_rng(4)
    n = 3000
    out = {}

    def put(name: str, table: pa.Table) -> None:
        url = str(tmp_path / name)
        out[name] = DatasetInput(url, write_dataset(url, table))

    for name, shift in (("reference", 0.0), ("current", 1.0)):
        x = rng.normal(shift, 1, n)
        p = 1 / (1 + np.exp(-x))
        y = (rng.random(n) < p).astype(np.int8)
        features = pa.table(
            {
                "player_id": np.arange(n),
                "x": x,
                "sessions": rng.poisson(3 + shift, n),
                "country": rng.choice(["DE", "US", "BR"], n),
                "platform": rng.choice(["ios", "android"] + (["web"] if shift else []), n),
            }
        )
        put(f"{name}_features", features)
        scores = {"player_id": np.arange(n), "score": p, "shap_x": x, "shap_sessions": 0.1 * x}
        if name == "reference":
            scores["churned"] = y
        else:
            put("current_labels", pa.table({"player_id": np.arange(n), "churned": y}))
        put(name, pa.table(scores))
    return out


def test_drift_cli_writes_json_and_html(tmp_path: Path) -> None:
    data = _datasets(tmp_path)
    out = tmp_path / "drift.json"
    html = tmp_path / "drift.html"
    result = CliRunner().invoke(
        _app(),
        [
            "monitor",
            "drift",
            "--reference",
            data["reference_features"].url,
            "--current",
            data["current_features"].url,
            "--json",
            str(out),
            "--html",
            str(html),
            "--inline",
            "--fail-on-drift",
        ],
    )
    assert result.exit_code == 3, result.output  # the dataset drifted
    doc = json.loads(out.read_text())
    assert doc["dataset_drifted"] is True and 0 < doc["share_drifted"] <= 1
    x = doc["columns"]["x"]
    assert x["method"] == "wasserstein" and x["drifted"] and x["threshold"] == 0.1
    assert doc["columns"]["platform"]["method"] == "jensenshannon"
    assert "player_id" not in doc["columns"]  # an id is not a feature: not tested unless asked
    assert doc["not_tested"]["player_id"] == "id"
    page = html.read_text()
    assert page.count('class="plot"') >= 3
    for source in (data["reference_features"], data["current_features"]):
        assert f"{source.url} (version {source.version[:12]})" in page


def test_report_cli_and_stage(tmp_path: Path) -> None:
    data = _datasets(tmp_path)
    html = tmp_path / "out" / "report.html"
    args = ["monitor", "report", "--html", str(html), "--inline"]
    for name in (
        "reference",
        "current",
        "current_labels",
        "reference_features",
        "current_features",
    ):
        args += [f"--{name.replace('_', '-')}", data[name].url]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    doc = json.loads(html.with_suffix(".json").read_text())
    assert doc["alert"] and doc["drift"]["columns"]["x"]["drifted"]
    assert {f["feature"] for f in doc["fairness"]} == {"country", "platform"}
    assert doc["estimated_current"]["roc_auc"] > 0.5 and doc["current"]["roc_auc"] > 0.5

    context = StageContext("monitor", str(tmp_path / "dd"), "r", InlineBackend())
    stage_result = MonitorReportStage().run(
        context, data, MonitorReportOptions(exclude_columns=["sessions"])
    )
    assert stage_result.metrics["alert"] and stage_result.metrics["dataset_drifted"]
    page = read_artifact_file(context.output_url("report"), "report.html").decode()
    assert 'data-plot="shap"' in page and 'data-plot="fairness"' in page
    assert Path(stage_result.metrics["report"]).read_text() == page
    drift = read_dataset(context.output_url("drift")).to_pylist()
    assert "sessions" not in {row["column"] for row in drift}
    assert any(row["column"] == "x" and row["drifted"] for row in drift)


def test_drift_cli_with_stored_reference_profile(tmp_path: Path) -> None:
    from raypipe.validation.profile_stage import ProfileOptions, ProfileStage

    data = _datasets(tmp_path)
    context = StageContext("profile", str(tmp_path / "p"), "r", InlineBackend())
    ProfileStage().run(
        context,
        {"features": data["reference_features"], "other": data["current_labels"]},
        ProfileOptions(),
    )
    base = [
        "monitor",
        "drift",
        "--reference",
        data["reference_features"].url,
        "--current",
        data["current_features"].url,
        "--inline",
    ]
    plain, stored = tmp_path / "plain.json", tmp_path / "stored.json"
    assert CliRunner().invoke(_app(), [*base, "--json", str(plain)]).exit_code == 0
    args = [
        *base,
        "--json",
        str(stored),
        "--reference-profile",
        context.output_url("profile"),
        "--profile-table",
        "features",
    ]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    a, b = json.loads(plain.read_text()), json.loads(stored.read_text())
    for name, column in a["columns"].items():
        assert (column["method"], column["drifted"]) == (
            b["columns"][name]["method"],
            b["columns"][name]["drifted"],
        )
        assert column["score"] == pytest.approx(b["columns"][name]["score"], rel=1e-9)
    wrong = [
        *base,
        "--json",
        str(stored),
        "--reference-profile",
        context.output_url("profile"),
        "--profile-table",
        "other",
    ]
    assert "describes version" in str(CliRunner().invoke(_app(), wrong).exception)
