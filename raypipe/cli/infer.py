"""``raypipe infer``: batch scoring of Parquet files with a model, on Ray."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console

__all__ = ["infer", "register"]

console = Console()


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


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
    address: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--address", help="Ray cluster (`auto`, `ray://host:10001`)."),
    ] = None,
    on_bad_file: Annotated[
        str, typer.Option("--on-bad-file", help="`fail` or `quarantine`.")
    ] = "fail",
    resume: Annotated[
        bool, typer.Option("--resume", help="Keep the units an interrupted run committed.")
    ] = False,
    shap: Annotated[bool, typer.Option("--shap", help="Add SHAP contributions.")] = False,
    tracking_uri: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--tracking-uri",
            help="Model registry of `models:/` URIs (default: ./raypipe-data/mlflow.db).",
        ),
    ] = None,
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
    """Score every row of INPUT with MODEL into OUTPUT, exactly once, on Ray."""
    from raypipe.engine.runtime import RayRuntime, RuntimeOptions
    from raypipe.engine.scoring import ActorPoolRunner, pool_shape
    from raypipe.inference.batch import run_batch_inference
    from raypipe.inference.model import read_model
    from raypipe.inference.planning import InferenceSpec
    from raypipe.inference.predictor import Predictor

    spec = InferenceSpec(
        input_url=input_url,
        output_url=output_url,
        id_columns=_split(id_columns),
        batch_rows=batch_size,
        partition_by=_split(partition_by),
        target_file_bytes=target_file_mib * 1024**2,
        on_bad_file=on_bad_file,  # type: ignore[arg-type]
        shap=shap,
    )
    from raypipe.cli.boundary import require_writable
    from raypipe.io.lease import ensure_writable_dataset

    require_writable(output_url, "--output")
    ensure_writable_dataset(output_url)  # before Ray starts: never mix into a user's folder
    # Without the flag, RAYPIPE_ALLOW_PICKLE=1 still opts in (None: the environment decides).
    blob = read_model(model, tracking_uri=tracking_uri, allow_pickle=allow_pickle or None)
    # Loaded once here too, so a file that is not a model fails before Ray starts.
    Predictor(blob)
    if not _has_rows(input_url, skip_unreadable=on_bad_file == "quarantine"):
        if not allow_empty:
            from raypipe.errors import DataError

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
    with RayRuntime(RuntimeOptions(address=address)) as runtime:
        shape = pool_shape(actors)
        with ActorPoolRunner(shape) as runner:
            report = run_batch_inference(
                blob,
                spec,
                runner,
                resume=resume,
                workers=shape.actors,
                threads_per_worker=shape.threads,
                cluster_cpus=runtime.cpus,
            )
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
    """Whether INPUT holds a row: its manifest's count, or file footers until one has rows.

    An unreadable file fails here, before Ray starts, unless it is to be quarantined.
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
