"""Submit raypipe jobs to a Ray cluster through Ray's Job Submission API, and follow them.

A submitted job runs ``raypipe run <spec> --address auto`` as the Ray job's entrypoint, in a
runtime environment whose ``working_dir`` is the spec's folder (the spec and any user code beside
it) plus optional pip requirements. :func:`follow_job` streams the driver's log to the end: Ray's
log tail can stop early (a preempted node, ray #60665) or drop the last lines (ray #48701), so
after it ends we wait for a terminal status and print whatever the full log has beyond what the
tail showed. The job's status becomes the exit code.

Token authentication (on by default for Ray 2.59+ local clusters): ``JobSubmissionClient`` sends
a token only when ``RAY_AUTH_MODE=token`` is set in the client's own process, so we find the token
ourselves (:func:`raypipe.engine.auth.auth_token_for`, the same lookup as ``run --address``) and
send it as an ``Authorization: Bearer`` header; over plain http only to a loopback address unless
the user opts in. A cluster without token authentication ignores the header.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shlex
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from raypipe.engine.auth import TOKEN_SOURCES_HINT, auth_token_for, check_token_transport
from raypipe.errors import RaypipeError, RuntimeUnavailableError, SpecError

__all__ = [
    "DEFAULT_ADDRESS",
    "JOB_DIR",
    "JobFinishedError",
    "JobOutcome",
    "JobSubmissionSpec",
    "JobSummary",
    "build_entrypoint",
    "build_runtime_env",
    "connect",
    "exit_code_for",
    "follow_job",
    "job_server_errors",
    "list_jobs",
    "pin_data_dir",
    "read_job_logs",
    "stop_job",
    "submit_job",
]

logger = logging.getLogger(__name__)

DEFAULT_ADDRESS = "http://127.0.0.1:8265"

#: Never uploaded with the spec's folder: environments, caches, local data, and secrets (dotenv
#: files, private keys, certificates), which would otherwise sit in the cluster's package store.
WORKING_DIR_EXCLUDES: tuple[str, ...] = (
    ".env",
    ".env.*",
    "*.key",
    "id_rsa*",
    "*.pem",
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    "raypipe-data",
    "mlruns",
)

TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
EXIT_STOPPED = 130
EXIT_COMMAND_NOT_FOUND = 127
POLL_SECONDS = 1.0

Write = Callable[[str], Any]


class SubmissionClient(Protocol):
    """The part of ``ray.job_submission.JobSubmissionClient`` raypipe uses (tests fake it)."""

    def submit_job(self, **kwargs: Any) -> str: ...

    def get_job_status(self, job_id: str) -> Any: ...

    def get_job_info(self, job_id: str) -> Any: ...

    def get_job_logs(self, job_id: str) -> str: ...

    def tail_job_logs(self, job_id: str) -> Any: ...

    def list_jobs(self) -> list[Any]: ...

    def stop_job(self, job_id: str) -> bool: ...


class JobFinishedError(RaypipeError):
    """A submitted job ended other than SUCCEEDED; exits with the job driver's own exit code."""

    def __init__(self, outcome: JobOutcome) -> None:
        missing = _missing_command(outcome)
        if missing is not None:
            # The driver never ran: nothing to resume, the cluster lacks the program.
            super().__init__(
                f"Ray job `{outcome.submission_id}` could not start: the cluster has no "
                f"`{missing}` command (exit 127, `{missing}: not found`)",
                hint="install raypipe on every node of the cluster: the launcher YAMLs in "
                "cluster/ pip install the wheel from dist/, KubeRay needs an image with "
                "raypipe (cluster/README.md), or pass --requirements FILE naming a raypipe "
                "wheel the cluster can download; then submit again",
            )
            self.outcome = outcome
            self.exit_code = outcome.exit_code
            return
        # Ray's message repeats the log's last 20,000 characters, already shown: keep line one.
        first_line = outcome.message.strip().splitlines()[0] if outcome.message.strip() else ""
        detail = f": {first_line.rstrip(':')}" if first_line else ""
        super().__init__(
            f"Ray job `{outcome.submission_id}` ended {outcome.status}{detail}",
            hint=f"`raypipe jobs logs {outcome.submission_id}` prints its whole log; "
            "resubmit with --resume to continue from the last committed stage",
        )
        self.outcome = outcome
        self.exit_code = outcome.exit_code


#: The shell's words for a missing program: dash (`sh: 1: raypipe: not found`) and bash.
_NOT_FOUND = re.compile(r"(?:^|\s)([\w.-]+): (?:command )?not found\s*$", re.MULTILINE)


def _missing_command(outcome: JobOutcome) -> str | None:
    """The program the job's shell could not find (exit 127), else ``None``."""
    if outcome.exit_code != EXIT_COMMAND_NOT_FOUND:
        return None
    found = _NOT_FOUND.search(outcome.message)
    return found.group(1) if found else None


@dataclass(frozen=True)
class JobSubmissionSpec:
    """What to submit: a job spec and the options of ``raypipe run``.

    Parameters
    ----------
    spec
        The job's YAML file; its folder becomes the job's ``working_dir``.
    overrides
        ``--set key=value`` strings, passed on to ``raypipe run``.
    resume
        Pass ``--resume``: continue the newest unfinished run of the job.
    data_dir
        Pass ``--data-dir`` (it must be storage every node sees, e.g. ``s3://``).
    requirements
        A pip requirements file installed in the job's environment.
    submission_id
        An explicit id (Ray makes one otherwise); submitting an id twice is refused by Ray.
    env_vars
        Extra environment variables of the job's driver and workers.
    command
        The program that runs the spec; ``("raypipe",)`` on a cluster with raypipe installed.
        A word starting with ``{job_dir}/`` names a file of the uploaded folder.
    """

    spec: Path
    overrides: tuple[str, ...] = ()
    resume: bool = False
    data_dir: str | None = None
    requirements: Path | None = None
    submission_id: str | None = None
    env_vars: Mapping[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ("raypipe",)


@dataclass(frozen=True)
class JobOutcome:
    """How a followed job ended."""

    submission_id: str
    status: str
    exit_code: int
    message: str = ""


@dataclass(frozen=True)
class JobSummary:
    """One line of ``raypipe jobs list``."""

    submission_id: str
    status: str
    entrypoint: str
    start_time: float | None
    end_time: float | None


def connect(
    address: str | None = None,
    *,
    token: str | None = None,
    allow_insecure_token: bool = False,
) -> SubmissionClient:
    """A Job Submission client for the dashboard at ``address``, carrying the auth token.

    ``address`` defaults to ``RAY_API_SERVER_ADDRESS``, then ``RAY_ADDRESS`` when it is an
    ``http(s)://`` URL, then :data:`DEFAULT_ADDRESS`. ``token`` defaults to the one
    :func:`~raypipe.engine.auth.auth_token_for` finds; either is sent over plain http only to
    a loopback address, unless ``allow_insecure_token``.
    """
    from ray.job_submission import JobSubmissionClient

    address = address or _address_from_env()
    if token is None:
        token = auth_token_for(address, allow_insecure=allow_insecure_token)
    else:
        check_token_transport(address, allow_insecure=allow_insecure_token)
    headers = {"Authorization": f"Bearer {token}"} if token else None
    with job_server_errors(f"connecting to `{address}`"):
        try:
            return cast(SubmissionClient, JobSubmissionClient(address, headers=headers))
        except ValueError as exc:  # a malformed address
            raise ConnectionError(str(exc)) from exc


@contextmanager
def job_server_errors(what: str) -> Iterator[None]:
    """Turn the job server client's failures into raypipe errors that say what to do."""
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "refused"
        raise RuntimeUnavailableError(
            f"Ray's job server refused the auth token while {what}: {first_line}",
            hint=f"use the cluster's token: {TOKEN_SOURCES_HINT}",
        ) from exc
    except OSError as exc:  # ConnectionError and requests' connection errors
        raise RuntimeUnavailableError(
            f"Could not reach Ray's job server while {what}: {exc}",
            hint="pass the head node's dashboard URL, e.g. `--address http://HOST:8265`; the "
            "dashboard must run (`ray start --head --include-dashboard true`) and be reachable "
            "(`ray dashboard CLUSTER.yaml` or `kubectl port-forward` tunnels it to 127.0.0.1)",
        ) from exc
    except RuntimeError as exc:
        raise RaypipeError(
            f"Ray's job server failed while {what}: {exc}",
            hint="`raypipe jobs list --address ...` lists the jobs the cluster knows",
        ) from exc


def _address_from_env() -> str:
    explicit = os.environ.get("RAY_API_SERVER_ADDRESS")
    if explicit:
        return explicit
    ray_address = os.environ.get("RAY_ADDRESS", "")
    if ray_address.startswith(("http://", "https://")):
        return ray_address
    return DEFAULT_ADDRESS


def pin_data_dir(data_dir: str) -> str:
    """The data_dir a submitted job should get, fixed on the client.

    The spec's ``data_dir`` may depend on the environment (``${RAYPIPE_DATA_DIR:-...}``) and be
    relative; on the cluster both would resolve elsewhere (the job's working dir is a temporary
    copy). A URL with a scheme is kept; a local path becomes absolute, with a warning, since
    only nodes that mount the same file system see it.
    """
    if "://" in data_dir and not data_dir.startswith("file://"):
        return data_dir
    local = data_dir.removeprefix("file://")
    absolute = str(Path(local).expanduser().resolve())
    logger.warning(
        "data_dir `%s` is a local path: every node of the cluster must see it (one machine or "
        "a shared mount); use s3:// or gs:// on a real cluster (--data-dir)",
        absolute,
    )
    return absolute


#: In :attr:`JobSubmissionSpec.command`, stands for the job's unpacked working_dir.
JOB_DIR = "{job_dir}"


def build_entrypoint(submission: JobSubmissionSpec) -> str:
    """The shell command the Ray job runs: ``raypipe run <spec> --address auto ...``.

    Ray unpacks the spec's folder and starts the command there. Ray 2.60 may unpack that folder
    again (rmtree, then unpack at the same path) when it first sets up the job's runtime env on
    the node, which leaves a driver started inside it in a deleted directory (``os.getcwd()``
    fails). So the driver runs from the folder's parent, which stays, and names the spec by its
    absolute path: ``d="$(pwd -P)" && cd .. && raypipe run "$d"/churn.yaml --address auto``.
    """
    words = [*submission.command, "run", f"{JOB_DIR}/{submission.spec.name}", "--address", "auto"]
    for override in submission.overrides:
        words += ["--set", override]
    if submission.resume:
        words.append("--resume")
    if submission.data_dir:
        words += ["--data-dir", submission.data_dir]
    return 'd="$(pwd -P)" && cd .. && ' + " ".join(_shell_word(word) for word in words)


def _shell_word(word: str) -> str:
    if word.startswith(f"{JOB_DIR}/"):
        return '"$d"/' + shlex.quote(word.removeprefix(f"{JOB_DIR}/"))
    return shlex.quote(word)


def build_runtime_env(submission: JobSubmissionSpec) -> dict[str, Any]:
    """The job's runtime environment: the spec's folder, pip requirements, env vars."""
    spec = submission.spec
    if not spec.is_file():
        raise SpecError([f"`{spec}`: no such job spec file"], source=str(spec))
    runtime_env: dict[str, Any] = {
        "working_dir": str(spec.resolve().parent),
        "excludes": list(WORKING_DIR_EXCLUDES),
    }
    if submission.requirements is not None:
        runtime_env["pip"] = read_requirements(submission.requirements)
    if submission.env_vars:
        runtime_env["env_vars"] = dict(submission.env_vars)
    return runtime_env


def read_requirements(path: Path) -> list[str]:
    """The requirement lines of a pip requirements file (comments and blanks dropped)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(
            [f"`{path}`: cannot read the requirements file ({exc.strerror})"], source=str(path)
        ) from exc
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return [line for line in lines if line]


def submit_job(client: SubmissionClient, submission: JobSubmissionSpec) -> str:
    """Submit ``submission`` and return its submission id."""
    runtime_env = build_runtime_env(submission)
    entrypoint = build_entrypoint(submission)
    with job_server_errors(f"submitting `{submission.spec}`"):
        submission_id = client.submit_job(
            entrypoint=entrypoint,
            runtime_env=runtime_env,
            submission_id=submission.submission_id,
            metadata={"raypipe_spec": submission.spec.name},
            # Without a resource request Ray runs the driver on the head node, which survives
            # worker losses. The driver only schedules; its tasks ask for the CPUs.
            entrypoint_num_cpus=0,
        )
    logger.info("submitted %s as %s", entrypoint, submission_id)
    return str(submission_id)


def exit_code_for(status: str, driver_exit_code: int | None) -> int:
    """Map a Ray job status to a process exit code.

    ``SUCCEEDED`` -> 0; ``STOPPED`` -> 130 (like an interrupt); ``FAILED`` -> the driver's own
    exit code when it has one (raypipe's codes: 2 spec, 3 data, 4 stage, 5 runtime), else 1.
    """
    if status == "SUCCEEDED":
        return 0
    if status == "STOPPED":
        return EXIT_STOPPED
    if driver_exit_code:
        return int(driver_exit_code)
    return 1


def follow_job(
    client: SubmissionClient,
    submission_id: str,
    write: Write,
    *,
    poll_seconds: float = POLL_SECONDS,
    timeout_s: float | None = None,
) -> JobOutcome:
    """Stream the job's log to ``write`` until the job ends, last lines included.

    Returns
    -------
    JobOutcome
        The terminal status and the exit code :func:`exit_code_for` gives it.
    """
    with job_server_errors(f"following job `{submission_id}`"):
        return _follow(client, submission_id, write, poll_seconds, timeout_s)


def _follow(
    client: SubmissionClient,
    submission_id: str,
    write: Write,
    poll_seconds: float,
    timeout_s: float | None,
) -> JobOutcome:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    tailed: list[int] = [0]  # characters written by the tail, kept if it fails half-way
    try:
        asyncio.run(_tail(client, submission_id, write, tailed))
    except Exception as exc:  # the websocket tail is best effort; polling below catches up
        logger.debug("log tail of %s ended early: %s", submission_id, exc)
    shown = tailed[0]
    status = _status(client, submission_id)
    while status not in TERMINAL_STATUSES:
        if deadline is not None and time.monotonic() > deadline:
            raise RuntimeUnavailableError(
                f"Ray job `{submission_id}` still {status} after {timeout_s:.0f} s",
                hint=f"`raypipe jobs logs {submission_id} --follow` keeps following it",
            )
        shown = _write_new(client.get_job_logs(submission_id), shown, write)
        time.sleep(poll_seconds)
        status = _status(client, submission_id)
    _write_new(client.get_job_logs(submission_id), shown, write)
    info = client.get_job_info(submission_id)
    return JobOutcome(
        submission_id=submission_id,
        status=status,
        exit_code=exit_code_for(status, getattr(info, "driver_exit_code", None)),
        message=str(getattr(info, "message", "") or ""),
    )


async def _tail(
    client: SubmissionClient, submission_id: str, write: Write, shown: list[int]
) -> None:
    async for chunk in client.tail_job_logs(submission_id):
        write(chunk)
        shown[0] += len(chunk)


def _write_new(full_log: str, shown: int, write: Write) -> int:
    """Write the part of ``full_log`` past the ``shown`` characters already written."""
    if len(full_log) > shown:
        write(full_log[shown:])
    return max(shown, len(full_log))


def _status(client: SubmissionClient, submission_id: str) -> str:
    status = client.get_job_status(submission_id)
    return str(getattr(status, "value", status))


def list_jobs(client: SubmissionClient) -> list[JobSummary]:
    """Every job the cluster knows, newest first."""
    with job_server_errors("listing jobs"):
        jobs = client.list_jobs()
    summaries = [
        JobSummary(
            submission_id=str(job.submission_id or job.job_id),
            status=str(getattr(job.status, "value", job.status)),
            entrypoint=str(job.entrypoint),
            start_time=job.start_time / 1000 if job.start_time else None,
            end_time=job.end_time / 1000 if job.end_time else None,
        )
        for job in jobs
    ]
    return sorted(summaries, key=lambda job: job.start_time or 0.0, reverse=True)


def read_job_logs(client: SubmissionClient, submission_id: str) -> str:
    """The whole log of a job so far."""
    with job_server_errors(f"reading the log of job `{submission_id}`"):
        return client.get_job_logs(submission_id)


def stop_job(client: SubmissionClient, submission_id: str, *, wait_s: float = 0.0) -> str:
    """Ask the cluster to stop a job; with ``wait_s`` wait that long for it to end.

    Returns the job's status after the request (or after waiting).
    """
    with job_server_errors(f"stopping job `{submission_id}`"):
        client.stop_job(submission_id)
        deadline = time.monotonic() + wait_s
        status = _status(client, submission_id)
        while status not in TERMINAL_STATUSES and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS / 4)
            status = _status(client, submission_id)
    return status


def format_summaries(summaries: Sequence[JobSummary]) -> list[tuple[str, str, str, str]]:
    """Rows (id, status, started, entrypoint) for a table."""
    rows = []
    for job in summaries:
        started = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(job.start_time))
            if job.start_time
            else "-"
        )
        rows.append((job.submission_id, job.status, started, job.entrypoint))
    return rows
