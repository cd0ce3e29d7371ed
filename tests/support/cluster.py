"""A real two-node Ray cluster on 127.0.0.1 for tests: a head and a worker as separate processes.

Each node is ``ray start --block`` in its own process group, with its own ports, its own temp
dir and its own auth token, so it never touches another engineer's Ray and ``ray stop`` (which
stops every Ray on the machine) is never needed: stopping a node kills its process group.
Token authentication is on (``RAY_AUTH_MODE=token``), as on a real cluster.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LocalCluster", "free_port", "local_cluster"]

logger = logging.getLogger(__name__)

#: Object store per node: the test jobs move kilobytes; 80 MB is just above Ray's minimum.
OBJECT_STORE_BYTES = 80 * 1024**2
START_TIMEOUT_S = 90.0

_VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _node_ports() -> list[str]:
    # Worker ports: a small range below Linux's ephemeral ports (32768+), where free_port() and
    # other processes' outgoing connections pick theirs; a random start keeps two clusters apart.
    worker_low = 10_000 + secrets.randbelow(22_000)
    return [
        "--node-manager-port",
        str(free_port()),
        "--object-manager-port",
        str(free_port()),
        "--metrics-export-port",
        str(free_port()),
        "--dashboard-agent-listen-port",
        str(free_port()),
        "--dashboard-agent-grpc-port",
        str(free_port()),
        "--runtime-env-agent-port",
        str(free_port()),
        "--min-worker-port",
        str(worker_low),
        "--max-worker-port",
        str(worker_low + 200),
    ]


@dataclass
class LocalCluster:
    """A head and a worker node; :meth:`stop` kills both process groups (idempotent)."""

    root: Path
    cpus_per_node: int = 1
    gcs_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    head: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def token_path(self) -> Path:
        return self.root / "auth_token"

    @property
    def env(self) -> dict[str, str]:
        """Environment of the nodes, and of a client that talks to them."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("RAY_") or key == "RAY_USAGE_STATS_ENABLED"
        }
        env.update(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=str(self.token_path),
            RAY_USAGE_STATS_ENABLED="0",
            # Jobs run `raypipe` and `python` from this virtual environment.
            PATH=f"{_VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        return env

    def start(self) -> LocalCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        self.token_path.write_text(self.token)
        self.token_path.chmod(0o600)
        self.head = self._spawn(
            "head",
            [
                "--head",
                "--node-ip-address",
                "127.0.0.1",
                "--port",
                str(self.gcs_port),
                "--ray-client-server-port",
                str(free_port()),
                "--include-dashboard",
                "true",
                "--dashboard-host",
                "127.0.0.1",
                "--dashboard-port",
                str(self.dashboard_port),
                "--temp-dir",
                str(self.root / "head"),
            ],
        )
        self._wait_for(lambda: self._alive_nodes() >= 1, "the head node", self.head)
        self.start_worker()
        return self

    def start_worker(self) -> None:
        """Start (or restart) the worker node and wait until it has joined."""
        before = self._alive_nodes()
        for attempt in (1, 2):
            self.worker = self._spawn(
                "worker",
                ["--address", self.gcs_address, "--node-ip-address", "127.0.0.1"],
            )
            try:
                self._wait_for(
                    lambda: self._alive_nodes() > before,
                    "the worker node",
                    self.worker,
                    stop_on_failure=attempt == 2,
                )
                return
            except RuntimeError as exc:
                # A loaded machine can make the worker's first GCS call time out: once more.
                logger.warning("worker node did not start, retrying: %s", str(exc)[:200])
                _kill_group(self.worker)
                if attempt == 2:
                    raise

    def ensure_worker(self) -> None:
        """Start the worker node unless it is running (a test may have killed it)."""
        if self.worker is None or self.worker.poll() is not None:
            self.start_worker()

    def kill_worker(self) -> None:
        """SIGKILL the worker node's whole process group: raylet, object store, workers."""
        _kill_group(self.worker)
        self.worker = None

    def stop(self) -> None:
        _kill_group(self.worker)
        _kill_group(self.head)
        self.worker = self.head = None
        _kill_strays(self.root)

    def node_ids(self) -> list[str]:
        """Ids of the live nodes, from the dashboard's state API."""
        nodes = self._get_json("/api/v0/nodes?limit=100")["data"]["result"]["result"]
        return [node["node_id"] for node in nodes if node["state"] == "ALIVE"]

    # -- internals -------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        command = [
            str(_VENV_BIN / "ray"),
            "start",
            "--block",
            "--num-cpus",
            str(self.cpus_per_node),
            "--object-store-memory",
            str(OBJECT_STORE_BYTES),
            "--disable-usage-stats",
            *_node_ports(),
            *args,
        ]
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,  # its own process group: killed as one, never ours
        )

    def _alive_nodes(self) -> int:
        try:
            return len(self.node_ids())
        except (OSError, KeyError, ValueError):
            return 0

    def _get_json(self, path: str) -> dict:  # type: ignore[type-arg]
        request = urllib.request.Request(
            self.dashboard_url + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    def _wait_for(
        self,
        ready: Callable[[], bool],
        what: str,
        process: subprocess.Popen[bytes],
        *,
        stop_on_failure: bool = True,
    ) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        problem = f"did not start within {START_TIMEOUT_S:.0f} s"
        while time.monotonic() < deadline:
            if ready():
                return
            if process.poll() is not None:
                problem = f"exited with code {process.returncode}"
                break
            time.sleep(0.5)
        logs = "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.root.glob("*.log"))
        )
        if stop_on_failure:
            self.stop()
        raise RuntimeError(f"{what} {problem}\n{logs}")


def _kill_group(process: subprocess.Popen[bytes] | None) -> None:
    if process is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    # Ray's daemons (gcs_server, raylet, dashboard, workers) stay in the process group of
    # `ray start --block`: checked with `ps -eo pid,pgid` on Ray 2.60. Job drivers do not: the
    # job supervisor starts each in a session of its own (see _kill_strays).


def _kill_strays(root: Path) -> None:
    """SIGKILL processes that run in this cluster's temp dir: job drivers and their watchers.

    A job's driver runs in its own session with its cwd in the head's temp dir; Ray's watcher
    kills it when the supervisor dies, but not at once. Only processes whose working directory
    or command line names ``root`` are touched, so no other Ray on the machine is.
    """
    marker = str(root)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(marker) or marker in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(proc.name), signal.SIGKILL)


@contextlib.contextmanager
def local_cluster(cpus_per_node: int = 1) -> Iterator[LocalCluster]:
    """Start a head and a worker node; always stop both and delete their files on exit."""
    # Short root: Ray's Unix socket paths must stay under ~107 characters.
    root = Path(tempfile.mkdtemp(prefix="rpc-", dir="/tmp"))
    cluster = LocalCluster(root=root / "1", cpus_per_node=cpus_per_node)
    try:
        try:
            cluster.start()
        except RuntimeError as exc:
            # The ports were free when picked, but another Ray on this shared machine may have
            # taken one since: try once more with fresh ports.
            logger.warning("local cluster did not start, retrying with new ports: %s", exc)
            cluster = LocalCluster(root=root / "2", cpus_per_node=cpus_per_node)
            cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
