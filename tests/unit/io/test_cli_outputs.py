"""Commands that write refuse a folder raypipe did not write before any work (Ray not started),
read plain Parquet, and list a dataset's kept versions."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from raypipe.cli.main import main
from raypipe.io.dataset import write_dataset


def _user_folder(path: Path) -> list[str]:
    path.mkdir(parents=True)
    pd.DataFrame({"x": [1, 2]}).to_parquet(path / "theirs.parquet")
    return sorted(os.listdir(path))


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_infer_refuses_a_users_folder_as_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _user_folder(tmp_path / "out")
    pd.DataFrame({"x": [1.0]}).to_parquet(tmp_path / "in.parquet")
    argv = [
        "infer",
        "--model",
        str(tmp_path / "no-model.json"),
        "--input",
        str(tmp_path / "in.parquet"),
        "--output",
        str(tmp_path / "out"),
    ]
    err = _fails(argv, capsys)
    assert "raypipe did not write" in err and "theirs.parquet" in err and "Hint:" in err
    assert sorted(os.listdir(tmp_path / "out")) == before


def test_generate_refuses_a_users_folder_as_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _user_folder(tmp_path / "out" / "events")
    err = _fails(["generate", "--out", str(tmp_path / "out"), "--players", "10"], capsys)
    assert "raypipe did not write" in err
    assert sorted(os.listdir(tmp_path / "out" / "events")) == before
    assert not (tmp_path / "out" / "players").exists()  # nothing started


def test_data_check_reads_plain_parquet_and_refuses_a_foreign_clean_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _user_folder(tmp_path / "plain")
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {check: row_count, min: 1}\n")
    main(["data", "check", "--data", str(tmp_path / "plain"), "--rules", str(rules), "--inline"])
    assert "pass" in capsys.readouterr().out
    before = _user_folder(tmp_path / "clean")
    err = _fails(
        [
            "data",
            "check",
            "--data",
            str(tmp_path / "plain"),
            "--rules",
            str(rules),
            "--inline",
            "--clean",
            str(tmp_path / "clean"),
            "--quarantine",
            str(tmp_path / "q"),
        ],
        capsys,
    )
    assert "raypipe did not write" in err
    assert sorted(os.listdir(tmp_path / "clean")) == before


def test_data_versions_lists_kept_versions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = str(tmp_path / "ds")
    versions = [write_dataset(url, pa.table({"x": list(range(n))})).version for n in (1, 2)]
    main(["data", "versions", url])
    out = capsys.readouterr().out
    assert versions[0][:12] in out and versions[1][:12] in out and "current" in out
    assert out.index(versions[1][:12]) < out.index(versions[0][:12])  # newest first


def test_monitor_drift_compares_folders_of_plain_parquet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, shift in (("ref", 0.0), ("cur", 5.0)):
        folder = tmp_path / name / "day=1"
        folder.mkdir(parents=True)
        pd.DataFrame({"amount": [shift + i / 100 for i in range(400)]}).to_parquet(
            folder / "part-0.parquet"
        )
    out = tmp_path / "drift.json"
    main(
        [
            "monitor",
            "drift",
            "--reference",
            str(tmp_path / "ref"),
            "--current",
            str(tmp_path / "cur"),
            "--json",
            str(out),
            "--inline",
        ]
    )
    assert '"amount"' in out.read_text()


def test_features_suggest_reads_a_plain_parquet_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = pd.DataFrame(
        {
            "player_id": [1, 2, 1, 3],
            "ts": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]),
            "event_type": ["login", "purchase", "login", "login"],
            "amount": [0.0, 9.99, 0.0, 0.0],
        }
    )
    frame.to_parquet(tmp_path / "events.parquet")
    main(["features", "suggest", "--events", str(tmp_path / "events.parquet")])
    out = capsys.readouterr().out
    assert "player_id" in out and "views" in out


def test_data_versions_of_plain_parquet_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _user_folder(tmp_path / "plain")
    err = _fails(["data", "versions", str(tmp_path / "plain")], capsys)
    assert "plain Parquet" in err and "no kept versions" in err
