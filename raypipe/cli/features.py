"""``raypipe features``: check feature views, discover and select features, suggest features."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from raypipe.cli.consoles import console
from raypipe.cli.options import AddressOption, InlineOption, open_backend

__all__ = ["register"]

group = typer.Typer(
    help="Feature views, discovery and selection, suggestions; the online feature store.",
    no_args_is_help=True,
)


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


@group.command("check")
def check(
    views_file: Annotated[Path, typer.Argument(help="Feature views YAML.")],
    events: Annotated[
        Optional[str],  # noqa: UP045 - typer needs Optional
        typer.Option("--events", help="Dataset whose schema the views are checked against."),
    ] = None,
) -> None:
    """Parse VIEWS_FILE and, with --events, type-check every expression against the data."""
    from raypipe.features.asof import check_views
    from raypipe.features.spec import load_views

    views = load_views(views_file)
    if events:
        from raypipe.io.dataset import scan_dataset

        check_views(views, scan_dataset(events).collect_schema())
    count = sum(len(view.features) for view in views)
    console.print(
        f"[green]ok[/]: {len(views)} view(s), {count} feature(s)"
        + (f", checked against `{events}`" if events else ""),
        highlight=False,
    )


@group.command("discover")
def discover(
    events: Annotated[str, typer.Option("--events", help="Events dataset URL.")],
    labels: Annotated[str, typer.Option("--labels", help="Labels: keys, cutoff, label.")],
    out: Annotated[str, typer.Option("--out", help="Folder for `candidates` and `report`.")],
    players: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--players", help="Entity attributes dataset (optional)."),
    ] = None,
    label: Annotated[str, typer.Option("--label", help="Label column.")] = "churned",
    keys: Annotated[str, typer.Option("--keys", help="Entity key column(s).")] = "player_id",
    windows: Annotated[
        str, typer.Option("--windows", help="Windows, comma separated.")
    ] = "1d,7d,30d",
    k: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--k", help="Features to select (default: half the survivors, <= 30)."),
    ] = None,
    inline: InlineOption = False,
    address: AddressOption = None,
) -> None:
    """Generate candidate features as of each label's cutoff, select them, write a report."""
    from raypipe.cli.boundary import require_exists, require_writable
    from raypipe.features.discover import DiscoveryOptions, run_discovery
    from raypipe.io.fs import join_url
    from raypipe.io.lease import hold_dataset_leases

    require_exists(events, "--events")
    require_exists(labels, "--labels")
    if players is not None:
        require_exists(players, "--players")
    require_writable(out, "--out")
    options = DiscoveryOptions(keys=_split(keys), label=label, windows=_split(windows), k=k)
    candidates_url, report_url = join_url(out, "candidates"), join_url(out, "report")
    # Refuses a user's folder before any work; one writer per output until the commits.
    with (
        hold_dataset_leases([candidates_url, report_url]),
        open_backend(address, inline=inline) as executor,
    ):
        result = run_discovery(
            events,
            labels,
            candidates_url,
            report_url,
            executor,
            players_url=players,
            options=options,
        )
    table = Table(title=f"selected {len(result.selected)} of {result.candidate_count}")
    table.add_column("rank")
    table.add_column("feature")
    for rank, name in enumerate(result.selected, start=1):
        table.add_row(str(rank), name)
    console.print(table)
    if result.leaky:
        console.print(f"[yellow]likely leakage[/]: {', '.join(result.leaky)}", highlight=False)
    for entry in result.report.files:
        # Committed files sit in an attempt-named folder: print where each really is.
        console.print(
            f"{entry.path.rsplit('/', 1)[-1]}: {join_url(report_url, entry.path)}",
            highlight=False,
            soft_wrap=True,
        )


@group.command("suggest")
def suggest(
    events: Annotated[str, typer.Option("--events", help="Dataset to propose features for.")],
    context: Annotated[str, typer.Option("--context", help="What is predicted, for whom.")] = "",
    entity: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--entity", help="Entity key column (default: detected)."),
    ] = None,
    timestamp: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--timestamp", help="Event-time column (default: detected)."),
    ] = None,
    llm_url: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--llm-url",
            help="OpenAI-compatible base URL (optional, sends the schema and context there).",
        ),
    ] = None,
    model: Annotated[
        str, typer.Option("--model", help="Model name for --llm-url.")
    ] = "gpt-4o-mini",
    api_key_env: Annotated[
        str, typer.Option("--api-key-env", help="Env var with the API key.")
    ] = "OPENAI_API_KEY",
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--output", help="Write the YAML here instead of printing it."),
    ] = None,
) -> None:
    """Propose feature views (YAML you can paste) from a dataset's schema and a context."""
    from raypipe.features.candidates import top_values
    from raypipe.features.spec import views_to_yaml
    from raypipe.features.suggest import suggest_views, suggest_views_llm
    from raypipe.io.dataset import scan_dataset

    frame = scan_dataset(events)
    schema = frame.collect_schema()
    values = {}
    for column in ("event_type", "type", "event", "action", "category"):
        if column in schema:
            values[column] = top_values(frame.select(column), column, 8)
            break
    if llm_url:
        views = suggest_views_llm(
            schema, context, url=llm_url, model=model, api_key=os.environ.get(api_key_env)
        )
    else:
        views = suggest_views(
            schema, context, category_values=values, entity=entity, timestamp=timestamp
        )
    text = views_to_yaml(views)
    if output:
        output.write_text(text)
        console.print(f"[green]wrote[/] {len(views)} view(s) to `{output}`", highlight=False)
    else:
        typer.echo(text)


def register(app: typer.Typer) -> None:
    """Add the ``features`` command group to the ``raypipe`` command."""
    from raypipe.cli.feature_store import add_commands

    add_commands(group)
    app.add_typer(group, name="features")
