"""Ray Serve glue for ``raypipe serve``: the only module that imports ``ray.serve``.

One deployment class, :class:`ServingReplica`, wraps a
:class:`~raypipe.serving.service.OnlineService`: it moves HTTP bodies in and out, and puts
scoring behind ``@serve.batch`` so concurrent requests are scored together. The application is
the deployment alone (no FastAPI ingress in front: starlette requests go straight to
``__call__``), so a request crosses the proxy and one replica and nothing else.

Throughput: raypipe starts a local Ray with ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` unless told not
to (:func:`serve_environment`). In Ray 2.60 that flag runs user code and the router on the
replica's own event loop, buffers request logs, freezes the GC after start-up and gives every
ingress replica a direct HTTP port (``30000+``); with it, HAProxy replaces Serve's Python proxy
at the service's URL and forwards straight to those ports (:mod:`raypipe.engine.haproxy`). The
benchmark (``benchmarks/serving.py``) measures what they buy.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from typing import Any

import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from raypipe.engine.haproxy import haproxy_environment
from raypipe.engine.runtime import WORKER_ENV, RayRuntime, RuntimeOptions
from raypipe.errors import RuntimeUnavailableError
from raypipe.serving.requests import ParsedRequest, RequestError, parse_body
from raypipe.serving.service import OnlineService
from raypipe.serving.spec import ServiceSpec
from raypipe.serving.traffic import ControlState, control_path

__all__ = [
    "THROUGHPUT_ENV",
    "ServingReplica",
    "build_app",
    "build_deployment",
    "delete",
    "deploy",
    "direct_urls",
    "serve_environment",
    "serving_runtime",
    "status",
]

logger = logging.getLogger(__name__)

#: Serve's opt-in throughput settings (read when Serve's processes import it).
#: Direct ingress drains a stopping replica for 30 s by default; a replica raypipe stops has
#: already finished its requests (graceful shutdown), so 2 s is enough.
THROUGHPUT_ENV = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
}
_METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def serve_environment(spec: ServiceSpec, *, local: bool) -> dict[str, str]:
    """Environment variables Serve's processes need for ``spec`` (set before Ray starts).

    Throughput mode on a Ray that raypipe starts here (``local``) also puts Serve's HAProxy
    ingress in front of the replicas (:mod:`raypipe.engine.haproxy`), so the service's URL skips
    the Python proxy; its files and launcher live on this machine, so a cluster keeps its own
    ingress settings.
    """
    if not spec.throughput_optimized:
        return {}
    return {**THROUGHPUT_ENV, **(haproxy_environment(spec.host) if local else {})}


def serving_runtime(spec: ServiceSpec, address: str | None = None) -> RayRuntime:
    """The (not yet started) runtime to serve ``spec`` on: the cluster at ``address``, or a
    local Ray whose processes get :func:`serve_environment`.

    For a local Ray the variables are also set in this process's environment now: Serve's
    controller and proxy are started by Ray, not as this runtime's workers, and inherit it.
    """
    env = serve_environment(spec, local=address is None)
    if address is None:
        os.environ.update(env)
    return RayRuntime(RuntimeOptions(address=address, worker_env={**WORKER_ENV, **env}))


class ServingReplica:
    """One Serve replica of a raypipe service (see the module docstring)."""

    def __init__(self, spec: ServiceSpec) -> None:
        try:
            replica = serve.get_replica_context().replica_id.unique_id
        except Exception:  # outside Serve (direct construction in tests)
            replica = "local"
        self.spec = spec
        self.service = OnlineService(spec, replica)
        self.service.start_watching()
        # `serve.batch` is annotated as returning a plain callable, but its wrapper carries these
        # documented setters (ray/serve/batching.py).
        self._score_batch.set_max_batch_size(spec.max_batch_size)  # type: ignore[attr-defined]
        self._score_batch.set_batch_wait_timeout_s(spec.batch_wait_s)  # type: ignore[attr-defined]
        self._prefix = spec.route_prefix.rstrip("/")
        self._auth = f"Bearer {spec.token}".encode() if spec.token else None

    async def __call__(self, request: Request) -> Response:
        path = request.url.path
        if self._prefix and path.startswith(self._prefix):
            path = path[len(self._prefix) :]
        path = path or "/"
        if path == "/healthz":
            return JSONResponse(self.service.health())
        if self._auth is not None and not hmac.compare_digest(
            request.headers.get("authorization", "").encode(), self._auth
        ):
            return JSONResponse(
                {
                    "error": "missing or wrong bearer token",
                    "hint": "send `Authorization: Bearer …`",
                },
                status_code=401,
            )
        if path == "/metrics":
            return PlainTextResponse(self.service.metrics.render(), media_type=_METRICS_TYPE)
        if path not in ("/", "/predict") or request.method != "POST":
            return JSONResponse(
                {"error": f"no route `{request.method} {path}`", "hint": "POST /predict"},
                status_code=404,
            )
        started = time.perf_counter()
        baseline = self.spec.baseline
        try:
            parsed = parse_body(await request.body(), self.spec.entity)
            answer = await self._score_batch(parsed)
            if isinstance(answer, Exception):
                raise answer
        except RequestError as exc:
            self.service.failed(baseline, 400, (time.perf_counter() - started) * 1000)
            return JSONResponse({"error": exc.message, "hint": exc.hint}, status_code=400)
        except Exception as exc:
            logger.exception("scoring failed")
            self.service.failed(baseline, 500, (time.perf_counter() - started) * 1000)
            return JSONResponse({"error": f"scoring failed: {exc}"}, status_code=500)
        return JSONResponse(answer)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def _score_batch(self, requests: list[ParsedRequest]) -> list[Any]:
        # One bad request must not fail the others batched with it: on an error, score each
        # request alone and hand each caller its own answer or exception.
        try:
            return self.service.score(requests)
        except Exception as exc:
            if len(requests) == 1:
                return [exc]
        answers: list[Any] = []
        for request in requests:
            try:
                answers.append(self.service.score([request])[0])
            except Exception as exc:
                answers.append(exc)
        return answers

    def check_health(self) -> None:
        """Serve's health check: the replica answers while its models are loaded."""
        if not self.service.slots:
            raise RuntimeError("no model loaded")

    def __del__(self) -> None:
        service = getattr(self, "service", None)
        if service is not None:
            service.close()


def build_app(spec: ServiceSpec) -> Any:
    """The Serve application of ``spec``: its one deployment, bound to ``spec``."""
    return build_deployment(spec).bind(spec)


def build_deployment(spec: ServiceSpec) -> serve.Deployment:
    """The Serve deployment of ``spec``'s replicas, autoscaled within its bounds (unbound)."""
    options: dict[str, Any] = {
        "name": "raypipe_scorer",
        "max_ongoing_requests": spec.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": spec.replica_cpus},
        "graceful_shutdown_timeout_s": 5,
        # Every request is already in the service's Parquet request log; Serve's access log
        # would log it again, and its buffered flush stalls the replica for tens of ms (the
        # p99 at 200 requests/s went from 16-35 ms to 11-16 ms without it, benchmarks/serving.py).
        "logging_config": {"enable_access_log": False},
    }
    if spec.max_replicas > spec.min_replicas:
        options["autoscaling_config"] = {
            "min_replicas": spec.min_replicas,
            "max_replicas": spec.max_replicas,
            "target_ongoing_requests": spec.target_ongoing_requests,
        }
    else:
        options["num_replicas"] = spec.min_replicas
    return serve.deployment(**options)(ServingReplica)


def deploy(spec: ServiceSpec) -> None:
    """Start Serve on ``spec.host:port`` if needed and run the service; returns when it is up.

    A canary's ramp starts now: the control state's ``started_at`` is written before any
    replica starts, so every replica counts the ramp from the same instant.
    """
    if not ray.is_initialized():
        raise RuntimeUnavailableError(
            "Ray is not running in this process", hint="start a RayRuntime before deploying"
        )
    path = control_path(spec.data_dir, spec.name)
    state = ControlState.read(path)
    state.started_at = time.time()
    state.active = state.active or spec.traffic.active
    state.write(path)
    serve.start(http_options={"host": spec.host, "port": spec.port})
    serve.run(build_app(spec), name=spec.name, route_prefix=spec.route_prefix)
    logger.info("service `%s` running at %s", spec.name, spec.url)


def status(name: str) -> str:
    """Serve's status of application ``name`` (``RUNNING``, ``DEPLOYING``, … or ``NOT_FOUND``)."""
    applications = serve.status().applications
    return str(applications[name].status.value) if name in applications else "NOT_FOUND"


def direct_urls(spec: ServiceSpec) -> list[str]:
    """The replicas' own HTTP endpoints (direct ingress), or ``[]`` without throughput mode.

    With ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` every ingress replica also listens on its own
    port, so a client can skip the proxy's hop. Serve has no public call for these ports in
    2.60: this asks the controller as Serve's own ``get_application_urls`` does (private API,
    hence the broad fallback). The ports change when a replica restarts.
    """
    try:
        from ray.serve.context import _get_global_client

        client = _get_global_client()
        if client is None:  # Serve is not running here
            return []
        groups = ray.get(client._controller.get_target_groups.remote(spec.name), timeout=10)
    except Exception:  # a private API: any failure means "no direct URLs"
        return []
    prefix = spec.route_prefix.rstrip("/")
    urls = []
    for group in groups:
        if str(getattr(group.protocol, "value", group.protocol)).upper() != "HTTP":
            continue
        for target in group.targets:
            if target.port != spec.port:  # the proxy's own target is not a direct one
                urls.append(f"http://{spec.host}:{target.port}{prefix}")
    return sorted(set(urls))


def delete(name: str) -> None:
    """Delete application ``name`` (its replicas finish their requests first)."""
    serve.delete(name)
