"""Start or join Ray, in one place.

``RayRuntime`` starts a local Ray (all local CPUs, no dashboard unless asked, token authentication
left as Ray sets it) or joins a running cluster (``address="auto"``, ``ray://host:10001`` or the
GCS address), and on exit shuts down only what it started. Nothing here runs on import.

A local Ray starts when it is first needed (:meth:`RayRuntime.start`, called by the backend
before any task, actor or service): a job whose stages are all cached, or that only scores on one
machine, never pays Ray's seconds of start-up and shutdown. A cluster is joined at once, so a
wrong address fails before any work.

Joining an explicit address finds the auth token as ``submit`` and ``jobs`` do
(:func:`raypipe.engine.auth.auth_token_for`) and turns on ``RAY_AUTH_MODE=token`` for it, which
Ray does not do by itself for an explicit address.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from raypipe.engine.auth import TOKEN_SOURCES_HINT, auth_token_for, enable_token_mode
from raypipe.errors import RuntimeUnavailableError

__all__ = ["WORKER_ENV", "RayRuntime", "RuntimeOptions"]

logger = logging.getLogger(__name__)
_worker_logger = logging.getLogger("ray._private.worker")


def _not_main_thread_warning(record: logging.LogRecord) -> bool:
    """Drops ray.init's warning that it sets no SIGTERM handler outside the main thread: a Ray
    started by a stage's thread leaves the command's own handlers (stop the run) as they are."""
    return not str(record.msg).startswith("SIGTERM handler is not set")


#: Thread pools inside Ray workers default to the machine's core count whatever a task asked for;
#: one thread per task keeps N tasks on N CPUs from oversubscribing the node.
WORKER_ENV: Mapping[str, str] = {
    "POLARS_MAX_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


@dataclass(frozen=True)
class RuntimeOptions:
    """How to get a Ray runtime.

    Parameters
    ----------
    address
        ``None`` starts a local Ray; ``"auto"`` joins the cluster this machine belongs to;
        ``ray://host:10001`` or ``host:6379`` join that cluster.
    num_cpus
        CPUs of a local Ray (default: all local CPUs). Ignored when joining.
    include_dashboard
        Start the dashboard with a local Ray (off by default: it costs start-up time).
    object_store_bytes
        Object store size of a local Ray (default: Ray's 30 % of memory).
    worker_env
        Environment variables every worker of this job gets.
    allow_insecure_token
        Send the auth token to a non-loopback ``address`` without TLS (a trusted network).
    """

    address: str | None = None
    num_cpus: int | None = None
    include_dashboard: bool = False
    object_store_bytes: int | None = None
    worker_env: Mapping[str, str] = field(default_factory=lambda: dict(WORKER_ENV))
    allow_insecure_token: bool = False


class RayRuntime:
    """A context manager around ``ray.init``/``ray.shutdown``.

    Examples
    --------
    >>> with RayRuntime(RuntimeOptions(num_cpus=2)) as runtime:  # doctest: +SKIP
    ...     print(runtime.cpus)
    """

    def __init__(self, options: RuntimeOptions | None = None) -> None:
        self.options = options or RuntimeOptions()
        self._started_here = False
        self._start_lock = threading.Lock()
        #: ``(on_death, interval_s)`` of :meth:`watch_local_node`, kept for a Ray started later.
        self._node_watch: tuple[Callable[[str], None], float] | None = None
        self._release_owner: threading.Event | None = None  # see _init_in_owner_thread
        #: Why the local node died (see :meth:`watch_local_node`); ``None`` while it lives.
        self.node_death: str | None = None

    @property
    def is_local(self) -> bool:
        """Whether :meth:`start` starts a Ray on this machine (no address, no ``RAY_ADDRESS``)."""
        return self.options.address is None and not os.environ.get("RAY_ADDRESS")

    @property
    def started(self) -> bool:
        """Whether this process is connected to Ray (started here or before); ``ray`` is not
        imported (0.7 s) to know."""
        ray = sys.modules.get("ray")
        return ray is not None and bool(ray.is_initialized())

    def __enter__(self) -> RayRuntime:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start or join Ray, unless this process is already connected (thread-safe: stages
        running at once may all ask for it)."""
        with self._start_lock:
            if self.started:
                return
            if threading.current_thread() is threading.main_thread():
                self._init()
            else:
                self._init_in_owner_thread()
            if self._node_watch is not None:
                self._watch_raylet(*self._node_watch)

    def _init_in_owner_thread(self) -> None:
        """``ray.init`` from a thread that lives until :meth:`stop`.

        Ray starts its local processes (GCS, raylet) with ``PR_SET_PDEATHSIG``, which Linux ties
        to the *thread* that started them: Ray started from a stage's thread would be killed
        when that thread ends. The owner thread ends only after ``ray.shutdown``.

        This driver's C++ failure-signal handler (Abseil's) stays off: installed after the
        command's SIGINT/SIGTERM handlers (stop at the next safe point), which a thread cannot
        install again, it would take SIGTERM first and abort the process at exit (measured: exit
        -6 instead of 143). Ray's documented switch, for this process only; workers keep theirs.
        """
        ready = threading.Event()
        failure: list[BaseException] = []
        release = self._release_owner = threading.Event()

        def own() -> None:
            from ray._private import ray_constants

            ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True
            _worker_logger.addFilter(_not_main_thread_warning)
            try:
                self._init()
            except BaseException as exc:
                failure.append(exc)
                return
            finally:
                _worker_logger.removeFilter(_not_main_thread_warning)
                ready.set()
            release.wait()

        threading.Thread(target=own, name="raypipe-ray-owner", daemon=True).start()
        ready.wait()
        if failure:
            raise failure[0]

    def _init(self) -> None:
        import ray

        options = self.options
        kwargs: dict[str, Any] = {
            "address": options.address,
            "runtime_env": {"env_vars": dict(options.worker_env)},
            "log_to_driver": False,
            "logging_level": logging.WARNING,
            "configure_logging": True,
        }
        # "auto" is this machine's own cluster, where Ray finds the token by itself.
        explicit = options.address is not None and options.address != "auto"
        if explicit and auth_token_for(
            str(options.address), allow_insecure=options.allow_insecure_token
        ):
            enable_token_mode()
        if options.address is None:
            kwargs["num_cpus"] = options.num_cpus or os.cpu_count() or 1
            kwargs["include_dashboard"] = options.include_dashboard
            if options.object_store_bytes:
                kwargs["object_store_memory"] = options.object_store_bytes
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"at `{options.address}`" if options.address else "locally"
            raise RuntimeUnavailableError(
                f"Could not start or reach Ray {where}: {exc}",
                hint="check the address (e.g. `auto`, `ray://HOST:10001`), that the cluster runs "
                f"the same Ray version, and that its auth token is available: {TOKEN_SOURCES_HINT}",
            ) from exc
        self._started_here = True
        logger.info("Ray runtime ready: %s CPUs on %d node(s)", self.cpus, len(self.node_ids()))

    def stop(self) -> None:
        """Shut down Ray if this runtime started or joined it."""
        if self._started_here and self.started:
            import ray

            ray.shutdown()
        self._started_here = False
        if self._release_owner is not None:
            self._release_owner.set()
            self._release_owner = None

    def watch_local_node(self, on_death: Callable[[str], None], interval_s: float = 0.5) -> None:
        """Call ``on_death(reason)`` once if the raylet of the local Ray this runtime started
        exits (killed, out of memory) while the runtime runs; a Ray not started yet is watched
        from its start.

        Ray's own reaction is to end the driver process with exit code 1 after some seconds,
        without a word from raypipe; watching the process lets the driver say what happened
        and stop at a safe point first. Joined clusters are not watched (their nodes are not
        this process's children).
        """
        with self._start_lock:
            self._node_watch = (on_death, interval_s)
            if self._started_here:
                self._watch_raylet(on_death, interval_s)

    def _watch_raylet(self, on_death: Callable[[str], None], interval_s: float) -> None:
        raylet = self._local_raylet()
        if raylet is None:
            return

        def watch() -> None:
            while self._started_here:
                code = raylet.poll()
                if code is not None:
                    self.node_death = (
                        f"the local Ray node died (its raylet, pid {raylet.pid}, exited with "
                        f"{'signal ' + str(-code) if code < 0 else 'code ' + str(code)})"
                    )
                    on_death(self.node_death)
                    return
                threading.Event().wait(interval_s)

        threading.Thread(target=watch, name="raypipe-node-watch", daemon=True).start()

    def _local_raylet(self) -> Any:
        """The raylet ``Popen`` of a Ray this runtime started locally, else ``None``."""
        if not self._started_here or self.options.address is not None:
            return None
        from ray._private import ray_constants
        from ray._private.worker import _global_node

        processes = getattr(_global_node, "all_processes", {}) or {}
        infos = processes.get(ray_constants.PROCESS_TYPE_RAYLET) or []
        return infos[0].process if infos else None

    @property
    def cpus(self) -> int:
        """CPUs of the whole cluster (of a local Ray not started yet: those it will have)."""
        if self.is_local and not self.started:
            return self.options.num_cpus or os.cpu_count() or 1
        import ray

        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    @property
    def driver_node_id(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())

    @staticmethod
    def node_ids() -> list[str]:
        """Ids of the cluster's live nodes."""
        import ray

        return [node["NodeID"] for node in ray.nodes() if node.get("Alive")]
