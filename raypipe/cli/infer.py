"""``raypipe infer``: batch scoring of Parquet files with a model, on Ray or in this process.

Where it scores (the backend's choice, as for a job's ``inference.score`` stage): on a cluster
with ``--address`` (or ``RAY_ADDRESS``); on a local Ray pool of ``--actors N``; otherwise in this
process, and Ray never starts. On one machine Ray's default pool is one actor per
node with every CPU as a model thread, which is what this process does with all its CPUs --
the same work, without the seconds Ray and its actor take to start (about 10 s on 2 CPUs,
``benchmarks/batch_inference.py``). ``--actors N`` splits a machine into N workers, for models
whose own threads do not use it all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional, cast

import typer

from raypipe import collector
from raypipe.cli.consoles import console
from raypipe.cli.options import AddressOption, InlineOption, TrackingUriOption, split_list

if TYPE_CHECKING:
    from raypipe.inference.planning import OnBadFile

__all__ = ["infer", "register"]


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
            help="Score on a Ray pool of N workers (default: this process on one machine; "
            "with `--address`, one worker per node, each using all its CPUs as model threads).",
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
    tracking_uri: TrackingUriOption = None,
    allow_empty: Annotated[
        bool,
        typer.Option("--allow-empty", help="Commit an empty output when INPUT has no rows."),
    ] = False,
    allow_pickle: Annotated[
        bool,
        typer.Option(
            "--allow-pickle",
            help="Load a legacy pickle version of a `models:/` model (it runs code when "
            "loaded; only the registry's own checksummed versions, never a file).",
        ),
    ] = False,
) -> None:
    """Score every row of INPUT with MODEL into OUTPUT, exactly once, here or on Ray."""
    from pydantic import ValidationError

    from raypipe.cli.boundary import require_writable
    from raypipe.cli.options import open_backend
    from raypipe.errors import DataError, RunInterruptedError, SpecError
    from raypipe.inference.model import read_model
    from raypipe.inference.pool import InlineScoringPool, ScoringBackend, score_on_pool
    from raypipe.inference.predictor import Predictor
    from raypipe.inference.stage import ScoreOptions
    from raypipe.io.lease import ensure_writable_dataset
    from raypipe.stages.backend import require

    try:  # the stage's options model: the same validation, one translation into the spec
        options = ScoreOptions(
            id_columns=list(split_list(id_columns)),
            batch_size=batch_size,
            partition_by=list(split_list(partition_by)),
            target_file_mib=target_file_mib,
            on_bad_file=cast("OnBadFile", on_bad_file),  # pydantic refuses other values
            shap=shap,
        )
    except ValidationError as exc:
        raise SpecError(
            [f"`--{str(e['loc'][0]).replace('_', '-')}`: {e['msg']}" for e in exc.errors()],
            source="raypipe infer",
        ) from exc
    spec = options.to_spec(input_url, output_url, shap=shap)
    require_writable(output_url, "--output")
    ensure_writable_dataset(output_url)  # before Ray starts: never mix into a user's folder
    # Without the flag, RAYPIPE_ALLOW_PICKLE=1 still opts in (None: the environment decides).
    blob = read_model(model, tracking_uri=tracking_uri, allow_pickle=allow_pickle or None)
    # Loaded once here too, so a file that is not a model fails before Ray starts.
    with collector.paused():  # start-up: what it makes lives as long as the command
        Predictor(blob)
    # start-up's objects out of the collector's scans while the command runs
    with collector.frozen():
        if not _has_rows(input_url, skip_unreadable=on_bad_file == "quarantine"):
            if not allow_empty:
                raise DataError(
                    f"`{input_url}` (`--input`) has no rows; expected at least one row to score",
                    hint="check that the input was written, or pass `--allow-empty` to commit an "
                    "empty output",
                )
            console.print(
                f"[yellow]warning[/]: `{input_url}` (`--input`) has no rows; committing an empty "
                "output",
                highlight=False,
            )
        with open_backend(address, inline=inline) as backend:
            # Where it scores is the backend's choice (RayBackend.scoring_pool); a pool's actors
            # start now, and load their libraries while the input is planned.
            pool = require(backend, ScoringBackend, stage="infer").scoring_pool(actors)
            if isinstance(pool, InlineScoringPool) and not inline:
                console.print(
                    "[dim]scoring in this process on all its CPUs, as Ray's default pool would "
                    "on one machine (pass `--address` for a cluster, `--actors N` for a local "
                    "pool)[/]",
                    highlight=False,
                )
            try:
                report = score_on_pool(blob, spec, pool, resume=resume)
            except KeyboardInterrupt:  # Typer would end the command with 130 and no word
                raise RunInterruptedError(
                    f"Scoring was interrupted: nothing was committed to `{output_url}`",
                    hint="the files already scored are kept: rerun with `--resume` to score only "
                    "the rest",
                ) from None
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


def _has_rows(input_url: str, *, skip_unreadable: bool) -> bool:
    """Whether INPUT has a row: its manifest's count, or its files' footers read until one has.

    An unreadable file read here fails before any scoring, unless it is to be quarantined.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raypipe.errors import DataError, DatasetNotCommittedError
    from raypipe.inference.planning import list_input_files
    from raypipe.io.fs import resolve_fs
    from raypipe.io.manifest import read_manifest

    try:
        return read_manifest(input_url).rows > 0
    except DatasetNotCommittedError:
        pass  # plain Parquet: read the footers
    for file in list_input_files(input_url):
        fs, path = resolve_fs(file.url)
        try:
            with fs.open(path, "rb") as handle:
                rows = pq.read_metadata(handle).num_rows
        except (pa.ArrowInvalid, OSError) as exc:
            if skip_unreadable:
                continue
            raise DataError(
                f"`{file.url}` in `{input_url}` (`--input`) is not readable Parquet: {exc}",
                hint="the file is truncated or not Parquet; write it again or move it out of "
                "the input, or pass `--on-bad-file quarantine` to score the others",
            ) from exc
        if rows:
            return True
    return False


def register(app: typer.Typer) -> None:
    """Add ``infer`` to the ``raypipe`` command."""
    app.command("infer")(infer)
