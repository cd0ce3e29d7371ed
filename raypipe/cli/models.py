"""``raypipe models list|show|promote|rollback|approve|audit|history``: the governed registry.

``approve`` and ``history`` read the lifecycle policy (``--policy``: a job spec with a
``lifecycle:`` section, or a policy file); ``audit --verify`` checks the hash chain.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from raypipe.cli.consoles import console
from raypipe.cli.options import DataDirOption, TrackingUriOption

if TYPE_CHECKING:  # the CLI imports the tracking stack only when a command runs
    from raypipe.tracking.registry import Registry

__all__ = ["register"]

group = typer.Typer(
    help="Registered models: list, show, promote and roll back (audited).", no_args_is_help=True
)

Reason = Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")]


def _registry(data_dir: str | None, tracking_uri: str | None) -> Registry:
    from raypipe.tracking.audit import AuditLog
    from raypipe.tracking.registry import Registry
    from raypipe.tracking.store import audit_path, resolve_tracking_uri

    return Registry(resolve_tracking_uri(tracking_uri, data_dir), AuditLog(audit_path(data_dir)))


@group.command("list")
def list_models(data_dir: DataDirOption = None, tracking_uri: TrackingUriOption = None) -> None:
    """Every registered model with its latest version and aliases."""
    table = Table("model", "latest", "aliases")
    for model in _registry(data_dir, tracking_uri).list_models():
        aliases = ", ".join(f"{a}={v}" for a, v in sorted(model["aliases"].items()))
        table.add_row(model["name"], str(model["latest"] or "-"), aliases or "-")
    console.print(table)


@group.command("show")
def show_model(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    data_dir: DataDirOption = None,
    tracking_uri: TrackingUriOption = None,
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
    reason: Reason,
    version: Annotated[
        Optional[str],  # noqa: UP045
        typer.Argument(help="Version to promote (default: the `challenger`)."),
    ] = None,
    alias: Annotated[str, typer.Option("--alias", help="Alias to move.")] = "champion",
    expect_current: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--expect-current",
            help="Only if ALIAS is at this version now (`-` for unset); else nothing changes.",
        ),
    ] = None,
    data_dir: DataDirOption = None,
    tracking_uri: TrackingUriOption = None,
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
    reason: Reason,
    to: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--to", help="Version to roll back to (default: the one before)."),
    ] = None,
    alias: Annotated[str, typer.Option("--alias", help="Alias to move.")] = "champion",
    data_dir: DataDirOption = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Point ALIAS (`champion`) of NAME back at the version it held before (audited).

    Fails, changing nothing, if ALIAS moves while the rollback runs.
    """
    entry = _registry(data_dir, tracking_uri).rollback(
        name, reason=reason, to_version=to, alias=alias
    )
    typer.echo(f"{name}@{alias}: {entry.from_version or '-'} -> {entry.to_version} ({entry.who})")


PolicyPath = Annotated[
    str,
    typer.Option("--policy", help="Job spec with a `lifecycle:` section, or a policy file."),
]


@group.command("approve")
def approve(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Version whose move is approved.")],
    to: Annotated[str, typer.Option("--to", help="Stage it moves to (e.g. `production`).")],
    policy: PolicyPath,
    reason: Reason,
    data_dir: DataDirOption = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Approve VERSION of NAME moving to a stage; completes a waiting move once enough approve.

    The approver is who the policy's `identity` sources say; they must hold one of the rule's
    approver roles.
    """
    from raypipe.errors import SpecError
    from raypipe.tracking.approvals import resolve_identity
    from raypipe.tracking.lifecycle import Lifecycle
    from raypipe.tracking.policy import load_policy

    rules = load_policy(policy)
    if rules.model != name:
        raise SpecError(
            [f"the policy `{policy}` governs model `{rules.model}`, not `{name}`"],
            hint=f"pass the policy of `{name}`",
        )
    who = resolve_identity(rules.identity)
    outcome = Lifecycle(_registry(data_dir, tracking_uri), rules).approve(
        version, to, who=who, reason=reason
    )
    typer.echo(f"approved by {who}; {outcome.describe()}")


@group.command("audit")
def audit(
    name: Annotated[
        Optional[str],  # noqa: UP045
        typer.Argument(help="Registered model name (default: every model)."),
    ] = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Check the hash chain; exit 6 on any problem.")
    ] = False,
    witness: Annotated[
        bool,
        typer.Option(
            "--witness/--no-witness",
            help="Also compare with the copies kept as registry tags (needs the MLflow store).",
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data_dir: DataDirOption = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Print the audit trail (of NAME), or with --verify report every edited or deleted entry."""
    from raypipe.errors import ModelError
    from raypipe.tracking.audit import AuditLog
    from raypipe.tracking.store import audit_path
    from raypipe.tracking.verify import verify_audit

    log = AuditLog(audit_path(data_dir))
    if not verify:
        entries = log.read(name)
        if as_json:
            typer.echo(json.dumps([e.__dict__ for e in entries], indent=2, default=str))
            return
        table = Table("when", "who", "model", "stream", "#", "action", "from", "to", "why")
        for e in entries:
            table.add_row(
                e.at, e.who, e.model, e.alias, str(e.sequence), e.action,
                str(e.from_version or "-"), str(e.to_version or "-"), e.reason,
            )  # fmt: skip
        console.print(table)
        return
    witnesses = None
    if witness:
        registry = _registry(data_dir, tracking_uri)
        names = [name] if name else [m["name"] for m in registry.list_models()]
        witnesses = {n: registry.audit_witnesses(n) for n in names}
    report = verify_audit(log, name, witnesses=witnesses)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for problem in report.problems:
            typer.echo(problem.describe())
        typer.echo(
            f"{report.entries} entries checked, {report.unchained} written before chaining, "
            f"{len(report.problems)} problems"
        )
    if not report.ok:
        raise ModelError(
            f"the audit trail under `{log.root}` has {len(report.problems)} problems "
            "(edited, deleted or misplaced entries)",
            hint="restore the listed files from a backup; the registry tags hold copies",
        )


@group.command("history")
def history(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    serving_logs: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--serving-logs",
            help="Request logs (partitioned Parquet; default <data-dir>/serving/NAME/requests, "
            "where `raypipe serve` logs a service named after the model).",
        ),
    ] = None,
    alias: Annotated[str, typer.Option("--alias", help="The production alias.")] = "champion",
    use_registry: Annotated[
        bool,
        typer.Option("--registry/--no-registry", help="Add each version's registry tags."),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data_dir: DataDirOption = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Which version of NAME served which traffic, when, and why it changed."""
    from raypipe.tracking.audit import AuditLog
    from raypipe.tracking.history import ParquetServingLogs, model_history
    from raypipe.tracking.store import audit_path, serving_log_path

    logs = ParquetServingLogs(serving_logs or serving_log_path(data_dir, name))
    tags = None
    if use_registry:
        registry = _registry(data_dir, tracking_uri)
        tags = lambda version: registry.version_tags(name, version)  # noqa: E731
    story = model_history(
        AuditLog(audit_path(data_dir)),
        name,
        production_alias=alias,
        serving=logs,
        version_tags=tags,
    )
    if as_json:
        typer.echo(json.dumps(story.to_dict(), indent=2, default=str))
        return
    served = Table(
        "version", "since", "until", "requests", "promoted by", "why", "replaced because"
    )
    for i in story.intervals:
        served.add_row(
            i.version, i.since, i.until or "now",
            str(i.traffic.requests) if i.traffic else "-",
            i.promoted_by, i.why_promoted, i.why_replaced or "-",
        )  # fmt: skip
    console.print(served)
    events = Table("when", "who", "stream", "action", "version", "why")
    for e in story.events:
        events.add_row(e.at, e.who, e.alias, e.action, str(e.to_version or "-"), e.reason)
    console.print(events)


def register(app: typer.Typer) -> None:
    """Add the ``models`` command group to ``app``."""
    app.add_typer(group, name="models")
