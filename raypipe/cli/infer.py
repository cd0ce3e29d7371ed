"""``raypipe infer``: batch scoring of Parquet files with a model, on Ray."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console

from raypipe.cli.options import AddressOption, InlineOption, split_list

__all__ = ["infer", "register"]

console = Console()


def infer(
    model: Annotated[
        str,
        typer.Option(
            "--model", help="XGBoost .json/.ubj, scikit-learn .skops, or models:/name@alias."
        ),
    ],
    input_url: Annotated[str, typer.Option("--input", help="Dataset, folder, glob or file.")],
    output_url: Annotated[str, typer.Option("--output", help="Where the scores are committed.")],
    id_columns: Annotated[
        Optional[str],  # noqa: UP045 - typer needs Optional
        typer.Option("--id-columns", help="Columns copied to the output, comma separated."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Rows per batch.")] = 131_072,
    actors: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            "--actors",
            help="Scoring workers running at once (default: one per node, each using all its "
            "CPUs as XGBoost threads).",
        ),
    ] = None,
    partition_by: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--partition-by", help="Output partition columns, comma separated."),
    ] = None,
    target_file_mib: Annotated[
        int, typer.Option("--target-file-mib", help="Output file size to aim at.")
    ] = 128,
    address: AddressOption = None,
    inline: InlineOption = False,
    on_bad_file: Annotated[
        str, typer.Option("--on-bad-file", help="`fail` or `quarantine`.")
    ] = "fail",
    resume: Annotated[
        bool, typer.Option("--resume", help="Keep the units an interrupted run committed.")
    ] = False,
    shap: Annotated[bool, typer.Option("--shap", help="Add SHAP contributions.")] = False,
) -> None:
    """Score every row of INPUT with MODEL into OUTPUT, exactly once, on Ray."""
    from pydantic import ValidationError

    from raypipe.cli.options import open_backend
    from raypipe.errors import SpecError
    from raypipe.inference.model import read_model
    from raypipe.inference.pool import ScoringBackend, score_on_pool
    from raypipe.inference.stage import ScoreOptions
    from raypipe.stages.backend import require

    try:  # the stage's options model: the same validation, one translation into the spec
        options = ScoreOptions(
            id_columns=list(split_list(id_columns)),
            batch_size=batch_size,
            partition_by=list(split_list(partition_by)),
            target_file_mib=target_file_mib,
            on_bad_file=on_bad_file,  # type: ignore[arg-type]
            shap=shap,
        )
    except ValidationError as exc:
        raise SpecError(
            [f"`--{str(e['loc'][0]).replace('_', '-')}`: {e['msg']}" for e in exc.errors()],
            source="raypipe infer",
        ) from exc
    spec = options.to_spec(input_url, output_url, shap=shap)
    blob = read_model(model)  # a bad model fails here, before Ray starts
    with open_backend(address, inline=inline) as backend:
        # The pool's actors start now, and load their libraries while the input is planned.
        pool = require(backend, ScoringBackend, stage="infer").scoring_pool(actors)
        report = score_on_pool(blob, spec, pool, resume=resume)
    if report.already_done:
        console.print(
            f"[green]nothing to do[/]: `{output_url}` already holds this run "
            f"(version {report.version}, {report.rows_out} rows)"
        )
        return
    console.print(
        f"[green]scored[/] {report.rows_out:,} rows from {report.units} file(s) into "
        f"`{output_url}` (version {report.version}, {report.files_out} file(s); "
        f"{report.resumed_units} unit(s) resumed)",
        highlight=False,
    )
    for item in report.quarantined:
        console.print(f"[yellow]quarantined[/] `{item.file}`: {item.reason}", highlight=False)
    for line in report.advice:
        console.print(f"[dim]advice:[/] {line}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``infer`` to the ``raypipe`` command."""
    app.command("infer")(infer)
