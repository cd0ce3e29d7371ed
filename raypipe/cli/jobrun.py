"""``raypipe run`` and ``raypipe demo``: run a job on local Ray or a cluster."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Optional

import typer

from raypipe.driver import JobFailedError, RunOptions, RunRecord, run_job
from raypipe.errors import SpecError
from raypipe.spec import Job, load_job

__all__ = ["register", "run_spec"]

DEMO_SPEC = Path("jobs") / "churn.yaml"


def run_spec(
    job: Job,
    *,
    address: str | None,
    resume: bool,
    force: list[str],
    dashboard: bool = False,
    num_cpus: int | None = None,
) -> RunRecord:
    """Run ``job`` on a Ray runtime started (or joined) for it, showing progress."""
    from raypipe.cli.main import console
    from raypipe.cli.observers import RichObserver, make_observer
    from raypipe.cli.render import run_table
    from raypipe.engine.runtime import RayRuntime, RuntimeOptions
    from raypipe.engine.tasks import RayExecutor

    unknown = sorted(set(force) - {stage.name for stage in job.stages})
    if unknown:
        raise SpecError([f"--force `{name}`: no such stage" for name in unknown], source=job.source)
    observer = make_observer(console)
    runtime_options = RuntimeOptions(
        address=address, num_cpus=num_cpus, include_dashboard=dashboard
    )
    showing = observer if isinstance(observer, RichObserver) else nullcontext()
    with RayRuntime(runtime_options) as runtime, showing:
        try:
            record = run_job(
                job,
                make_executor=lambda on_progress: RayExecutor(runtime, on_progress),
                driver_node_id=runtime.driver_node_id,
                options=RunOptions(resume=resume, force=frozenset(force)),
                observer=observer,
            )
        except JobFailedError as exc:
            console.print(run_table(exc.record))
            raise
    console.print(run_table(record))
    return record


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        spec: Annotated[Path, typer.Argument(help="The job's YAML file.")],
        set_: Annotated[
            Optional[list[str]],  # noqa: UP045
            typer.Option("--set", help="Override a spec value: `stages.events.with.players=5000`."),
        ] = None,
        resume: Annotated[
            bool, typer.Option(help="Continue the newest unfinished run of this job.")
        ] = False,
        force: Annotated[
            Optional[list[str]],  # noqa: UP045
            typer.Option(help="Rerun this stage even if cached (repeatable)."),
        ] = None,
        address: Annotated[
            Optional[str],  # noqa: UP045
            typer.Option(
                help="Join a Ray cluster (`auto`, `ray://HOST:10001`) instead of "
                "starting a local one."
            ),
        ] = None,
        data_dir: Annotated[
            Optional[str],  # noqa: UP045
            typer.Option(help="Replace the spec's data_dir (any fsspec URL)."),
        ] = None,
        dashboard: Annotated[bool, typer.Option(help="Start Ray's dashboard.")] = False,
    ) -> None:
        """Run a job: its stages in dependency order on Ray, cached stages skipped."""
        job = load_job(spec, overrides=set_ or (), data_dir=data_dir)
        record = run_spec(
            job, address=address, resume=resume, force=force or [], dashboard=dashboard
        )
        _print_where(record)

    @app.command()
    def demo(
        data_dir: Annotated[
            str, typer.Option(help="Where the demo writes its data.")
        ] = "./raypipe-data",
        spec: Annotated[Path, typer.Option(help="The demo job.")] = DEMO_SPEC,
        set_: Annotated[
            Optional[list[str]],  # noqa: UP045
            typer.Option("--set", help="Override a spec value."),
        ] = None,
    ) -> None:
        """Run the churn demo on small generated data, then say what it produced and where."""
        job = load_job(_demo_spec(spec), overrides=set_ or (), data_dir=data_dir)
        record = run_spec(job, address=None, resume=False, force=[])
        _print_where(record)


def _demo_spec(spec: Path) -> Path:
    if spec.exists():
        return spec
    beside_package = Path(__file__).resolve().parents[2] / spec
    return beside_package if beside_package.exists() else spec


def _print_where(record: RunRecord) -> None:
    """Where the run's record and outputs are; its reports; last, how to open the MLflow UI."""
    from raypipe.cli.main import console
    from raypipe.driver.state import DriverState

    console.print(f"\n[bold]Run record:[/] {DriverState(record.data_dir).run_url(record.run_id)}")
    outputs = [
        (f"{stage.name}.{name}", output.rows, output.url)
        for stage in record.stages.values()
        for name, output in stage.outputs.items()
    ]
    width = max((len(name) for name, _, _ in outputs), default=0)
    console.print("[bold]Outputs:[/]")
    for name, rows, url in outputs:
        console.print(f"  {name:<{width}} {rows:>12,} rows  {url}")
    for stage in record.stages.values():
        if "report" in stage.metrics:
            console.print(f"[bold]Report ({stage.name}):[/] {stage.metrics['report']}")
    for stage in record.stages.values():
        if "tracking_uri" in stage.metrics:
            from raypipe.cli.render import mlflow_ui_lines

            command, page = mlflow_ui_lines(
                str(stage.metrics["tracking_uri"]),
                stage.metrics.get("mlflow_run_id"),
                str(Path(sys.executable).with_name("mlflow")),
            )
            console.print(
                f"[bold]MLflow ({stage.name}):[/] serve the UI with\n  {command}\n  {page}",
                soft_wrap=True,
            )
