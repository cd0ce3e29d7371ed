"""``raypipe features list|show|diff|materialize|get|stream``: the feature store from the shell."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from raypipe.cli.consoles import console
from raypipe.cli.options import (
    AddressOption,
    DataDirOption,
    InlineOption,
    RedisUrlOption,
    SqlitePathOption,
    online_store,
    open_backend,
)

__all__ = ["add_commands"]


def _lag(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def _list_served(data_dir: DataDirOption = None) -> None:
    """List the served feature views: current version, keys, columns, owner, freshness."""
    from raypipe.features.store.freshness import freshness_of
    from raypipe.features.store.materialize import read_state
    from raypipe.features.store.registry import list_views
    from raypipe.tracking.store import resolve_data_dir

    root = resolve_data_dir(data_dir)
    table = Table(title=f"feature views in `{root}`")
    for column in ("name", "version", "entities", "columns", "owner", "event lag", "SLA"):
        table.add_column(column)
    for view in list_views(root):
        fresh = freshness_of(view, read_state(root, view))
        sla = "-" if view.freshness_sla_s is None else _lag(view.freshness_sla_s)
        lag = _lag(fresh.event_lag_s) + (" [red]breach[/]" if fresh.breached else "")
        table.add_row(
            view.name,
            view.version[:12],
            ",".join(view.entities),
            str(len(view.columns)),
            view.owner or "-",
            lag,
            sla,
        )
    console.print(table)


def _show(
    name: Annotated[str, typer.Argument(help="Feature view name.")],
    version: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--version", help="A version (prefix); default: the current one."),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Print a feature view's record, its version history and its freshness."""
    from raypipe.features.store.freshness import freshness_of
    from raypipe.features.store.materialize import read_state
    from raypipe.features.store.registry import load_view, view_history
    from raypipe.tracking.store import resolve_data_dir

    root = resolve_data_dir(data_dir)
    view = load_view(root, name, version)
    document = json.loads(view.to_json())
    document["history"] = view_history(root, name)
    document["freshness"] = freshness_of(view, read_state(root, view)).metrics()
    typer.echo(json.dumps(document, indent=1))


def _diff(
    name: Annotated[str, typer.Argument(help="Feature view name.")],
    old: Annotated[
        Optional[str],  # noqa: UP045
        typer.Argument(help="Old version (prefix); default: the one before the current."),
    ] = None,
    new: Annotated[
        Optional[str],  # noqa: UP045
        typer.Argument(help="New version (prefix); default: the current one."),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Show what changed between two versions of a feature view."""
    from raypipe.errors import DataError
    from raypipe.features.store.registry import diff_views, load_view, view_history
    from raypipe.tracking.store import resolve_data_dir

    root = resolve_data_dir(data_dir)
    history = [h["version"] for h in view_history(root, name)]
    if old is None:
        if len(history) < 2:
            raise DataError(
                f"feature view `{name}` has one version only",
                hint="name two versions from `raypipe features show NAME`",
            )
        old = history[-2]
    lines = diff_views(load_view(root, name, old), load_view(root, name, new))
    typer.echo("\n".join(lines) if lines else "no difference")


def _materialize_cmd(
    name: Annotated[str, typer.Argument(help="Feature view name (registered by a job).")],
    data_dir: DataDirOption = None,
    redis_url: RedisUrlOption = None,
    sqlite_path: SqlitePathOption = None,
    end: Annotated[
        Optional[dt.datetime],  # noqa: UP045
        typer.Option("--end", help="Materialize up to this event time (default: newest)."),
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="Rescan from the start.")] = False,
    webhook_url: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--webhook-url", help="POST an alert here when the SLA is breached."),
    ] = None,
    inline: InlineOption = False,
    address: AddressOption = None,
) -> None:
    """Write a view's newest rows since its watermark to the online store.

    On an SLA breach: alert, launch the view's recompute job (if configured; once per
    cool-down) and exit 7.
    """
    from raypipe.features.store.freshness import FreshnessBreachError, alert, freshness_of
    from raypipe.features.store.materialize import materialize, read_state
    from raypipe.features.store.recompute import trigger_recompute
    from raypipe.features.store.registry import current_view
    from raypipe.tracking.store import resolve_data_dir

    root = resolve_data_dir(data_dir)
    view = current_view(root, name)
    store = online_store(root, redis_url, sqlite_path)
    with open_backend(address, inline=inline) as executor:
        result = materialize(root, view, view.source, store, executor, end=end, full=full)
    console.print(
        f"[green]materialized[/] `{name}` ({view.version[:12]}): "
        f"{result.latest_rows} latest row(s), {result.written} written, "
        f"{result.chunks} chunk(s) in {result.seconds:.2f}s",
        highlight=False,
    )
    fresh = freshness_of(view, read_state(root, view))
    if fresh.breached:
        alert(fresh, webhook_url=webhook_url)
        if view.recompute:
            launch = trigger_recompute(root, view)
            console.print(
                f"[yellow]recompute[/]: {launch.reason}"
                + (f" (pid {launch.pid}, log {launch.log_path})" if launch.pid else ""),
                highlight=False,
            )
        raise FreshnessBreachError(
            fresh.message(), hint="rerun the job that produces the source, or raise the SLA"
        )


def _get(
    name: Annotated[str, typer.Argument(help="Feature view name.")],
    entity: Annotated[list[str], typer.Option("--entity", help="Entity key (repeatable).")],
    data_dir: DataDirOption = None,
    redis_url: RedisUrlOption = None,
    sqlite_path: SqlitePathOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the online feature vector of each entity, with its status and age."""
    from raypipe.features.store.online import open_store
    from raypipe.features.store.registry import current_view
    from raypipe.tracking.store import resolve_data_dir

    root = resolve_data_dir(data_dir)
    view = current_view(root, name)
    max_age = None if view.max_age_s is None else dt.timedelta(seconds=view.max_age_s)
    store = open_store(online_store(root, redis_url, sqlite_path))
    try:
        values = store.read(view.namespace, entity, max_age=max_age)
    finally:
        store.close()
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "entity": v.entity,
                        "status": v.status.value,
                        "age_s": v.age_s,
                        "event_ts": v.event_ts.isoformat() if v.event_ts else None,
                        "values": v.values,
                    }
                    for v in values
                ],
                indent=1,
                default=str,
            )
        )
        return
    for value in values:
        colour = {"PRESENT": "green", "NOT_FOUND": "red"}.get(value.status.value, "yellow")
        table = Table(
            title=f"{name} [{','.join(view.entities)}={value.entity}] "
            f"[{colour}]{value.status.value}[/] age {_lag(value.age_s)}"
        )
        table.add_column("feature")
        table.add_column("value", justify="right")
        table.add_column("status")
        for column in view.columns:
            item = None if value.values is None else value.values.get(column)
            status = value.status.value if item is not None or value.values is None else "NULL"
            table.add_row(column, "-" if item is None else f"{item}", status)
        console.print(table)


def _stream(
    folder: Annotated[str, typer.Argument(help="Folder where Parquet event files land.")],
    out: Annotated[str, typer.Option("--out", help="Folder for windows, late events, state.")],
    kind: Annotated[str, typer.Option("--kind", help="tumbling, sliding or session.")],
    key: Annotated[str, typer.Option("--key", help="Entity key column (integer).")],
    value: Annotated[str, typer.Option("--value", help="Numeric column aggregated.")],
    timestamp: Annotated[str, typer.Option("--timestamp", help="Event-time column.")] = "ts",
    size: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--size", help="Window size (tumbling, sliding), e.g. 1h."),
    ] = None,
    slide: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--slide", help="Slide (sliding), e.g. 10m."),
    ] = None,
    gap: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--gap", help="Session gap, e.g. 30m."),
    ] = None,
    lateness: Annotated[str, typer.Option("--lateness", help="Allowed lateness.")] = "0s",
    partitions: Annotated[int, typer.Option("--partitions", help="Stream partitions.")] = 2,
    namespace: Annotated[
        str, typer.Option("--namespace", help="Online store key prefix for the windows.")
    ] = "stream",
    finish: Annotated[
        bool, typer.Option("--finish", help="Close every open window at the end.")
    ] = False,
    follow: Annotated[
        bool,
        typer.Option("--follow", help="Keep polling FOLDER for new files until Ctrl-C (exit 130)."),
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between polls with --follow.", min=0.01)
    ] = 1.0,
    data_dir: DataDirOption = None,
    redis_url: RedisUrlOption = None,
    sqlite_path: SqlitePathOption = None,
    inline: InlineOption = False,
    address: AddressOption = None,
) -> None:
    """Process the event files in FOLDER not processed yet; windows go to OUT and online."""
    from raypipe.features.streaming.operator import (
        InlineStreamBackend,
        StreamConfig,
        StreamRunner,
    )
    from raypipe.features.streaming.windows import WINDOW_KINDS, WindowSpec
    from raypipe.tracking.store import resolve_data_dir

    window_kind = next((known for known in WINDOW_KINDS if known == kind), None)
    if window_kind is None:
        from raypipe.errors import SpecError

        raise SpecError(
            [f"`--kind {kind}` is not a window kind"], hint="use `tumbling`, `sliding` or `session`"
        )
    spec = WindowSpec.parse(
        window_kind,
        key=key,
        timestamp=timestamp,
        value=value,
        size=size,
        slide=slide,
        gap=gap,
        allowed_lateness=lateness,
    )
    store = online_store(resolve_data_dir(data_dir), redis_url, sqlite_path)
    config = StreamConfig(spec, out, partitions=partitions, store=store, namespace=namespace)

    if follow and finish:
        from raypipe.errors import SpecError

        raise SpecError(
            ["`--finish` closes every window, which a followed stream never wants"],
            hint="use `--follow` or `--finish`, not both",
        )

    def report(runner: StreamRunner, files: int) -> None:
        console.print(
            f"[green]stream[/]: {files} new file(s), {runner.events} event(s), "
            f"{runner.closed} window(s) closed, {runner.late} late, "
            f"{runner.open_windows} open",
            highlight=False,
        )

    def run(backend: Any) -> StreamRunner:
        runner = StreamRunner(config, backend)
        files = runner.run_folder(folder)
        if finish:
            runner.finish()
        report(runner, files)
        if follow:
            # Every batch is checkpointed after its sinks, so stopping between (or even inside)
            # batches loses nothing: the next run resumes from the checkpoint.
            try:
                while True:
                    time.sleep(interval)
                    new = runner.run_folder(folder)
                    files += new
                    if new:
                        report(runner, new)
            except KeyboardInterrupt:
                console.print(
                    f"[yellow]stopped[/] at stream position {runner.position}", highlight=False
                )
                raise  # the CLI boundary exits 130 (and the Ray runtime shuts down on the way)
        return runner

    if inline:
        run(InlineStreamBackend(config))
        return
    from raypipe.engine.runtime import RayRuntime, RuntimeOptions
    from raypipe.engine.streaming import RayStreamBackend

    with RayRuntime(RuntimeOptions(address=address)):
        backend = RayStreamBackend(config)
        try:
            run(backend)
        finally:
            backend.close()


def add_commands(group: typer.Typer) -> None:
    """Add the feature store commands to the ``raypipe features`` group (once: the group is a
    module-level object that outlives a reload of the CLI's main module)."""
    present = {command.name for command in group.registered_commands}
    commands: dict[str, Callable[..., None]] = {
        "list": _list_served,
        "show": _show,
        "diff": _diff,
        "materialize": _materialize_cmd,
        "get": _get,
        "stream": _stream,
    }
    for name, command in commands.items():
        if name not in present:
            group.command(name)(command)
