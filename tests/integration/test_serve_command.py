"""``raypipe serve`` as a user runs it: its own Ray, HAProxy at the URL, on loopback only, stopped.

The module's other tests deploy on the session's Ray; this one runs the command in a child
process, which starts a local Ray with Serve's throughput settings and HAProxy in front of the
replicas (``raypipe.engine.haproxy``), and stops it with ``raypipe serve stop``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from raypipe.inference.predictor import Predictor
from raypipe.serving.record import probe
from tests.support.serving import purchase_table, register_blob, train_blob
from tests.support.signals import sigint_as_from_a_terminal

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PORT = 8183


def _haproxy_processes(folder_prefix: str = "raypipe-haproxy-") -> dict[int, Path]:
    """Process id -> config file of the running HAProxy processes raypipe's launcher started."""
    processes = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"haproxy") and b"-f" in args:
            config = args[args.index(b"-f") + 1].decode()
            if folder_prefix in config:
                processes[int(pid)] = Path(config)
    return processes


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
        if pid == ancestor:
            return True
    return False


def _listening(pids: set[int]) -> set[str]:
    """``address:port`` of every TCP socket that processes ``pids`` listen on (from /proc)."""
    inodes = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:  # ended (an old process after a reload)
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
    listening = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                host, port = local.split(":")
                # /proc prints each 32-bit word of the address in the host's (little) endianness
                raw = b"".join(bytes.fromhex(host[i : i + 8])[::-1] for i in range(0, len(host), 8))
                listening.add(f"{socket.inet_ntop(family, raw)}:{int(port, 16)}")
    return listening


def test_serve_command_answers_through_haproxy_on_loopback_and_stops(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    table = purchase_table(100, seed=5)
    blob = train_blob(table, seed=1, uri="models:/fraud@champion")
    register_blob(data_dir, "fraud", blob, "champion", "first")
    raypipe = [sys.executable, "-m", "raypipe.cli.main"]
    command = [*raypipe, "serve", "models:/fraud@champion", "--data-dir", data_dir]
    child = subprocess.Popen(
        [*command, "--port", str(PORT), "--replica-cpus", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=sigint_as_from_a_terminal,
    )
    url = f"http://127.0.0.1:{PORT}"
    try:
        deadline = time.monotonic() + 180
        while probe(url) is None:
            assert child.poll() is None, child.stdout.read() if child.stdout else ""
            assert time.monotonic() < deadline, "the service did not come up in 180 s"
            time.sleep(1)
        rows = table.drop_columns(["label"]).to_pylist()
        body = json.dumps({"instances": rows}).encode()
        with urllib.request.urlopen(urllib.request.Request(f"{url}/predict", body)) as answer:
            scores = [p["score"] for p in json.loads(answer.read())["predictions"]]
        expected = Predictor(blob)(table)["score"].to_numpy()
        np.testing.assert_array_equal(np.array(scores, np.float32), expected)

        # HAProxy owns the URL, and every socket it listens on is on loopback (its stats and
        # metrics listeners too, which Serve's config binds to every interface). Ours are the
        # HAProxy processes the command's Ray started (other tests may run their own).
        ours = {
            pid: path
            for pid, path in _haproxy_processes().items()
            if _descends_from(pid, child.pid)
        }
        (config,) = set(ours.values())
        listening = _listening(set(ours))
        assert f"127.0.0.1:{PORT}" in listening
        assert len(listening) >= 3 and all(a.startswith("127.0.0.1:") for a in listening), listening
        folder = next(p for p in config.parents if p.name.startswith("raypipe-haproxy-"))
    finally:
        stop = subprocess.run(
            [*raypipe, "serve", "stop", "fraud", "--data-dir", data_dir],
            capture_output=True,
            text=True,
            timeout=150,
        )
        try:
            output, _ = child.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            output, _ = child.communicate()
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert child.returncode == 130, output  # `stop` interrupts it as Ctrl-C does
    assert not folder.exists()  # the private folder goes with the service
    assert probe(url) is None
