from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from raypipe.cli.main import main
from raypipe.errors import RaypipeError
from raypipe.serving.metrics import ServiceMetrics
from raypipe.serving.record import ServiceRecord, list_records, probe, process_alive
from raypipe.serving.requestlog import LOG_SCHEMA, RequestLog, log_row
from raypipe.serving.traffic import ControlState, control_path


def _cli(args: list[str]) -> int:
    """Exit code of ``raypipe ARGS`` run in this process."""
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"status": "ok", "variants": {"champion": {"version": "4"}}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_status_probes_recorded_services(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    up = ServiceRecord("up", f"http://127.0.0.1:{server.server_port}", 1, None, {"champion": "x"})
    down = ServiceRecord("down", "http://127.0.0.1:9", 1, None, {"champion": "models:/m@c"})
    up.write(str(tmp_path))
    down.write(str(tmp_path))
    assert [r.name for r in list_records(str(tmp_path))] == ["down", "up"]
    assert probe(up.url) == {"status": "ok", "variants": {"champion": {"version": "4"}}}
    assert _cli(["serve", "status", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "UP" in out and "champion=4" in out and "DOWN" in out
    server.shutdown()


def test_stop_signals_the_owner_and_removes_the_record(tmp_path: Path) -> None:
    from tests.support.signals import sigint_as_from_a_terminal

    owner = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        preexec_fn=sigint_as_from_a_terminal,  # as `raypipe serve` listens to it
    )
    ServiceRecord("svc", "http://127.0.0.1:9", owner.pid, None, {"a": "m"}).write(str(tmp_path))
    assert _cli(["serve", "stop", "svc", "--data-dir", str(tmp_path)]) == 0
    assert owner.wait(10) != 0 and not process_alive(owner.pid)
    assert list_records(str(tmp_path)) == []
    with pytest.raises(RaypipeError, match="no service `svc` is recorded"):
        ServiceRecord.read(str(tmp_path), "svc")


def test_a_service_being_deployed_reads_starting_until_its_owner_is_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # `raypipe serve` records its service before it can answer (ready false), so that `stop`
    # finds the owner from a client's first request on.
    starting = ServiceRecord(
        "svc", "http://127.0.0.1:9", os.getpid(), None, {"champion": "m"}, ready=False
    )
    starting.write(str(tmp_path))
    assert _cli(["serve", "status", "--data-dir", str(tmp_path)]) == 0
    assert "STARTING" in capsys.readouterr().out
    owner = subprocess.Popen([sys.executable, "-c", "pass"])
    owner.wait()
    replace(starting, pid=owner.pid).write(str(tmp_path))  # its owner died while deploying
    assert _cli(["serve", "status", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "DOWN" in out and "STARTING" not in out


def test_a_second_service_of_a_running_name_is_refused_before_ray_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    running = ServiceRecord("fraud", "http://127.0.0.1:9", os.getpid(), None, {"champion": "m"})
    running.write(str(tmp_path))
    code = _cli(["serve", "models:/fraud@champion", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0 and "service `fraud` is already running" in err
    assert f"process {os.getpid()}" in err and "--name" in err
    assert ServiceRecord.read(str(tmp_path), "fraud") == running  # its record is untouched


def test_switch_writes_the_control_state(tmp_path: Path) -> None:
    ServiceRecord("svc", "http://x", 0, None, {"blue": "m1", "green": "m2"}).write(str(tmp_path))
    assert _cli(["serve", "switch", "svc", "green", "--data-dir", str(tmp_path)]) == 0
    assert ControlState.read(control_path(str(tmp_path), "svc")).active == "green"
    assert _cli(["serve", "switch", "svc", "purple", "--data-dir", str(tmp_path)]) == 2


def test_request_log_flushes_in_batches_to_hive_partitions(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "requests", "r1", flush_rows=3, flush_s=3600)
    stamp = 1_764_590_400_000_000  # 2025-12-01 12:00 UTC
    for i in range(7):
        log.append(log_row(stamp + i, str(i), "a", "1", 0.5, 1.0, 200, "{}", {"v": "PRESENT"}))
    log._writer.submit(lambda: None).result()  # let queued flushes finish
    files = sorted((tmp_path / "requests").rglob("*.parquet"))
    assert len(files) == 2  # two full batches of 3; the 7th row waits for the next flush
    assert all(
        f.parent.name == "hour=12" and f.parent.parent.name == "date=2025-12-01" for f in files
    )
    log.close()
    table = ds.dataset(tmp_path / "requests", partitioning="hive").to_table()
    assert table.num_rows == 7 and sorted(table["entity"].to_pylist()) == [str(i) for i in range(7)]
    assert table.select(LOG_SCHEMA.names).schema.equals(LOG_SCHEMA)
    assert not list((tmp_path / "requests").rglob(".*.tmp"))


def test_metrics_text_is_prometheus_exposition() -> None:
    metrics = ServiceMetrics("svc", "r1")
    metrics.observe("a", "200", 3.0, 2)
    metrics.observe("a", "200", 30.0, 1)
    metrics.observe("a", "500", 1.0, 1)
    text = metrics.render()
    assert (
        'raypipe_serve_requests_total{service="svc",replica="r1",variant="a",code="200"} 2' in text
    )
    assert (
        'raypipe_serve_latency_ms_bucket{service="svc",replica="r1",variant="a",le="5"} 2' in text
    )
    assert (
        'raypipe_serve_latency_ms_bucket{service="svc",replica="r1",variant="a",le="+Inf"} 3'
        in text
    )
    assert 'raypipe_serve_rows_total{service="svc",replica="r1",variant="a"} 4' in text
    for line in text.splitlines():
        assert line.startswith("#") or line.rsplit(" ", 1)[1].replace(".", "").isdigit()


def test_report_looks_once_per_run_with_always_valid_p(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raypipe.serving.sequential import SequentialTest

    ServiceRecord("svc", "http://x", 0, None, {"a": "m1", "b": "m2"}).write(str(tmp_path))
    log = RequestLog(tmp_path / "serving" / "svc" / "requests", "r1", 10**6, 3600)
    for i in range(400):
        variant = "a" if i % 2 else "b"
        score = 0.9 if (i % 4 < 2) == (variant == "b") else 0.1  # b always right, a always wrong
        log.append(
            log_row(1_764_590_400_000_000 + i, str(i), variant, "1", score, 1.0, 200, "{}", {})
        )
    log.close()
    pq.write_table(
        pa.table({"player_id": list(range(400)), "label": [int(i % 4 < 2) for i in range(400)]}),
        tmp_path / "labels.parquet",
    )
    args = ["serve", "report", "svc", "--data-dir", str(tmp_path)]
    args += ["--labels", str(tmp_path / "labels.parquet")]
    assert _cli(args) == 0
    assert _cli(args) == 0
    out = capsys.readouterr().out
    assert "yes" in out
    test = SequentialTest.load(tmp_path / "serving" / "svc" / "tests" / "b.json", "a", "b")
    assert len(test.looks) == 2 and test.looks[0].n_a == 200 and test.decided
