"""``raypipe submit`` and ``raypipe jobs list|logs|stop``: raypipe jobs through Ray's job server."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from raypipe.cli.options import InsecureTokenOption, SetOption, SpecDataDirOption

__all__ = ["register"]

AddressOption = Annotated[
    Optional[str],  # noqa: UP045 - typer needs Optional here
    typer.Option(
        help="The cluster's dashboard URL, e.g. `http://HOST:8265` (default: "
        "RAY_API_SERVER_ADDRESS, RAY_ADDRESS, then http://127.0.0.1:8265).",
    ),
]


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def submit(
    spec: Annotated[Path, typer.Argument(help="The job's YAML file; its folder is uploaded.")],
    address: AddressOption = None,
    set_: SetOption = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the newest unfinished run of this job.")
    ] = False,
    data_dir: SpecDataDirOption = None,
    requirements: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="A pip requirements file installed in the job's environment."),
    ] = None,
    submission_id: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Use this submission id instead of Ray's."),
    ] = None,
    follow: Annotated[
        bool, typer.Option(help="Follow the log to the end and exit with the job's status.")
    ] = True,
    allow_insecure_token: InsecureTokenOption = False,
) -> None:
    """Submit a job to a Ray cluster, follow its log, exit with its status."""
    from raypipe.cli.consoles import console, error_console
    from raypipe.engine import submission
    from raypipe.spec import load_job

    # Check the spec here first: a typo should not cost a cluster round trip. Its data_dir is
    # fixed here too, so the cluster's environment or working dir cannot move it.
    job = load_job(spec, overrides=set_ or (), data_dir=data_dir)
    client = submission.connect(address, allow_insecure_token=allow_insecure_token)
    submitted = submission.submit_job(
        client,
        submission.JobSubmissionSpec(
            spec=spec,
            overrides=tuple(set_ or ()),
            resume=resume,
            data_dir=submission.pin_data_dir(job.data_dir),
            requirements=requirements,
            submission_id=submission_id,
        ),
    )
    console.print(f"submitted [bold]{submitted}[/]", highlight=False)
    if not follow:
        return
    try:
        outcome = submission.follow_job(client, submitted, _write)
    except KeyboardInterrupt:
        error_console.print(
            f"[yellow]stopped following; the job keeps running.[/] "
            f"`raypipe jobs logs {submitted} --follow` or `raypipe jobs stop {submitted}`",
            highlight=False,
        )
        raise typer.Exit(130) from None
    if outcome.exit_code != 0:
        raise submission.JobFinishedError(outcome)
    console.print(f"job [bold]{submitted}[/] [green]{outcome.status}[/]", highlight=False)


jobs_app = typer.Typer(help="List, read and stop jobs on a Ray cluster.", no_args_is_help=True)


@jobs_app.command("list")
def list_(address: AddressOption = None, allow_insecure_token: InsecureTokenOption = False) -> None:
    """List the cluster's jobs, newest first."""
    from rich.table import Table

    from raypipe.cli.consoles import console
    from raypipe.engine import submission

    table = Table("submission id", "status", "started (UTC)", "entrypoint")
    client = submission.connect(address, allow_insecure_token=allow_insecure_token)
    for row in submission.format_summaries(submission.list_jobs(client)):
        table.add_row(*row)
    console.print(table)


@jobs_app.command()
def logs(
    submission_id: Annotated[str, typer.Argument(help="The job's submission id.")],
    address: AddressOption = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep following until the job ends.")
    ] = False,
    allow_insecure_token: InsecureTokenOption = False,
) -> None:
    """Print a job's log; with --follow, to its end, exiting with its status."""
    from raypipe.engine import submission

    client = submission.connect(address, allow_insecure_token=allow_insecure_token)
    if not follow:
        _write(submission.read_job_logs(client, submission_id))
        return
    outcome = submission.follow_job(client, submission_id, _write)
    if outcome.exit_code != 0:
        raise submission.JobFinishedError(outcome)


@jobs_app.command()
def stop(
    submission_id: Annotated[str, typer.Argument(help="The job's submission id.")],
    address: AddressOption = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the job to end.")] = 10.0,
    allow_insecure_token: InsecureTokenOption = False,
) -> None:
    """Stop a running job."""
    from raypipe.cli.consoles import console
    from raypipe.engine import submission

    client = submission.connect(address, allow_insecure_token=allow_insecure_token)
    status = submission.stop_job(client, submission_id, wait_s=wait)
    console.print(f"job [bold]{submission_id}[/]: {status}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(submit)
    app.add_typer(jobs_app, name="jobs")
