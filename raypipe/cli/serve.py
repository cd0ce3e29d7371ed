"""``raypipe serve``: run a model as an online service; ``status``, ``stop``, ``switch`` it.

``raypipe serve models:/fraud@champion`` starts Ray (or joins ``--address``), deploys the
service on Ray Serve, records it under the data directory and keeps it running in the
foreground until Ctrl-C or ``raypipe serve stop NAME``. A promotion of the alias reloads the
model in place (``--reload-interval``).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional, cast

import typer
from rich.table import Table

from raypipe.cli.consoles import console
from raypipe.cli.options import (
    AddressOption,
    DataDirOption,
    RedisUrlOption,
    SqlitePathOption,
    TrackingUriOption,
    online_store,
)
from raypipe.errors import RaypipeError, SpecError

__all__ = ["register", "serve"]

COMMANDS = ("status", "stop", "switch", "report")
TOKEN_ENV = "RAYPIPE_SERVE_TOKEN"


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def serve(
    target: Annotated[
        str,
        typer.Argument(
            help="`models:/NAME@ALIAS` (or a model file) to serve; or `status`, "
            "`stop NAME`, `switch NAME VARIANT`."
        ),
    ],
    args: Annotated[
        Optional[list[str]],  # noqa: UP045 - typer needs Optional
        typer.Argument(help="NAME for `stop`/`status`; NAME VARIANT for `switch`."),
    ] = None,
    name: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--name", help="Service name (default: the registered model's name)."),
    ] = None,
    data_dir: DataDirOption = None,
    tracking_uri: TrackingUriOption = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="HTTP port.")] = 8071,
    token: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--token", help=f"Bearer token requests must send (or ${TOKEN_ENV})."),
    ] = None,
    entity: Annotated[str, typer.Option("--entity", help="Entity key of a row.")] = "player_id",
    views: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--views", help="Served feature views to look up, comma separated."),
    ] = None,
    full_feature_names: Annotated[
        bool,
        typer.Option("--full-feature-names", help="Name view columns `view__column`."),
    ] = False,
    sqlite_path: SqlitePathOption = None,
    redis_url: RedisUrlOption = None,
    candidate: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--candidate", help="Second variant's model (for --traffic)."),
    ] = None,
    traffic: Annotated[
        str, typer.Option("--traffic", help="`single`, `ab`, `canary`, `shadow`, `bluegreen`.")
    ] = "single",
    split: Annotated[
        float, typer.Option("--split", help="`ab`: the candidate's share of entities.")
    ] = 0.5,
    steps: Annotated[
        str, typer.Option("--steps", help="`canary`: candidate shares, comma separated.")
    ] = "0.05,0.25,0.5,1",
    hold_s: Annotated[float, typer.Option("--hold-s", help="`canary`: seconds per step.")] = 600,
    max_batch_size: Annotated[int, typer.Option("--max-batch-size")] = 32,
    batch_wait_ms: Annotated[
        Optional[float],  # noqa: UP045 (typer needs Optional)
        typer.Option(
            "--batch-wait-ms", help="Wait this long for a batch to fill (default: never)."
        ),
    ] = None,
    min_replicas: Annotated[int, typer.Option("--min-replicas")] = 1,
    max_replicas: Annotated[int, typer.Option("--max-replicas")] = 1,
    replica_cpus: Annotated[float, typer.Option("--replica-cpus")] = 1.0,
    reload_interval_s: Annotated[
        float, typer.Option("--reload-interval", help="Seconds between alias checks.")
    ] = 5.0,
    plain_serve: Annotated[
        bool,
        typer.Option("--plain-serve", help="Do not set Serve's throughput-optimized flags."),
    ] = False,
    address: AddressOption = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="With --address: deploy and return.")
    ] = False,
    labels: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--labels", help="`report`: Parquet file or folder of labels by entity."),
    ] = None,
    label_column: Annotated[str, typer.Option("--label-column", help="`report`: 0/1 column.")] = (
        "label"
    ),
    threshold: Annotated[
        float, typer.Option("--threshold", help="`report`: a score at or above it is an alert.")
    ] = 0.5,
) -> None:
    """Serve a registered model over HTTP on Ray Serve (or show, stop or switch services)."""
    from raypipe.tracking.store import resolve_data_dir

    data_dir = resolve_data_dir(data_dir)
    rest = list(args or [])
    if target == "status":
        _status(data_dir, rest[0] if rest else None)
        return
    if target == "stop":
        _stop(data_dir, _one_name(rest, "stop NAME"))
        return
    if target == "report":
        if not labels:
            raise SpecError(
                ["`report` needs `--labels`"], hint="raypipe serve report fraud --labels l.parquet"
            )
        _report(data_dir, _one_name(rest, "report NAME"), labels, entity, label_column, threshold)
        return
    if target == "switch":
        if len(rest) != 2:
            raise SpecError(
                ["`switch` needs NAME and VARIANT"], hint="raypipe serve switch fraud candidate"
            )
        _switch(data_dir, rest[0], rest[1])
        return
    if rest:
        raise SpecError(
            [f"unexpected argument(s) {rest} after the model"],
            hint=f"the first argument is a model or one of {', '.join(COMMANDS)}",
        )
    from raypipe.serving.spec import PolicyKind, ServiceSpec, TrafficSpec

    variants = {"champion": target}
    traffic_spec = TrafficSpec()
    if candidate:
        variants["candidate"] = candidate
        traffic_spec = TrafficSpec(
            kind=cast(PolicyKind, traffic),  # ServiceSpec refuses a kind that is not one
            weights={"champion": 1 - split, "candidate": split} if traffic == "ab" else {},
            baseline="champion" if traffic in ("canary", "shadow") else "",
            candidate="candidate" if traffic in ("canary", "shadow") else "",
            steps=tuple(float(s) for s in _split(steps)),
            hold_s=hold_s,
            active="champion" if traffic == "bluegreen" else "",
        )
    store = online_store(data_dir, redis_url, sqlite_path) if views else None
    spec = ServiceSpec(
        name=name or _default_name(target),
        variants=variants,
        entity=entity,
        views=_split(views),
        full_feature_names=full_feature_names,
        store=store,
        data_dir=data_dir,
        tracking_uri=tracking_uri,
        host=host,
        port=port,
        token=token or os.environ.get(TOKEN_ENV) or None,
        max_batch_size=max_batch_size,
        batch_wait_s=ServiceSpec.batch_wait_s if batch_wait_ms is None else batch_wait_ms / 1000,
        max_ongoing_requests=max(128, max_batch_size),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        replica_cpus=replica_cpus,
        reload_interval_s=reload_interval_s,
        traffic=traffic_spec,
        throughput_optimized=not plain_serve,
    )
    if detach and not address:
        raise SpecError(
            ["`--detach` needs `--address`: a local Ray ends with this command"],
            hint="drop `--detach`, or deploy to a cluster with `--address auto`",
        )
    _run(spec, address, detach)


def _one_name(rest: list[str], usage: str) -> str:
    if len(rest) != 1:
        raise SpecError([f"expected `raypipe serve {usage}`"], hint="see `raypipe serve status`")
    return rest[0]


def _default_name(target: str) -> str:
    if target.startswith("models:/"):
        return target[len("models:/") :].split("@")[0].split("/")[0]
    return os.path.splitext(os.path.basename(target))[0] or "model"


def _run(spec: object, address: str | None, detach: bool) -> None:
    from raypipe.cli.signals import interrupt_on_sigint
    from raypipe.engine import serving
    from raypipe.serving.record import ServiceRecord
    from raypipe.serving.spec import ServiceSpec

    assert isinstance(spec, ServiceSpec)
    _refuse_a_running_namesake(spec.data_dir, spec.name)
    runtime = serving.serving_runtime(spec, address)
    runtime.start()
    # Recorded before it can answer, so that from a client's first request on `serve stop`
    # finds the process that owns it; recorded again, ready, once it is deployed.
    pid = 0 if detach else os.getpid()
    record = ServiceRecord(spec.name, spec.url, pid, address, dict(spec.variants), ready=False)
    try:
        record.write(spec.data_dir)
        serving.deploy(spec)
        record = replace(record, direct_urls=serving.direct_urls(spec), ready=True)
        record.write(spec.data_dir)
        console.print(
            f"[green]serving[/] `{spec.name}` at {spec.url}/predict "
            f"(health: {spec.url}/healthz, metrics: {spec.url}/metrics)"
        )
        if record.direct_urls:
            console.print(
                f"replicas' own endpoints (one hop less): {', '.join(record.direct_urls)}"
            )
        if detach:
            return
        console.print("Ctrl-C or `raypipe serve stop " + spec.name + "` stops it")
        interrupt_on_sigint()  # what `serve stop` sends, even to a background job
        while True:
            time.sleep(1)
    finally:
        if not detach:
            record.remove(spec.data_dir)
            try:
                serving.delete(spec.name)
            finally:
                runtime.stop()
        elif not record.ready:  # a detached service that never came up leaves no record
            record.remove(spec.data_dir)


def _refuse_a_running_namesake(data_dir: str, name: str) -> None:
    """Refuse to start service ``name`` while a recorded one of that name runs or answers.

    Starting would overwrite its record, and stopping the new one would delete its app.
    """
    from raypipe.serving.record import ServiceRecord, probe

    record = ServiceRecord.find(data_dir, name)
    if record is None:
        return
    owner = record.owner_alive
    if owner or probe(record.url) is not None:
        raise RaypipeError(
            f"service `{name}` is already running at {record.url}"
            + (f" (process {record.pid})" if owner else ""),
            hint=f"stop it with `raypipe serve stop {name}`, or give this one `--name`",
        )


def _status(data_dir: str, name: str | None) -> None:
    from raypipe.serving.record import ServiceRecord, list_records, probe

    records = [ServiceRecord.read(data_dir, name)] if name else list_records(data_dir)
    table = Table("service", "url", "state", "variants", "replica ports")
    for record in records:
        health = probe(record.url)
        state = "UP" if health else "STARTING" if record.starting else "DOWN"
        shown = health["variants"] if health else record.variants
        variants = ", ".join(
            f"{k}={v['version'] if isinstance(v, dict) else v}" for k, v in shown.items()
        )
        direct = ", ".join(record.direct_urls) if health else "-"
        table.add_row(record.name, record.url, state, variants, direct or "-")
    console.print(table)


def _stop(data_dir: str, name: str) -> None:
    from raypipe.serving.record import ServiceRecord

    record = ServiceRecord.read(data_dir, name)
    if record.owner_alive:
        # SIGINT, as Ctrl-C: the owner deletes the app and shuts Ray down (Ray logs a stack for
        # SIGTERM).
        os.kill(record.pid, signal.SIGINT)
        deadline = time.monotonic() + 120
        while record.owner_alive and time.monotonic() < deadline:
            time.sleep(0.5)
        if record.owner_alive:
            raise RaypipeError(
                f"service `{name}` (process {record.pid}) did not stop within 120 s",
                hint=f"look at that process; `kill -INT {record.pid}` interrupts it",
            )
    elif record.address:
        from raypipe.engine import serving
        from raypipe.engine.runtime import RayRuntime, RuntimeOptions

        with RayRuntime(RuntimeOptions(address=record.address)):
            serving.delete(name)
    record.remove(data_dir)
    console.print(f"[green]stopped[/] `{name}`")


def _switch(data_dir: str, name: str, variant: str) -> None:
    from raypipe.serving.record import ServiceRecord
    from raypipe.serving.traffic import ControlState, control_path

    record = ServiceRecord.read(data_dir, name)
    if variant not in record.variants:
        raise SpecError(
            [f"service `{name}` has no variant `{variant}`"],
            hint=f"variants: {', '.join(sorted(record.variants))}",
        )
    path = control_path(data_dir, name)
    state = ControlState.read(path)
    state.active = variant
    state.disabled.pop(variant, None)
    state.write(path)
    console.print(
        f"[green]switched[/] `{name}` to `{variant}` (replicas follow within their reload interval)"
    )


def _report(
    data_dir: str, name: str, labels: str, entity: str, label_column: str, threshold: float
) -> None:
    """Per-variant success and the always-valid p-value of each variant against the baseline.

    Every run is one look of the mSPRT (:mod:`raypipe.serving.sequential`): run it daily and
    stop at the first decision; the error rate holds however many looks are taken.
    """
    import datetime as dt

    import pyarrow.dataset as ds

    from raypipe.serving.record import ServiceRecord
    from raypipe.serving.sequential import SequentialTest, variant_outcomes

    record = ServiceRecord.read(data_dir, name)
    root = os.path.join(data_dir, "serving", name, "requests")
    if not os.path.isdir(root):
        raise RaypipeError(f"service `{name}` has logged no requests yet (no `{root}`)")
    log = ds.dataset(root, partitioning="hive").to_table(columns=["entity", "variant", "score"])
    outcomes = variant_outcomes(log, ds.dataset(labels).to_table(), entity, label_column, threshold)
    baseline = next(iter(record.variants))
    table = Table("variant", "labelled", "success rate", "log loss", "p (always valid)", "decided")
    today = dt.date.today().isoformat()
    for variant, result in outcomes.items():
        p_text, decided = "-", "-"
        if variant != baseline and baseline in outcomes:
            path = Path(data_dir) / "serving" / name / "tests" / f"{variant}.json"
            test = SequentialTest.load(path, baseline, variant)
            base = outcomes[baseline]
            test.look(
                today,
                int(base["labelled"]),
                int(base["successes"]),
                int(result["labelled"]),
                int(result["successes"]),
            )
            test.save(path)
            p_text, decided = f"{test.p_value:.4f}", "yes" if test.decided else "not yet"
        table.add_row(
            variant,
            str(int(result["labelled"])),
            f"{result['success_rate']:.4f}",
            f"{result['log_loss']:.4f}",
            p_text,
            decided,
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``raypipe`` command."""
    app.command("serve")(serve)
