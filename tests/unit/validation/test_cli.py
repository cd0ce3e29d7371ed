"""`raypipe data check` (in process): rules file, inferred rules, quarantine, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import typer
from typer.testing import CliRunner

from raypipe.cli.data import register
from raypipe.errors import DataError
from raypipe.io.dataset import read_dataset, write_dataset


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """raypipe (test)."""

    register(app)
    return app


def test_check_quarantines_and_fails(tmp_path: Path) -> None:
    url = str(tmp_path / "d")
    amount = np.linspace(-2, 10, 100)
    write_dataset(url, pa.table({"id": np.arange(100), "amount": amount}))
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - {check: range, column: amount, min: 0, policy: quarantine}\n"
        "  - {check: row_count, min: 1}\n"
    )
    out = tmp_path / "r.json"
    args = [
        "data",
        "check",
        "--data",
        url,
        "--rules",
        str(rules),
        "--inline",
        "--quarantine",
        str(tmp_path / "q"),
        "--clean",
        str(tmp_path / "c"),
        "--json",
        str(out),
    ]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    bad = int((amount < 0).sum())
    assert doc["quarantined"] == bad and doc["rules"][0]["failing"] == bad
    assert read_dataset(str(tmp_path / "c")).num_rows == 100 - bad
    rules.write_text("rules:\n  - {check: range, column: amount, min: 0}\n")
    result = CliRunner().invoke(
        _app(), ["data", "check", "--data", url, "--rules", str(rules), "--inline"]
    )
    assert isinstance(result.exception, DataError)  # the CLI main turns it into exit code 3
    assert "amount_in_range" in str(result.exception)


def test_check_infers_rules(tmp_path: Path) -> None:
    ref, cur = str(tmp_path / "ref"), str(tmp_path / "cur")
    write_dataset(ref, pa.table({"p": ["ios", "android"] * 50}))
    write_dataset(cur, pa.table({"p": ["ios", "web"] * 50}))
    written = tmp_path / "inferred.yaml"
    result = CliRunner().invoke(
        _app(),
        [
            "data",
            "check",
            "--data",
            cur,
            "--infer-from",
            ref,
            "--write-rules",
            str(written),
            "--inline",
        ],
    )
    assert result.exit_code == 0, result.output  # inferred rules warn
    assert "allowed_values" in written.read_text()
    assert "web" not in written.read_text()
    out = tmp_path / "r.json"
    CliRunner().invoke(
        _app(),
        [
            "data",
            "check",
            "--data",
            cur,
            "--rules",
            str(written),
            "--json",
            str(out),
            "--inline",
        ],
    )
    rules = {r["rule"]: r for r in json.loads(out.read_text())["rules"]}
    assert rules["p_allowed_values"]["failing"] == 50
    assert rules["p_allowed_values"]["policy"] == "warn"
