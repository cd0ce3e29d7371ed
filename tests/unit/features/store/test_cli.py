"""``raypipe features list|show|diff|materialize|get`` through the real entry point (in-process)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest

from raypipe.cli import feature_store
from raypipe.cli.main import main
from raypipe.features.store.registry import ServedView, register_view
from raypipe.io.dataset import write_dataset


@pytest.fixture
def data_dir(tmp_path: Path) -> str:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    source = str(tmp_path / "scoring")
    write_dataset(
        source,
        pa.table(
            {
                "player_id": pa.array([41, 42, 42], pa.int64()),
                "cutoff": pa.array(
                    [
                        now - dt.timedelta(hours=2),
                        now - dt.timedelta(hours=3),
                        now - dt.timedelta(hours=1),
                    ],
                    pa.timestamp("us"),
                ),
                "sessions_7d": [3.0, 5.0, 6.0],
                "spend_30d": [None, 1.5, 2.5],
            }
        ),
    )
    root = str(tmp_path / "data")
    view = ServedView(
        "churn_player",
        ("player_id",),
        "cutoff",
        source,
        ("sessions_7d", "spend_30d"),
        max_age_s=86_400.0,
        freshness_sla_s=86_400.0,
    )
    register_view(root, view)
    register_view(
        root,
        ServedView(
            "churn_player",
            ("player_id",),
            "cutoff",
            source,
            ("sessions_7d", "spend_30d"),
            max_age_s=7200.0,
            freshness_sla_s=86_400.0,
        ),
    )
    return root


def test_materialize_then_get_prints_statuses(data_dir: str, capsys: pytest.CaptureFixture) -> None:
    main(["features", "materialize", "churn_player", "--data-dir", data_dir, "--inline"])
    out = capsys.readouterr().out
    assert "2 latest row(s), 2 written" in out
    main(
        [
            "features",
            "get",
            "churn_player",
            "--entity",
            "42",
            "--entity",
            "7",
            "--data-dir",
            data_dir,
            "--json",
        ]
    )
    got = json.loads(capsys.readouterr().out)
    assert [g["status"] for g in got] == ["PRESENT", "NOT_FOUND"]
    assert got[0]["values"] == {"sessions_7d": 6.0, "spend_30d": 2.5}
    assert 3500 < got[0]["age_s"] < 3700
    main(["features", "get", "churn_player", "--entity", "41", "--data-dir", data_dir])
    out = capsys.readouterr().out
    # max_age 2h and the value is 2h old plus the test's runtime: expired, still shown.
    assert "OUTSIDE_MAX_AGE" in out and "sessions_7d" in out and "NULL" in out
    main(["features", "materialize", "churn_player", "--data-dir", data_dir, "--inline"])
    assert "0 latest row(s), 0 written" in capsys.readouterr().out


def test_list_show_diff(
    data_dir: str, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feature_store.console, "width", 200)  # no wrapping in the table
    main(["features", "list", "--data-dir", data_dir])
    assert "churn_player" in capsys.readouterr().out
    main(["features", "show", "churn_player", "--data-dir", data_dir])
    shown = json.loads(capsys.readouterr().out)
    assert shown["max_age_s"] == 7200.0 and len(shown["history"]) == 2
    main(["features", "diff", "churn_player", "--data-dir", data_dir])
    out = capsys.readouterr().out
    assert '- "max_age_s": 86400.0,' in out and '+ "max_age_s": 7200.0,' in out


def test_breached_sla_exits_7(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = str(tmp_path / "old")
    write_dataset(
        source,
        pa.table(
            {
                "player_id": [1],
                "cutoff": pa.array([dt.datetime(2020, 1, 1)], pa.timestamp("us")),
                "x": [1.0],
            }
        ),
    )
    root = str(tmp_path / "data")
    register_view(
        root, ServedView("old", ("player_id",), "cutoff", source, ("x",), freshness_sla_s=60.0)
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["features", "materialize", "old", "--data-dir", root, "--inline"])
    assert exit_info.value.code == 7
    assert "freshness SLA" in capsys.readouterr().err


def test_unknown_view_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["features", "get", "nope", "--entity", "1", "--data-dir", str(tmp_path)])
    assert exit_info.value.code == 3


def test_stream_command_processes_landed_files_once(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import polars as pl

    landing = tmp_path / "landing"
    landing.mkdir()
    seconds = [dt.datetime(1970, 1, 1, 0, 0, s) for s in (1, 2, 12)]
    events = {"player_id": [1, 2, 1], "ts": seconds, "amount": [1.0, 2.0, 3.0]}
    pl.DataFrame(events).write_parquet(landing / "0001.parquet")
    args = [
        "features",
        "stream",
        str(landing),
        "--out",
        str(tmp_path / "out"),
        "--kind",
        "tumbling",
        "--key",
        "player_id",
        "--value",
        "amount",
        "--size",
        "10s",
        "--data-dir",
        str(tmp_path / "data"),
        "--inline",
    ]
    main(args)
    # Watermark 12s: both players' [0s, 10s) windows close; [10s, 20s) of player 1 stays open.
    assert "1 new file(s), 3 event(s), 2 window(s) closed, 0 late, 1 open" in (
        capsys.readouterr().out
    )
    main([*args, "--finish"])  # the file is not read again; the open window closes
    assert "0 new file(s), 0 event(s), 1 window(s) closed, 0 late, 0 open" in (
        capsys.readouterr().out
    )
    from raypipe.features.store.online import StoreConfig, open_store

    online = open_store(StoreConfig("sqlite", path=str(tmp_path / "data/online/online.sqlite")))
    [value] = online.read("stream", ["1"])
    assert value.values is not None and value.values["start"] == 10_000_000


def test_stream_follow_polls_until_ctrl_c_and_exits_130(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    import polars as pl

    landing, out = tmp_path / "landing", tmp_path / "out"
    landing.mkdir()

    def land(name: str, seconds: list[int]) -> None:
        ts = [dt.datetime(1970, 1, 1, 0, 0, s) for s in seconds]
        frame = pl.DataFrame({"player_id": [1] * len(ts), "ts": ts, "amount": [1.0] * len(ts)})
        frame.write_parquet(landing / f".{name}")
        os.replace(landing / f".{name}", landing / name)  # lands whole

    def wait_for(pattern: str) -> None:
        deadline = time.monotonic() + 120
        while not list(out.glob(pattern)):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, f"{pattern} never appeared"
            time.sleep(0.1)

    land("0001.parquet", [1, 12])
    command = [sys.executable, "-c", "from raypipe.cli.main import main; main()"]
    args = ["features", "stream", str(landing), "--out", str(out), "--kind", "tumbling"]
    args += ["--key", "player_id", "--value", "amount", "--size", "10s", "--follow"]
    args += ["--interval", "0.1", "--data-dir", str(tmp_path / "data"), "--inline"]
    from tests.support.signals import sigint_as_from_a_terminal

    process = subprocess.Popen(
        [*command, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        preexec_fn=sigint_as_from_a_terminal,
    )
    try:
        wait_for("checkpoints/partition-*.arrow")
        land("0002.parquet", [25])  # watermark 25s closes [10s, 20s): found by a later poll
        wait_for("windows/*/batch-000000000001.parquet")
        time.sleep(1.0)  # its checkpoint follows the window file
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, output
    assert "stopped at stream position 1" in output
    assert "Traceback" not in output
