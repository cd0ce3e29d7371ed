"""``raypipe monitor drift|report``: drift of two datasets, and the monitoring report page."""

from __future__ import annotations

import json
import posixpath
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from raypipe.cli.consoles import console
from raypipe.cli.options import AddressOption, InlineOption, open_backend

__all__ = ["register"]

group = typer.Typer(help="Drift, model monitoring and reports.", no_args_is_help=True)


def _split(value: str | None) -> tuple[str, ...] | None:
    parts = tuple(part.strip() for part in (value or "").split(",") if part.strip())
    return parts or None


@group.command("drift")
def drift(
    reference: Annotated[str, typer.Option("--reference", help="Committed reference dataset.")],
    current: Annotated[str, typer.Option("--current", help="Committed current dataset.")],
    json_path: Annotated[str, typer.Option("--json", help="Where the JSON result goes.")],
    html_path: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--html", help="Also write a self-contained HTML page."),
    ] = None,
    columns: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--columns", help="Columns to test, comma separated (default: all)."),
    ] = None,
    drift_share: Annotated[
        float, typer.Option("--drift-share", help="Dataset drifts at this share of columns.")
    ] = 0.5,
    method: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--method", help="One test for every column (default: Evidently's)."),
    ] = None,
    threshold: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--threshold", help="Threshold of --method (default: its own)."),
    ] = None,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help="Exit with code 3 when the dataset drifts.")
    ] = False,
    allow_empty: Annotated[
        bool,
        typer.Option("--allow-empty", help="Warn instead of failing when a dataset has no rows."),
    ] = False,
    reference_profile: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--reference-profile",
            help="A data.profile output of the reference: low-cardinality columns are tested "
            "from its counts without reading the reference.",
        ),
    ] = None,
    profile_table: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--profile-table", help="Table of --reference-profile to use."),
    ] = None,
    address: AddressOption = None,
    inline: InlineOption = False,
) -> None:
    """Test every column of CURRENT for drift against REFERENCE; write JSON (and HTML)."""
    from raypipe.io.sources import open_dataset
    from raypipe.monitoring.drift import METHODS
    from raypipe.monitoring.drift_run import run_drift

    if method is not None and method not in METHODS:
        from raypipe.errors import RaypipeError

        raise RaypipeError(
            f"unknown drift method `{method}`",
            hint=f"use one of {', '.join(METHODS)}",
        )
    from raypipe.cli.boundary import require_exists, require_writable

    require_exists(reference, "--reference")
    require_exists(current, "--current")
    require_writable(json_path, "--json")
    if html_path is not None:
        require_writable(html_path, "--html")
    ref_manifest = open_dataset(reference)  # committed datasets and plain Parquet alike
    cur_manifest = open_dataset(current)
    _check_not_empty(
        {"--reference": (reference, ref_manifest.rows), "--current": (current, cur_manifest.rows)},
        allow_empty=allow_empty,
    )
    names = _split(columns)
    stored = None
    if reference_profile is not None:
        from raypipe.io.dataset import read_dataset
        from raypipe.validation.profiling import read_profile_table

        profiles = read_profile_table(read_dataset(reference_profile))
        chosen = profile_table or (next(iter(profiles)) if len(profiles) == 1 else None)
        if chosen not in profiles:
            from raypipe.errors import RaypipeError

            raise RaypipeError(
                f"pick a table of `{reference_profile}` with `--profile-table`",
                hint=f"tables: {', '.join(sorted(profiles))}",
            )
        stored = profiles[chosen]
        if stored.version != ref_manifest.version:
            from raypipe.errors import DataError

            raise DataError(
                f"the profile of `{chosen}` describes version {stored.version[:12]}, but "
                f"`{reference}` is at version {ref_manifest.version[:12]}",
                hint="profile the reference again, or point --reference at the profiled version",
            )
    with open_backend(address, inline=inline) as executor:
        from raypipe.monitoring.drift import drift_columns

        tested = drift_columns(ref_manifest.schema, names)
        _check_comparable(tested, (reference, ref_manifest.schema), (current, cur_manifest.schema))
        report = run_drift(
            reference,
            ref_manifest,
            current,
            cur_manifest,
            executor,
            columns=tested,
            drift_share=drift_share,
            methods=dict.fromkeys(tested, method) if method else None,
            thresholds=dict.fromkeys(tested, threshold) if threshold is not None else None,
            reference_profile=stored,
        )
    document = report.to_dict()
    document["reference"] = {"url": reference, "version": ref_manifest.version}
    document["current"] = {"url": current, "version": cur_manifest.version}
    _write_text(json_path, json.dumps(document, indent=1))
    if html_path is not None:
        from raypipe.monitoring.report import MonitoringReport, render_html

        datasets = {
            "reference": f"{reference} (version {ref_manifest.version[:12]})",
            "current": f"{current} (version {cur_manifest.version[:12]})",
        }
        page = MonitoringReport(title="Drift", drift=report, datasets=datasets)
        _write_text(html_path, render_html(page))
    _print_drift(report)
    console.print(f"wrote `{json_path}`" + (f" and `{html_path}`" if html_path else ""))
    if fail_on_drift and report.dataset_drifted:
        raise typer.Exit(3)


@group.command("report")
def report(
    reference: Annotated[
        str, typer.Option("--reference", help="Labelled, scored rows (e.g. a training holdout).")
    ],
    current: Annotated[str, typer.Option("--current", help="Scored rows of the period.")],
    html_path: Annotated[
        str, typer.Option("--html", help="The page to write; its JSON goes beside it.")
    ],
    current_labels: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--current-labels", help="Labels of the period (keys + label)."),
    ] = None,
    reference_features: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--reference-features", help="Reference features (for feature drift)."),
    ] = None,
    current_features: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--current-features", help="Current features (for feature drift)."),
    ] = None,
    quality: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--quality", help="`results` of a data.check stage."),
    ] = None,
    label: Annotated[str, typer.Option("--label", help="Label column.")] = "churned",
    score: Annotated[str, typer.Option("--score", help="Score column.")] = "score",
    keys: Annotated[str, typer.Option("--keys", help="Key columns, comma separated.")] = (
        "player_id"
    ),
    groups: Annotated[
        str, typer.Option("--groups", help="Fairness groups, comma separated.")
    ] = "country,platform",
    llm_url: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--llm-url", help="OpenAI-compatible endpoint to summarise the causes."),
    ] = None,
    address: AddressOption = None,
    inline: InlineOption = False,
) -> None:
    """Write the monitoring report of CURRENT against REFERENCE as HTML + JSON."""
    from raypipe.io.sources import open_dataset
    from raypipe.monitoring.monitor_stage import MonitorReportOptions, build_report
    from raypipe.monitoring.report import render_html, report_json
    from raypipe.stages.base import DatasetInput

    urls = {
        "reference": reference,
        "current": current,
        "current_labels": current_labels,
        "reference_features": reference_features,
        "current_features": current_features,
        "quality": quality,
    }
    from raypipe.cli.boundary import require_exists, require_writable

    for name, url in urls.items():
        if url:
            require_exists(url, f"--{name.replace('_', '-')}")
    require_writable(html_path, "--html")
    inputs = {name: DatasetInput(url, open_dataset(url)) for name, url in urls.items() if url}
    options = MonitorReportOptions(
        label=label,
        score=score,
        keys=list(_split(keys) or ()),
        groups=list(_split(groups) or ()),
        llm_url=llm_url,
    )
    with open_backend(address, inline=inline) as executor:
        built, _ = build_report(inputs, options, executor)
    _write_text(html_path, render_html(built))
    json_path = posixpath.splitext(html_path)[0] + ".json"
    _write_text(json_path, json.dumps(report_json(built), indent=1))
    level = built.verdict.level
    status = {"ALERT": "[red]ALERT[/]", "WARN": "[yellow]WARN[/]"}.get(level, "[green]OK[/]")
    console.print(f"{status}: wrote `{html_path}` and `{json_path}`")
    for cause in built.causes[:5]:
        console.print(f"  - {cause.kind}: {cause.subject} ({cause.evidence})", highlight=False)


def _write_text(url: str, text: str) -> None:
    """Write a result file whole or not at all, on any filesystem raypipe reads."""
    from raypipe.io.fs import resolve_fs, write_bytes_atomic

    fs, path = resolve_fs(url)
    write_bytes_atomic(fs, path, text.encode("utf-8"))


def _check_not_empty(datasets: dict[str, tuple[str, int]], *, allow_empty: bool) -> None:
    """An empty dataset drifts from nothing: fail, or with ``--allow-empty`` say so and go on."""
    from raypipe.errors import DataError

    empty = [f"`{url}` (`{option}`)" for option, (url, rows) in datasets.items() if rows == 0]
    if not empty:
        return
    if not allow_empty:
        raise DataError(
            f"{' and '.join(empty)} has no rows; expected at least one row to compare",
            hint="check that the right version was committed, or pass `--allow-empty`",
        )
    console.print(
        f"[yellow]warning[/]: {' and '.join(empty)} has no rows; every column reads as not drifted",
        highlight=False,
    )


def _check_comparable(
    columns: list[str], reference: tuple[str, Any], current: tuple[str, Any]
) -> None:
    """Each tested column exists in both datasets, with the same kind (numeric, text, ...)."""
    from raypipe.errors import SchemaError
    from raypipe.validation.stats import column_kind

    (ref_url, ref_schema), (cur_url, cur_schema) = reference, current
    problems = []
    for name in columns:
        for url, schema in ((ref_url, ref_schema), (cur_url, cur_schema)):
            if name not in schema.names:
                problems.append(f"`{name}` is not a column of `{url}`")
        if name in ref_schema.names and name in cur_schema.names:
            ref_type, cur_type = ref_schema.field(name).type, cur_schema.field(name).type
            if column_kind(ref_type) != column_kind(cur_type):
                problems.append(
                    f"`{name}`: expected {column_kind(ref_type)} ({ref_type}) as in `{ref_url}`, "
                    f"received {column_kind(cur_type)} ({cur_type}) in `{cur_url}`"
                )
    if problems:
        raise SchemaError(
            "the datasets cannot be compared: " + "; ".join(problems),
            hint="pass `--columns` with the columns both datasets share with the same type, "
            "or fix the writer of the current dataset",
        )


def _print_drift(report: Any) -> None:
    table = Table(title="drift by column")
    for header in ("column", "method", "score", "threshold", "drifted"):
        table.add_column(header)
    for column in report.columns:
        score = "n/a" if column.score != column.score else f"{column.score:.4g}"
        table.add_row(
            column.column,
            column.method,
            score,
            f"{column.threshold:g}",
            "[red]yes[/]" if column.drifted else "no",
        )
    console.print(table)
    verdict = "[red]drifted[/]" if report.dataset_drifted else "[green]not drifted[/]"
    console.print(
        f"dataset {verdict}: {report.number_drifted}/{len(report.columns)} columns "
        f"({report.share_drifted:.0%}, threshold {report.drift_share:.0%})"
    )


def register(app: typer.Typer) -> None:
    """Add the ``monitor`` group to the ``raypipe`` command."""
    app.add_typer(group, name="monitor")
