"""``raypipe models list|show|promote|rollback``: the governed model registry from the shell."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["register"]

console = Console()
group = typer.Typer(
    help="Registered models: list, show, promote and roll back (audited).", no_args_is_help=True
)

DataDir = Annotated[
    Optional[str],  # noqa: UP045 - typer needs Optional
    typer.Option(
        "--data-dir",
        help="Data directory of the embedded store and the audit log "
        "(default: $RAYPIPE_DATA_DIR or ./raypipe-data).",
    ),
]
TrackingUri = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--tracking-uri", help="MLflow store (default: sqlite:///<data-dir>/mlflow.db)."),
]
Reason = Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")]


def _registry(data_dir: str | None, tracking_uri: str | None):  # type: ignore[no-untyped-def]
    from raypipe.tracking.audit import AuditLog
    from raypipe.tracking.registry import Registry
    from raypipe.tracking.store import audit_path, resolve_tracking_uri

    return Registry(resolve_tracking_uri(tracking_uri, data_dir), AuditLog(audit_path(data_dir)))


@group.command("list")
def list_models(data_dir: DataDir = None, tracking_uri: TrackingUri = None) -> None:
    """Every registered model with its latest version and aliases."""
    table = Table("model", "latest", "aliases")
    for model in _registry(data_dir, tracking_uri).list_models():
        aliases = ", ".join(f"{a}={v}" for a, v in sorted(model["aliases"].items()))
        table.add_row(model["name"], str(model["latest"] or "-"), aliases or "-")
    console.print(table)


@group.command("show")
def show_model(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    data_dir: DataDir = None,
    tracking_uri: TrackingUri = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Versions, aliases and the audit history of NAME."""
    info = _registry(data_dir, tracking_uri).show_model(name)
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    console.print(
        f"[bold]{name}[/bold]  aliases: "
        + (", ".join(f"{a}={v}" for a, v in sorted(info["aliases"].items())) or "-")
    )
    versions = Table("version", "candidate", "metric", "data version", "sha256")
    for v in info["versions"]:
        tags = v["tags"]
        metric = next(
            (
                f"{k.split('.', 2)[-1]}={float(val):.4f}"
                for k, val in tags.items()
                if k.startswith("raypipe.metric.")
            ),
            "-",
        )
        versions.add_row(
            v["version"],
            tags.get("raypipe.candidate", "-"),
            metric,
            tags.get("raypipe.data_version", "-")[:12],
            tags.get("raypipe.sha256", "-")[:12],
        )
    console.print(versions)
    history = Table("when", "who", "action", "alias", "from", "to", "why")
    for h in info["history"]:
        history.add_row(
            h["at"],
            h["who"],
            h["action"],
            h["alias"],
            str(h["from_version"] or "-"),
            str(h["to_version"] or "-"),
            h["reason"],
        )
    console.print(history)


@group.command("promote")
def promote(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[
        Optional[str],  # noqa: UP045
        typer.Argument(help="Version to promote (default: the `challenger`)."),
    ] = None,
    reason: Reason = ...,  # type: ignore[assignment]
    alias: Annotated[str, typer.Option("--alias", help="Alias to move.")] = "champion",
    expect_current: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--expect-current",
            help="Only if ALIAS is at this version now (`-` for unset); else nothing changes.",
        ),
    ] = None,
    data_dir: DataDir = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Point ALIAS (`champion`) of NAME at VERSION, with a reason (audited, compare-and-set).

    A promote that races another change of ALIAS fails and changes nothing.
    """
    from raypipe.tracking.registry import ANY_PREVIOUS

    expected = (
        ANY_PREVIOUS
        if expect_current is None
        else (None if expect_current == "-" else expect_current)
    )
    entry = _registry(data_dir, tracking_uri).promote(
        name, version, reason=reason, alias=alias, expected_previous=expected
    )
    typer.echo(f"{name}@{alias}: {entry.from_version or '-'} -> {entry.to_version} ({entry.who})")


@group.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    reason: Reason = ...,  # type: ignore[assignment]
    to: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--to", help="Version to roll back to (default: the one before)."),
    ] = None,
    alias: Annotated[str, typer.Option("--alias", help="Alias to move.")] = "champion",
    data_dir: DataDir = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Point ALIAS (`champion`) of NAME back at the version it held before (audited).

    Fails, changing nothing, if ALIAS moves while the rollback runs.
    """
    entry = _registry(data_dir, tracking_uri).rollback(
        name, reason=reason, to_version=to, alias=alias
    )
    typer.echo(f"{name}@{alias}: {entry.from_version or '-'} -> {entry.to_version} ({entry.who})")


def register(app: typer.Typer) -> None:
    """Add the ``models`` command group to ``app``."""
    app.add_typer(group, name="models")
