"""``raypipe run`` and ``raypipe demo``: run a job on local Ray or a cluster."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from raypipe.cli.options import (
    AddressOption,
    DataDirOption,
    InlineOption,
    InsecureTokenOption,
    SetOption,
    SpecDataDirOption,
)
from raypipe.errors import RuntimeUnavailableError, SpecError

if TYPE_CHECKING:  # the driver imports the data stack; commands other than `run` never need it
    from raypipe.driver import RunRecord
    from raypipe.spec import Job

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
    allow_insecure_token: bool = False,
    inline: bool = False,
) -> RunRecord:
    """Run ``job`` on a Ray runtime started (or joined) for it, or in this process with
    ``inline``, showing progress."""
    from raypipe.cli.consoles import console
    from raypipe.cli.observers import RichObserver, make_observer
    from raypipe.cli.options import open_backend
    from raypipe.cli.render import run_table
    from raypipe.cli.signals import cancel_on_signals
    from raypipe.driver import JobFailedError, JobInterruptedError, RunOptions, run_job
    from raypipe.driver.state import DriverState
    from raypipe.stages.base import CancelToken

    unknown = sorted(set(force) - {stage.name for stage in job.stages})
    if unknown:
        raise SpecError([f"--force `{name}`: no such stage" for name in unknown], source=job.source)
    # A data_dir that cannot be written fails here, in one line, before Ray starts.
    DriverState(job.data_dir, job.name, job.storage_options).check_writable()
    observer = make_observer(console)
    showing = observer if isinstance(observer, RichObserver) else nullcontext()
    runtime = None
    if not inline:
        from raypipe.engine.runtime import RayRuntime, RuntimeOptions

        runtime = RayRuntime(
            RuntimeOptions(
                address=address,
                num_cpus=num_cpus,
                include_dashboard=dashboard,
                allow_insecure_token=allow_insecure_token,
            )
        )

    def driver_node() -> str:  # asked as each stage ends: Ray may start with a later stage
        return runtime.driver_node_id if runtime is not None and runtime.started else ""

    # A local Ray starts with the first stage that needs it, in that stage's thread, where
    # ray.init leaves this block's signal handlers alone; leaving the block shuts down the Ray
    # this command started.
    with (
        open_backend(inline=inline, runtime=runtime) as backend,
        cancel_on_signals(CancelToken()) as token,
        showing,
    ):
        if runtime is not None:
            runtime.watch_local_node(
                lambda reason: token.cancel(reason, exit_code=RuntimeUnavailableError.exit_code)
            )
        try:
            record = run_job(
                job,
                backend=backend,
                driver_node=driver_node,
                options=RunOptions(resume=resume, force=frozenset(force)),
                observer=observer,
                cancel_token=token,
            )
        except (JobFailedError, JobInterruptedError) as exc:
            console.print(run_table(exc.record))
            # The node's death is the cause only if it came first: on SIGTERM to the whole
            # process group the local raylet ends too, after the signal that stopped the run.
            node_death = runtime.node_death if runtime is not None else None
            if node_death is not None and token.reason == node_death:
                raise _node_died(node_death, exc.record) from exc
            raise
    console.print(run_table(record))
    return record


def _node_died(reason: str, record: RunRecord) -> RuntimeUnavailableError:
    return RuntimeUnavailableError(
        f"Run `{record.run_id}` of job `{record.job}` stopped: {reason}; its tasks were lost "
        "and nothing was committed after",
        hint="a killed raylet is most often the out-of-memory killer (`dmesg`, `free -h`); "
        f"lower the job's size with --set, then `raypipe run {record.spec} --resume` continues "
        "the run",
    )


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        spec: Annotated[Path, typer.Argument(help="The job's YAML file.")],
        set_: SetOption = None,
        resume: Annotated[
            bool, typer.Option(help="Continue the newest unfinished run of this job.")
        ] = False,
        force: Annotated[
            Optional[list[str]],  # noqa: UP045
            typer.Option(help="Rerun this stage even if cached (repeatable)."),
        ] = None,
        address: AddressOption = None,
        inline: InlineOption = False,
        data_dir: SpecDataDirOption = None,
        dashboard: Annotated[bool, typer.Option(help="Start Ray's dashboard.")] = False,
        allow_insecure_token: InsecureTokenOption = False,
    ) -> None:
        """Run a job: its stages in dependency order on Ray, cached stages skipped."""
        from raypipe.spec import load_job

        job = load_job(spec, overrides=set_ or (), data_dir=data_dir)
        record = run_spec(
            job,
            address=address,
            resume=resume,
            force=force or [],
            dashboard=dashboard,
            allow_insecure_token=allow_insecure_token,
            inline=inline,
        )
        _print_where(record)

    @app.command()
    def demo(
        data_dir: DataDirOption = None,
        spec: Annotated[Path, typer.Option(help="The demo job.")] = DEMO_SPEC,
        set_: SetOption = None,
        inline: InlineOption = False,
    ) -> None:
        """Run the churn demo on small generated data, then say what it produced and where."""
        from raypipe.spec import load_job
        from raypipe.tracking.store import resolve_data_dir

        job = load_job(_demo_spec(spec), overrides=set_ or (), data_dir=resolve_data_dir(data_dir))
        record = run_spec(job, address=None, resume=False, force=[], inline=inline)
        _print_where(record)


def _demo_spec(spec: Path) -> Path:
    if spec.exists():
        return spec
    beside_package = Path(__file__).resolve().parents[2] / spec
    return beside_package if beside_package.exists() else spec


def _print_where(record: RunRecord) -> None:
    """Where the run's record and outputs are; its reports; last, how to open the MLflow UI."""
    from raypipe.cli.consoles import console
    from raypipe.driver.state import DriverState

    run_url = DriverState(record.data_dir, record.job).run_url(record.run_id)
    console.print(f"\n[bold]Run record:[/] {run_url}")
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
