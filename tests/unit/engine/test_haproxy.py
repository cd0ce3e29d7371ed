"""Serve's HAProxy ingress as raypipe starts it: private files, free ports, loopback listeners."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from raypipe.engine import haproxy

CONFIG = """global
    stats socket /x/admin.sock mode 666 level admin
frontend prometheus
    bind :9101
frontend http_frontend
    bind 127.0.0.1:8071
listen stats
  bind *:8404
"""


def test_wildcard_binds_move_to_the_host_and_others_stay() -> None:
    local = haproxy.loopback_config(CONFIG, "127.0.0.1")
    binds = [line.strip() for line in local.splitlines() if line.strip().startswith("bind")]
    assert binds == ["bind 127.0.0.1:9101", "bind 127.0.0.1:8071", "bind 127.0.0.1:8404"]
    assert local.replace("127.0.0.1:9101", ":9101").replace("127.0.0.1:8404", "*:8404") == CONFIG


@pytest.fixture
def fake_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An executable standing in for HAProxy: it records its arguments and the config it got."""
    record = tmp_path / "called.txt"
    binary = tmp_path / "haproxy"
    binary.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "args = sys.argv[1:]\n"
        "config = open(args[args.index('-f') + 1]).read()\n"
        f"open({str(record)!r}, 'w').write(repr(args) + '\\n' + config)\n"
    )
    binary.chmod(0o700)
    monkeypatch.setattr(haproxy, "haproxy_binary", lambda: str(binary))
    # The services' folders, and the sweep for stale ones, stay in this test's folder.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return record


def test_loopback_service_gets_private_files_free_ports_and_a_rewriting_launcher(
    fake_binary: Path, tmp_path: Path
) -> None:
    env = haproxy.haproxy_environment("127.0.0.1")
    folder = Path(env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"]).parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # the admin socket lives here
    assert folder.parent == tmp_path
    assert (folder / haproxy.OWNER_FILE).read_text().split()[0] == str(os.getpid())
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_HAPROXY_METRICS_ENABLED"] == "0"
    for key in ("SOCKET_PATH", "SERVER_STATE_FILE", "METRICS_SOCKET_PATH"):
        assert Path(env[f"RAY_SERVE_HAPROXY_{key}"]).parent == folder
    ports = {int(env["RAY_SERVE_HAPROXY_STATS_PORT"]), int(env["RAY_SERVE_HAPROXY_METRICS_PORT"])}
    assert len(ports) == 2 and not ports & {8404, 9101}

    # Serve runs the binary it is given as `BIN -db -f CONFIG ...`: the launcher rewrites the
    # config in place (Serve recognises its processes by that path) and runs the real binary.
    config = Path(env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"])
    config.write_text(CONFIG)
    launcher = env["RAY_SERVE_HAPROXY_BINARY_PATH"]
    subprocess.run([launcher, "-db", "-f", str(config), "-sf", "123"], check=True, timeout=30)
    args, _, seen = fake_binary.read_text().partition("\n")
    assert args == repr(["-db", "-f", str(config), "-sf", "123"])
    assert seen == config.read_text() == haproxy.loopback_config(CONFIG, "127.0.0.1")
    assert "bind *:" not in seen and "bind :" not in seen


def test_a_service_on_every_interface_keeps_serves_binds(fake_binary: Path) -> None:
    env = haproxy.haproxy_environment("0.0.0.0")
    assert "RAY_SERVE_HAPROXY_BINARY_PATH" not in env  # no launcher: HAProxy binds as Serve says
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"


def test_without_a_binary_serves_python_proxy_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(haproxy, "haproxy_binary", lambda: None)
    assert haproxy.haproxy_environment("127.0.0.1") == {}


def test_the_bundled_binary_is_found() -> None:
    binary = haproxy.haproxy_binary()
    assert binary is not None and os.access(binary, os.X_OK)


def _ended_pid() -> int:
    """The PID of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait(timeout=30)
    return child.pid


def test_only_folders_whose_raypipe_owner_ended_are_removed(
    fake_binary: Path, tmp_path: Path
) -> None:
    ended = _ended_pid()

    def folder(name: str, owner: int | None) -> Path:
        path = tmp_path / name
        path.mkdir()
        (path / "haproxy.cfg").write_text(CONFIG)
        if owner is not None:
            haproxy._claim(path, owner)
        return path

    stale = folder("raypipe-haproxy-killed", ended)
    live = folder("raypipe-haproxy-live", os.getpid())
    unmarked = folder("raypipe-haproxy-unmarked", None)  # not raypipe's: never touched
    unrelated = folder("someone-else", ended)  # a marker, but not a raypipe-haproxy-* folder
    elsewhere = folder("raypipe-haproxy-elsewhere", None)  # a PID of another PID namespace
    (elsewhere / haproxy.OWNER_FILE).write_text(f"{ended} pid:[0]\n")
    link = tmp_path / "raypipe-haproxy-link"  # a link to a stale-looking folder is no folder
    link.symlink_to(unrelated)

    assert haproxy.remove_stale_folders(tmp_path) == [stale]
    assert not stale.exists()
    for kept in (live, unmarked, unrelated, elsewhere, link):
        assert (kept / "haproxy.cfg").read_text() == CONFIG

    # raypipe serve sweeps at start-up, before it makes its own folder.
    again = folder("raypipe-haproxy-killed-again", ended)
    env = haproxy.haproxy_environment("127.0.0.1")
    assert not again.exists() and Path(env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"]).parent.is_dir()
    assert live.exists()
