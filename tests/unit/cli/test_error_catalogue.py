"""The catalogue of bad inputs: each through the ``raypipe`` command, each with its exit code and
message, each leaving nothing behind, none with a traceback, every hint naming real options.

Every case fails before Ray would start (or runs in process), so the catalogue stays fast.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer

from raypipe.cli.main import app, main
from raypipe.io.dataset import write_dataset
from tests.unit.inference.data import train_model, write_files

OPTION = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


@dataclass(frozen=True)
class Case:
    """One bad input: the command line, and what the user must be told."""

    name: str
    args: Callable[[Path], list[str]]
    exit_code: int
    says: tuple[str, ...]
    never_says: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder the command runs in, with good and bad inputs in it."""
    monkeypatch.chdir(tmp_path)
    write_dataset(str(tmp_path / "ref"), pa.table({"a": [1.0, 2.0, 3.0, 4.0] * 25}))
    write_dataset(str(tmp_path / "strings"), pa.table({"a": ["p", "q", "r", "s"] * 25}))
    write_dataset(str(tmp_path / "empty"), pa.table({"a": pa.array([], pa.float64())}))
    train_model(tmp_path / "model.json", trees=2)
    (tmp_path / "not_a_model.json").write_text('{"hello": "world"}')
    write_files(tmp_path / "plain", files=1, rows=10)
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    whole = (tmp_path / "plain" / "part-000.parquet").read_bytes()
    (truncated / "part-000.parquet").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "empty_plain").mkdir()
    pq.write_table(pa.table({"f0": pa.array([], pa.float32())}), tmp_path / "empty_plain/a.parquet")
    (tmp_path / "rules_list.yaml").write_text("- {name: x, check: not_null, column: a}\n")
    (tmp_path / "a_file").write_text("a file, not a folder")
    (tmp_path / "ingest.yaml").write_text(
        "name: j\nstages:\n  i: {uses: ingest, with: {source: 'x/*.csv', schemas: {a: int}}}\n"
    )
    return tmp_path


def _no_credentials_env(tmp_path: Path) -> dict[str, str]:
    return {
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_MAX_ATTEMPTS": "1",
    }


DRIFT = ["monitor", "drift", "--inline"]
INFER = ["infer", "--model", "model.json"]

CASES = [
    Case(
        "output under a file",
        lambda p: [*DRIFT, "--reference", "ref", "--current", "ref", "--json", "a_file/x/d.json"],
        3,
        ("cannot write `a_file/x/d.json` (`--json`)", "is a file, not a folder", "Hint:"),
    ),
    Case(
        "generate into a file",
        lambda p: ["generate", "--out", "a_file/data"],
        3,
        ("(`--out`)", "is a file, not a folder"),
    ),
    Case(
        "infer output under a file",
        lambda p: [*INFER, "--input", "plain", "--output", "a_file/scores"],
        3,
        ("(`--output`)", "is a file, not a folder"),
    ),
    Case(
        "s3 without credentials",
        lambda p: [
            *DRIFT,
            "--reference",
            "s3://bucket/ref",
            "--current",
            "ref",
            "--json",
            "d.json",
        ],
        3,
        ("no AWS credentials", "`s3://bucket/ref` (`--reference`)", "Hint:", "AWS_PROFILE"),
    ),
    Case(
        "strings where numbers are expected",
        lambda p: [*DRIFT, "--reference", "ref", "--current", "strings", "--json", "d.json"],
        3,
        ("`a`: expected numeric (double)", "received categorical (string) in `strings`"),
    ),
    Case(
        "missing current dataset",
        lambda p: [*DRIFT, "--reference", "ref", "--current", "nothere", "--json", "d.json"],
        3,
        ("`nothere` (`--current`) not found",),
        never_says=("did not finish",),
    ),
    Case(
        "missing data to check",
        lambda p: ["data", "check", "--data", "nothere", "--rules", "rules_list.yaml"],
        3,
        ("`nothere` (`--data`) not found",),
    ),
    Case(
        "empty current dataset",
        lambda p: [*DRIFT, "--reference", "ref", "--current", "empty", "--json", "d.json"],
        3,
        ("`empty` (`--current`) has no rows", "`--allow-empty`"),
    ),
    Case(
        "empty input to score",
        lambda p: [*INFER, "--input", "empty_plain", "--output", "scores"],
        3,
        ("`empty_plain` (`--input`) has no rows", "`--allow-empty`"),
    ),
    Case(
        "truncated Parquet file",
        lambda p: [*INFER, "--input", "truncated", "--output", "scores"],
        3,
        ("truncated/part-000.parquet", "is not readable Parquet", "--on-bad-file quarantine"),
    ),
    Case(
        "rules as a plain list",
        lambda p: ["data", "check", "--data", "ref", "--rules", "rules_list.yaml"],
        2,
        ("expected a mapping with a `rules:` key, received a list of 1 item(s)", "Hint:"),
    ),
    Case(
        "a model that is not a model",
        lambda p: ["infer", "--model", "not_a_model.json", "--input", "plain", "--output", "s"],
        6,
        ("`not_a_model.json` is not a valid XGBoost model",),
    ),
    Case(
        "registry model from a folder without a registry",
        lambda p: [
            "infer",
            "--model",
            "models:/churn@champion",
            "--input",
            "plain",
            "--output",
            "s",
        ],
        6,
        ("needs a model registry, and there is none", "`--tracking-uri`"),
    ),
    Case(
        "ingest's accepted keys name `schema`",
        lambda p: ["validate", "ingest.yaml"],
        2,
        ("`stages.i.with.schemas`: unknown key", "expected one of: format, infer,", "schema,"),
    ),
]


def _files(root: Path) -> set[Path]:
    return {path.relative_to(root) for path in root.rglob("*")}


def _command_options(args: list[str]) -> set[str]:
    """Every option of the (sub)command ``args`` names, and the global ``--debug``."""
    command = typer.main.get_command(app)
    for token in args:
        commands = getattr(command, "commands", None)
        if not commands or token not in commands:
            break
        command = commands[token]
    return {opt for param in command.params for opt in param.opts} | {"--debug", "--help"}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No AWS identity from this machine, and no cached S3 filesystem from another test.

    ``main`` points the root logger at this test's captured stderr; it is put back after.
    """
    import logging

    import s3fs

    handlers = list(logging.getLogger().handlers)

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for name, value in _no_credentials_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    yield
    s3fs.S3FileSystem.clear_instance_cache()
    logging.getLogger().handlers[:] = handlers


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_one_clear_error_and_leaves_nothing(
    case: Case, workspace: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _files(workspace)
    args = case.args(workspace)
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    err = " ".join((captured.err + captured.out).split())
    assert info.value.code == case.exit_code, err
    for text in case.says:
        assert text in err
    for text in case.never_says:
        assert text not in err
    assert "Traceback" not in err
    assert "error:" in err
    unknown = set(OPTION.findall(err)) - _command_options(args)
    assert not unknown, f"the message names options that do not exist: {unknown}"
    assert _files(workspace) == before, "a failed command left files behind"


def test_wrong_bucket_names_the_bucket(
    workspace: Path,
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.support.s3 import moto_s3

    with moto_s3() as s3:
        s3.create_bucket("real")
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint_url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        for args, option in (
            (
                [
                    *DRIFT,
                    "--reference",
                    "s3://nobucket/ref",
                    "--current",
                    "ref",
                    "--json",
                    "d.json",
                ],
                "--reference",
            ),
            (
                [
                    *DRIFT,
                    "--reference",
                    "ref",
                    "--current",
                    "ref",
                    "--json",
                    "s3://nobucket/d.json",
                ],
                "--json",
            ),
            ([*INFER, "--input", "plain", "--output", "s3://nobucket/scores"], "--output"),
        ):
            with pytest.raises(SystemExit) as info:
                main(args)
            err = " ".join(capsys.readouterr().err.split())
            assert info.value.code == 3, err
            assert "bucket `nobucket` of `s3://nobucket/" in err
            assert f"(`{option}`) does not exist" in err
            assert "Traceback" not in err
    assert not (workspace / "d.json").exists()


def test_empty_inputs_pass_with_allow_empty_and_say_so(
    workspace: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    main([*DRIFT, "--reference", "ref", "--current", "empty", "--json", "d.json", "--allow-empty"])
    out = " ".join(capsys.readouterr().out.split())
    assert "warning: `empty` (`--current`) has no rows" in out
    assert (workspace / "d.json").exists()


def test_an_unexpected_failure_is_one_line_and_the_traceback_needs_debug(
    workspace: Path,
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import raypipe.io.sources

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("something deep broke")

    monkeypatch.setattr(raypipe.io.sources, "open_dataset", broken)
    args = [*DRIFT, "--reference", "ref", "--current", "ref", "--json", "d.json"]
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err
    assert info.value.code == 1
    assert "unexpected ValueError: something deep broke" in err
    assert "`--debug`" in err
    assert "Traceback" not in err
    with pytest.raises(SystemExit):
        main([*args, "--debug"])
    assert "Traceback" in capsys.readouterr().err
