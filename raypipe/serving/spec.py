"""What a service is: model variants, features, batching, scaling, traffic, where it listens.

A :class:`ServiceSpec` is frozen and picklable: the CLI and the ``serve.deploy`` stage build it,
:mod:`raypipe.engine.serving` hands it to every replica, and every replica builds the same
:class:`~raypipe.serving.service.OnlineService` from it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from raypipe.errors import SpecError
from raypipe.features.store.online import StoreConfig

__all__ = ["DEFAULT_BATCH_WAIT_MS", "DEFAULT_PORT", "ServiceSpec", "SloSpec", "TrafficSpec"]

#: Not Serve's 8000: a raypipe service should not collide with a Ray Serve the user runs.
DEFAULT_PORT = 8071
#: Serve's batch handler scores what has queued and never waits for more: under load requests
#: queue while a batch is scored and form the next batch; when idle, waiting only adds latency
#: (2 ms measured ~5.5 → 2.5 ms single-client p50 on 2 CPUs, benchmarks/serving.py).
DEFAULT_BATCH_WAIT_MS = 0.0
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

PolicyKind = Literal["single", "ab", "canary", "shadow", "bluegreen"]
POLICY_KINDS: tuple[PolicyKind, ...] = get_args(PolicyKind)


@dataclass(frozen=True)
class SloSpec:
    """A variant breaking either bound over its last ``window`` requests is rolled back.

    ``min_requests`` requests must be seen first, so one slow start does not roll back.
    """

    max_error_rate: float = 0.01
    max_p99_ms: float = 250.0
    window: int = 500
    min_requests: int = 100


@dataclass(frozen=True)
class TrafficSpec:
    """How requests are split between variants (see :mod:`raypipe.serving.traffic`).

    Parameters
    ----------
    kind
        ``single`` (one variant), ``ab`` (weighted, sticky by entity hash), ``canary`` (the
        candidate's share ramps through ``steps``, one step per ``hold_s``), ``shadow`` (the
        candidate scores a mirror of every request; its score is logged, never answered) or
        ``bluegreen`` (all traffic to ``active``; ``raypipe serve switch`` flips it).
    weights
        ``ab``: variant -> weight (normalised).
    baseline, candidate
        ``canary`` and ``shadow``: the variant answering today and the one under test.
    steps, hold_s
        ``canary``: candidate shares in order and how long each holds.
    active
        ``bluegreen``: the variant answering at start.
    slo
        The bounds that roll a non-baseline variant back automatically.
    """

    kind: PolicyKind = "single"
    weights: Mapping[str, float] = field(default_factory=dict)
    baseline: str = ""
    candidate: str = ""
    steps: tuple[float, ...] = (0.05, 0.25, 0.5, 1.0)
    hold_s: float = 600.0
    active: str = ""
    slo: SloSpec = field(default_factory=SloSpec)


@dataclass(frozen=True)
class ServiceSpec:
    """One ``raypipe serve`` application.

    Parameters
    ----------
    name
        Application name (Serve's app name; also the service record's name).
    variants
        Variant name -> model URI (``models:/name@alias``, ``models:/name/3`` or a file). A
        ``models:/name@alias`` variant follows its alias: a promotion reloads it in place.
    entity
        The entity key every request row carries.
    views, full_feature_names
        Served feature views (``raypipe features list``) looked up by entity; empty: none.
        With ``full_feature_names`` their columns are named ``view__column``.
    store
        The online store holding the views.
    data_dir, tracking_uri
        Where the feature registry, the service records and the request log live; the MLflow
        store of ``models:/`` URIs (``None``: the data directory's embedded one).
    host, port, route_prefix, token
        Where it listens (loopback by default) and the bearer token requests must present.
    max_batch_size, batch_wait_s, max_ongoing_requests
        Dynamic batching: the requests queued when a batch starts, and those arriving within
        ``batch_wait_s`` (default none: :data:`DEFAULT_BATCH_WAIT_MS`), are scored together; a
        replica takes up to ``max_ongoing_requests`` at once (at least ``max_batch_size``).
    min_replicas, max_replicas, target_ongoing_requests, replica_cpus
        Autoscaling bounds (``min == max``: a fixed count) and each replica's CPU reservation.
    reload_interval_s
        How often replicas check the registry for a moved alias.
    log_requests, log_flush_rows, log_flush_s
        Log every request to ``<data_dir>/serving/<name>/requests`` (Parquet, flushed in batches).
    throughput_optimized
        Start Serve with ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` (user code on the replica's loop,
        direct ingress ports) and HAProxy at the service's URL (:mod:`raypipe.engine.haproxy`);
        applies when raypipe starts Ray.
    """

    name: str
    variants: Mapping[str, str]
    entity: str = "player_id"
    views: tuple[str, ...] = ()
    full_feature_names: bool = False
    store: StoreConfig | None = None
    data_dir: str = "./raypipe-data"
    tracking_uri: str | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    route_prefix: str = "/"
    token: str | None = None
    max_batch_size: int = 32
    batch_wait_s: float = DEFAULT_BATCH_WAIT_MS / 1000
    max_ongoing_requests: int = 128
    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: float = 16.0
    replica_cpus: float = 1.0
    reload_interval_s: float = 5.0
    traffic: TrafficSpec = field(default_factory=TrafficSpec)
    log_requests: bool = True
    log_flush_rows: int = 5_000
    log_flush_s: float = 5.0
    throughput_optimized: bool = True

    def __post_init__(self) -> None:
        if "://" not in self.data_dir:  # replicas run in another working directory
            object.__setattr__(self, "data_dir", str(Path(self.data_dir).expanduser().resolve()))
        problems = []
        if not _NAME.match(self.name):
            problems.append(f"service name `{self.name}` must be letters, digits, `_.-`")
        if not self.variants:
            problems.append("a service needs at least one model variant")
        if not 1 <= self.min_replicas <= self.max_replicas:
            problems.append(
                f"replicas: need 1 <= min ({self.min_replicas}) <= max ({self.max_replicas})"
            )
        if self.max_batch_size < 1 or self.batch_wait_s < 0:
            problems.append("`max_batch_size` must be >= 1 and `batch_wait_s` >= 0")
        if self.max_ongoing_requests < self.max_batch_size:
            problems.append("`max_ongoing_requests` must be >= `max_batch_size`")
        if self.views and self.store is None:
            problems.append("feature `views` need an online `store`")
        if not self.route_prefix.startswith("/"):
            problems.append(f"`route_prefix` must start with `/`, received `{self.route_prefix}`")
        problems += _traffic_problems(self.traffic, set(self.variants))
        if problems:
            raise SpecError(problems, hint="see `raypipe serve --help`")

    @property
    def baseline(self) -> str:
        """The variant that answers when nothing else applies (first variant by default)."""
        traffic = self.traffic
        return traffic.baseline or traffic.active or next(iter(self.variants))

    @property
    def url(self) -> str:
        prefix = self.route_prefix.rstrip("/")
        return f"http://{self.host}:{self.port}{prefix}"


def _traffic_problems(traffic: TrafficSpec, variants: set[str]) -> list[str]:
    problems = []
    if traffic.kind not in POLICY_KINDS:
        problems.append(f"traffic kind `{traffic.kind}` is not one of {', '.join(POLICY_KINDS)}")
    named = [*traffic.weights, traffic.baseline, traffic.candidate, traffic.active]
    unknown = sorted({n for n in named if n and n not in variants})
    if unknown:
        problems.append(
            f"traffic names unknown variant(s) {unknown} (variants: {sorted(variants)})"
        )
    if traffic.kind == "ab" and (len(traffic.weights) < 2 or min(traffic.weights.values()) < 0):
        problems.append("`ab` traffic needs weights >= 0 for at least two variants")
    if traffic.kind in ("canary", "shadow") and not (traffic.baseline and traffic.candidate):
        problems.append(f"`{traffic.kind}` traffic needs `baseline` and `candidate`")
    if traffic.kind == "canary" and (
        not traffic.steps or any(not 0 <= s <= 1 for s in traffic.steps) or traffic.hold_s <= 0
    ):
        problems.append("`canary` needs steps in [0, 1] and a positive `hold_s`")
    if traffic.kind == "bluegreen" and not traffic.active:
        problems.append("`bluegreen` traffic needs `active`")
    if traffic.kind == "single" and len(variants) > 1:
        problems.append("several variants need a traffic policy (ab, canary, shadow, bluegreen)")
    return problems
