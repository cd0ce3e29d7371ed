"""``raypipe features`` commands, on a local Typer app (no Ray: discovery runs --inline)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from raypipe.cli.features import register
from raypipe.errors import SpecError
from raypipe.features.defaults import default_views
from raypipe.features.spec import views_to_yaml
from raypipe.io.dataset import write_dataset
from raypipe.synth.config import TelemetryConfig
from raypipe.synth.generate import generate_tables

app = typer.Typer()
register(app)
runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("cli")
    tables = generate_tables(TelemetryConfig(players=300, days=15, seed=2, shard_players=300))
    urls = {}
    for name in ("events", "churn_labels", "players"):
        urls[name] = str(root / name)
        write_dataset(urls[name], tables[name])
    return urls


def test_check_accepts_default_views(tmp_path: Path, data) -> None:
    path = tmp_path / "views.yaml"
    path.write_text(views_to_yaml(default_views()))
    result = runner.invoke(app, ["features", "check", str(path), "--events", data["events"]])
    assert result.exit_code == 0, result.output
    features = sum(len(view.features) for view in default_views())
    assert f"1 view(s), {features} feature(s)" in result.output


def test_check_reports_view_and_feature(tmp_path: Path, data) -> None:
    path = tmp_path / "views.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "views": [
                    {
                        "name": "v",
                        "entities": ["player_id"],
                        "features": [{"name": "f", "agg": "mean", "column": "country"}],
                    }
                ]
            }
        )
    )
    result = runner.invoke(app, ["features", "check", str(path), "--events", data["events"]])
    assert isinstance(result.exception, SpecError)
    assert "view `v` feature `f`" in str(result.exception)


def test_suggest_prints_yaml_that_checks(tmp_path: Path, data) -> None:
    result = runner.invoke(
        app, ["features", "suggest", "--events", data["events"], "--context", "churn of players"]
    )
    assert result.exit_code == 0, result.output
    path = tmp_path / "suggested.yaml"
    path.write_text(result.output)
    checked = runner.invoke(app, ["features", "check", str(path), "--events", data["events"]])
    assert checked.exit_code == 0, checked.output


def test_discover_inline_writes_report(tmp_path: Path, data) -> None:
    out = tmp_path / "disc"
    result = runner.invoke(
        app,
        [
            "features",
            "discover",
            "--events",
            data["events"],
            "--labels",
            data["churn_labels"],
            "--players",
            data["players"],
            "--out",
            str(out),
            "--k",
            "5",
            "--windows",
            "1d,7d",
            "--inline",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "selected 5 of" in result.output
    assert (out / "report" / "_manifest.json").exists()
    printed = [
        line.split(": ", 1)[1]
        for line in result.output.splitlines()
        if line.startswith("report.html: ")
    ]
    assert len(printed) == 1 and Path(printed[0]).is_file(), result.output
