"""The Job Submission glue against a fake client: entrypoint, runtime env, logs, exit codes."""

from __future__ import annotations

import logging
import shlex
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from raypipe.cli.main import main
from raypipe.engine import auth
from raypipe.engine import submission as jobs
from raypipe.errors import RaypipeError, RuntimeUnavailableError, SpecError
from tests.support.fake_stages import fake_kinds  # noqa: F401 - fixture


class FakeClient:
    """Behaves like JobSubmissionClient for one job whose log and statuses are scripted."""

    def __init__(
        self,
        log: str,
        *,
        tail_chunks: list[str] | None = None,
        statuses: list[str] | None = None,
        tail_error: Exception | None = None,
        driver_exit_code: int | None = None,
    ) -> None:
        self.log = log
        self.tail_chunks = [log] if tail_chunks is None else tail_chunks
        self.statuses = statuses or ["SUCCEEDED"]
        self.tail_error = tail_error
        self.driver_exit_code = driver_exit_code
        self.submitted: dict[str, Any] = {}
        self.stopped: list[str] = []

    def submit_job(self, **kwargs: Any) -> str:
        self.submitted = kwargs
        return kwargs.get("submission_id") or "raysubmit_1"

    def get_job_status(self, job_id: str) -> Any:
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return SimpleNamespace(value=status)

    def get_job_info(self, job_id: str) -> Any:
        return SimpleNamespace(
            driver_exit_code=self.driver_exit_code,
            message="driver said so, last available logs:\n" + self.log,
            status="x",
        )

    def get_job_logs(self, job_id: str) -> str:
        return self.log

    async def tail_job_logs(self, job_id: str) -> AsyncIterator[str]:
        for chunk in self.tail_chunks:
            yield chunk
        if self.tail_error is not None:
            raise self.tail_error

    def list_jobs(self) -> list[Any]:
        def job(sid: str, status: str, spec: str, start: int, end: int | None) -> Any:
            return SimpleNamespace(
                submission_id=sid,
                job_id=None,
                status=SimpleNamespace(value=status),
                entrypoint=f"raypipe run {spec}",
                start_time=start,
                end_time=end,
            )

        return [
            job("old", "FAILED", "a.yaml", 1_000, 2_000),
            job("new", "RUNNING", "b.yaml", 5_000, None),
        ]

    def stop_job(self, job_id: str) -> bool:
        self.stopped.append(job_id)
        return True


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "job" / "churn.yaml"
    path.parent.mkdir()
    path.write_text("name: j\nstages:\n  a: {uses: test.make}\n")
    return path


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, fake_kinds: None) -> None:  # noqa: F811
    """The CLI with this package's commands wired in (the lead adds them to main for real)."""
    import importlib.util

    import raypipe.cli.main as cli_main

    # Other areas' command modules may not exist yet in a partial checkout.
    present = tuple(m for m in cli_main.COMMAND_MODULES if importlib.util.find_spec(m))
    wanted = present if "raypipe.cli.submit" in present else (*present, "raypipe.cli.submit")
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", wanted)
    # main() points the root logger at pytest's captured stderr: undo that after the test.
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)


def test_entrypoint_runs_the_spec_by_name_on_the_cluster_with_every_option(spec: Path) -> None:
    submission = jobs.JobSubmissionSpec(
        spec=spec,
        overrides=("stages.events.with.players=2000", "name=it's"),
        resume=True,
        data_dir="s3://bucket/data",
    )
    args = run_words(jobs.build_entrypoint(submission), job_dir="/ray/pkg")
    assert args == [
        "raypipe",
        "run",
        "/ray/pkg/churn.yaml",
        "--address",
        "auto",
        "--set",
        "stages.events.with.players=2000",
        "--set",
        "name=it's",
        "--resume",
        "--data-dir",
        "s3://bucket/data",
    ]
    plain = run_words(jobs.build_entrypoint(jobs.JobSubmissionSpec(spec=spec)), "/p")
    assert plain == ["raypipe", "run", "/p/churn.yaml", "--address", "auto"]
    custom = jobs.JobSubmissionSpec(spec=spec, command=("python", "{job_dir}/run.py"))
    assert run_words(jobs.build_entrypoint(custom), "/p")[:3] == ["python", "/p/run.py", "run"]


def run_words(entrypoint: str, job_dir: str) -> list[str]:
    """The words a POSIX shell started in ``job_dir`` would run (printed, not run)."""
    import subprocess

    prefix = 'd="$(pwd -P)" && cd .. && '
    assert entrypoint.startswith(prefix)
    script = f"d={shlex.quote(job_dir)} && printf '%s\\n' " + entrypoint.removeprefix(prefix)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_runtime_env_uploads_the_spec_folder_with_requirements(spec: Path) -> None:
    requirements = spec.parent / "requirements.txt"
    requirements.write_text("# extra\nlightgbm==4.5.0  # boosting\n\nrequests\n")
    env = jobs.build_runtime_env(
        jobs.JobSubmissionSpec(spec=spec, requirements=requirements, env_vars={"A": "1"})
    )
    assert env["working_dir"] == str(spec.parent.resolve())
    assert env["pip"] == ["lightgbm==4.5.0", "requests"]
    assert env["env_vars"] == {"A": "1"}
    assert ".venv" in env["excludes"] and ".git" in env["excludes"]
    assert "pip" not in jobs.build_runtime_env(jobs.JobSubmissionSpec(spec=spec))


def test_uploaded_folder_leaves_out_secrets_environments_and_data(spec: Path) -> None:
    from ray._private.runtime_env.packaging import _get_excludes

    folder = spec.parent
    kept = ["job.yaml", "stages.py", "conf/settings.yaml", "keys.py", "environment.yaml"]
    left_out = [
        ".env",
        ".env.production",
        "server.key",
        "conf/tls.pem",
        "id_rsa",
        "id_rsa.pub",
        "conf/id_rsa_deploy",
        ".venv/bin/python",
        "raypipe-data/runs/x/run.json",
    ]
    for name in [*kept, *left_out]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")
    excludes = jobs.build_runtime_env(jobs.JobSubmissionSpec(spec=spec))["excludes"]
    # Ray's own matcher (gitignore patterns, relative to the working_dir), as the upload uses it.
    is_excluded = _get_excludes(folder, excludes)
    assert [name for name in left_out if not is_excluded(folder / name)] == []
    assert [name for name in kept if is_excluded(folder / name)] == []


def test_missing_spec_or_requirements_are_spec_errors(spec: Path) -> None:
    with pytest.raises(SpecError, match="no such job spec"):
        jobs.build_runtime_env(jobs.JobSubmissionSpec(spec=spec.parent / "nope.yaml"))
    with pytest.raises(SpecError, match="requirements"):
        jobs.build_runtime_env(
            jobs.JobSubmissionSpec(spec=spec, requirements=spec.parent / "missing.txt")
        )


def test_submit_sends_entrypoint_env_and_zero_driver_cpus(spec: Path) -> None:
    client = FakeClient("")
    submission_id = jobs.submit_job(client, jobs.JobSubmissionSpec(spec=spec, submission_id="mine"))
    assert submission_id == "mine"
    assert run_words(client.submitted["entrypoint"], "/j")[:5] == [
        "raypipe",
        "run",
        "/j/churn.yaml",
        "--address",
        "auto",
    ]
    assert client.submitted["runtime_env"]["working_dir"] == str(spec.parent.resolve())
    assert client.submitted["entrypoint_num_cpus"] == 0


@pytest.mark.parametrize(
    ("status", "driver_code", "expected"),
    [
        ("SUCCEEDED", 0, 0),
        ("SUCCEEDED", None, 0),
        ("FAILED", 4, 4),
        ("FAILED", None, 1),
        ("FAILED", 0, 1),
        ("STOPPED", None, 130),
    ],
)
def test_exit_code_follows_the_job_status(
    status: str, driver_code: int | None, expected: int
) -> None:
    assert jobs.exit_code_for(status, driver_code) == expected


def test_follow_prints_the_last_lines_the_tail_dropped() -> None:
    log = "line 1\nline 2\nfinal line\n"
    client = FakeClient(log, tail_chunks=["line 1\n", "line 2\n"])
    written: list[str] = []
    outcome = jobs.follow_job(client, "raysubmit_1", written.append, poll_seconds=0)
    assert "".join(written) == log
    assert outcome.status == "SUCCEEDED" and outcome.exit_code == 0


def test_follow_keeps_going_when_the_tail_ends_before_the_job() -> None:
    # ray #60665: the tail ends (even cleanly) while the job still runs on other nodes.
    log = "started\nworker node lost\nretried\ndone\n"
    client = FakeClient(
        log,
        tail_chunks=["started\n"],
        tail_error=RuntimeError("WebSocket closed"),
        statuses=["RUNNING", "RUNNING", "FAILED"],
        driver_exit_code=4,
    )
    written: list[str] = []
    outcome = jobs.follow_job(client, "raysubmit_1", written.append, poll_seconds=0)
    assert "".join(written) == log
    assert (outcome.status, outcome.exit_code) == ("FAILED", 4)
    assert outcome.message.startswith("driver said so")


def test_follow_gives_up_after_its_timeout() -> None:
    client = FakeClient("x", statuses=["RUNNING"])
    with pytest.raises(RuntimeUnavailableError, match="still RUNNING"):
        jobs.follow_job(client, "raysubmit_1", lambda _: None, poll_seconds=0, timeout_s=0.01)


def test_list_is_newest_first_and_stop_waits_for_a_terminal_status() -> None:
    client = FakeClient("", statuses=["RUNNING", "STOPPED"])
    summaries = jobs.list_jobs(client)
    assert [job.submission_id for job in summaries] == ["new", "old"]
    assert summaries[0].start_time == 5.0
    rows = jobs.format_summaries(summaries)
    assert rows[1] == ("old", "FAILED", "1970-01-01 00:00:01", "raypipe run a.yaml")
    assert jobs.stop_job(client, "new", wait_s=5) == "STOPPED"
    assert client.stopped == ["new"]


def test_token_comes_from_rays_own_sources_in_rays_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token of the real user
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    token_file = tmp_path / "token"
    token_file.write_text("from-file-token\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
    assert auth.read_auth_token() == "from-file-token"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env-token")
    assert auth.read_auth_token() == "from-env-token"
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(RuntimeUnavailableError, match="RAY_AUTH_TOKEN_PATH"):
        auth.read_auth_token()


def test_connect_sends_the_token_as_a_bearer_header(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    class Recorder:
        def __init__(self, address: str, headers: dict[str, str] | None = None) -> None:
            seen.update(address=address, headers=headers)

    import ray.job_submission

    monkeypatch.setattr(ray.job_submission, "JobSubmissionClient", Recorder)
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "https://10.0.0.1:8265")
    jobs.connect(token="t0k")
    assert seen == {"address": "https://10.0.0.1:8265", "headers": {"Authorization": "Bearer t0k"}}


def test_connect_sends_a_token_over_plain_http_only_to_loopback_unless_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, Any]] = []

    class Recorder:
        def __init__(self, address: str, headers: dict[str, str] | None = None) -> None:
            sent.append((address, headers))

    import ray.job_submission

    monkeypatch.setattr(ray.job_submission, "JobSubmissionClient", Recorder)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "s3cret")
    with pytest.raises(RuntimeUnavailableError, match="clear text") as info:
        jobs.connect("http://203.0.113.5:8265")
    assert "--allow-insecure-token" in (info.value.hint or "") and sent == []
    jobs.connect("http://203.0.113.5:8265", allow_insecure_token=True)
    jobs.connect("http://127.0.0.1:8265")
    jobs.connect("http://localhost:8265")
    assert [headers for _, headers in sent] == [{"Authorization": "Bearer s3cret"}] * 3
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    jobs.connect("http://203.0.113.5:8265")  # no token, nothing to protect
    assert sent[-1] == ("http://203.0.113.5:8265", None)


@pytest.mark.usefixtures("cli")
def test_cli_jobs_refuses_an_insecure_token_and_names_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RAY_AUTH_TOKEN", "s3cret")
    with pytest.raises(SystemExit) as exit_info:
        main(["jobs", "list", "--address", "http://203.0.113.5:8265"])
    assert exit_info.value.code == 5
    err = capsys.readouterr().err
    assert "clear text" in err and "--allow-insecure-token" in err and "s3cret" not in err


def test_unreachable_job_server_is_a_runtime_error_with_a_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAY_AUTH_TOKEN", "t")
    with pytest.raises(RuntimeUnavailableError) as info:
        # Port 9 (discard) on localhost: nothing listens, the connection is refused at once.
        jobs.connect("http://127.0.0.1:9")
    assert "127.0.0.1:9" in info.value.message and "--address" in (info.value.hint or "")


@pytest.mark.usefixtures("cli")
def test_cli_submit_follows_and_exits_with_the_jobs_code(
    spec: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    client = FakeClient("stage a failed\n", statuses=["FAILED"], driver_exit_code=4)
    monkeypatch.setattr(jobs, "connect", lambda address=None, **_: client)
    with pytest.raises(SystemExit) as info:
        main(["submit", str(spec), "--address", "http://h:8265", "--resume"])
    assert info.value.code == 4
    out, err = capsys.readouterr()
    assert "submitted raysubmit_1" in out and "stage a failed" in out
    assert "ended FAILED: driver said so, last available logs\n" in err
    assert "raypipe jobs logs raysubmit_1" in err
    assert err.count("stage a failed") == 0  # the log is not repeated in the error
    args = run_words(client.submitted["entrypoint"], "/job")
    assert args[:3] == ["raypipe", "run", "/job/churn.yaml"] and "--resume" in args
    assert Path(args[args.index("--data-dir") + 1]).is_absolute()  # pinned on the client


@pytest.mark.usefixtures("cli")
def test_cli_jobs_list_logs_stop(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    client = FakeClient("hello log\n", statuses=["STOPPED"])
    monkeypatch.setattr(jobs, "connect", lambda address=None, **_: client)
    main(["jobs", "list"])
    assert "raypipe run b.yaml" in capsys.readouterr().out
    main(["jobs", "logs", "new"])
    assert capsys.readouterr().out == "hello log\n"
    main(["jobs", "stop", "new", "--wait", "0"])
    assert "STOPPED" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["jobs", "logs", "new", "--follow"])
    assert info.value.code == 130


@pytest.mark.parametrize(
    ("failure", "error", "says"),
    [
        ("auth", RuntimeUnavailableError, "refused the auth token while listing jobs"),
        ("connection", RuntimeUnavailableError, "Could not reach Ray's job server"),
        ("runtime", RaypipeError, "failed while listing jobs: Request failed with status 500"),
    ],
)
def test_job_server_failures_become_raypipe_errors_with_hints(
    failure: str, error: type[Exception], says: str
) -> None:
    import requests
    from ray.exceptions import AuthenticationError

    raised = {
        "auth": AuthenticationError("Authentication required: Unauthorized\n\nmore"),
        "connection": requests.exceptions.ConnectionError("refused"),
        "runtime": RuntimeError("Request failed with status 500"),
    }[failure]

    class Failing(FakeClient):
        def list_jobs(self) -> list[Any]:
            raise raised

    with pytest.raises(error) as info:
        jobs.list_jobs(Failing(""))
    assert says in str(info.value)
    assert isinstance(info.value, RaypipeError) and info.value.hint


def test_data_dir_is_pinned_on_the_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert jobs.pin_data_dir("s3://bucket/data") == "s3://bucket/data"
    assert caplog.records == []
    monkeypatch.chdir(tmp_path)
    assert jobs.pin_data_dir("./raypipe-data") == str(tmp_path.resolve() / "raypipe-data")
    assert jobs.pin_data_dir(f"file://{tmp_path}/d") == str(tmp_path.resolve() / "d")
    assert "every node of the cluster must see it" in caplog.text


def test_a_cluster_without_raypipe_is_named_not_resumed() -> None:
    log = "/bin/sh: 1: raypipe: not found\n"
    client = FakeClient(log, statuses=["FAILED"], driver_exit_code=127)
    outcome = jobs.follow_job(client, "raysubmit_1", lambda _: None, poll_seconds=0)
    error = jobs.JobFinishedError(outcome)
    assert error.exit_code == 127
    assert "the cluster has no `raypipe` command" in error.message
    assert "install raypipe on every node" in (error.hint or "")
    assert "--resume" not in (error.hint or "") and "--requirements" in (error.hint or "")
    bash = FakeClient(
        "bash: line 1: raypipe: command not found\n", statuses=["FAILED"], driver_exit_code=127
    )
    outcome = jobs.follow_job(bash, "raysubmit_1", lambda _: None, poll_seconds=0)
    assert "no `raypipe` command" in jobs.JobFinishedError(outcome).message
    # Any other failure still points at the log and --resume.
    other = FakeClient("boom\n", statuses=["FAILED"], driver_exit_code=4)
    outcome = jobs.follow_job(other, "raysubmit_1", lambda _: None, poll_seconds=0)
    assert "--resume" in (jobs.JobFinishedError(outcome).hint or "")
