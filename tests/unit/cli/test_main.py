from __future__ import annotations

from pathlib import Path

import pytest

from raypipe.cli.main import main
from tests.support.fake_stages import fake_kinds  # noqa: F401 - fixture

pytestmark = pytest.mark.usefixtures("fake_kinds")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def test_validate_lists_problems_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write(tmp_path, "name: j\nstages:\n  a: {uses: test.make, with: {rowz: 1}}\n")
    with pytest.raises(SystemExit) as info:
        main(["validate", str(spec)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "job.yaml:3 `stages.a.with.rowz`: unknown key" in err
    assert "expected one of: fail, parts, rows" in err
    assert "Traceback" not in err


def test_validate_and_plan_a_good_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(
        tmp_path,
        "name: j\nstages:\n  a: {uses: test.make}\n"
        "  b: {uses: test.double, inputs: {data: a.data}}\n",
    )
    main(["validate", str(spec)])
    assert "valid job `j` with 2 stages" in capsys.readouterr().out
    main(["plan", str(spec), "--set", "stages.a.with.rows=3"])
    out = capsys.readouterr().out
    assert out.index("a  (test.make)") < out.index("b  (test.double)")
    assert "<- data = a.data" in out


def test_off_a_terminal_a_long_path_is_printed_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Output piped to a file or a CI log keeps a path a user copies in one piece."""
    deep = tmp_path.joinpath(*["a_folder_with_a_rather_long_name"] * 8)
    deep.mkdir(parents=True)
    spec = write(deep, "name: j\nstages:\n  a: {uses: test.make}\n")
    assert len(str(spec)) > 200
    main(["validate", str(spec)])
    assert f"ok: `{spec}` is a valid job `j` with 1 stages" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_run_with_a_data_dir_that_cannot_be_written_fails_in_one_line_before_ray(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from raypipe.engine.runtime import RayRuntime

    def no_ray(self: object) -> None:
        raise AssertionError("Ray must not start for a data_dir that cannot be written")

    monkeypatch.setattr(RayRuntime, "start", no_ray)
    spec = write(tmp_path, "name: j\nstages:\n  a: {uses: test.make}\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # root may write anywhere; under a file nobody can
    with pytest.raises(SystemExit) as info:
        main(["run", str(spec), "--data-dir", str(blocker / "data")])
    assert info.value.code == 3
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[0].startswith(f"error: data_dir `{blocker / 'data'}` is not writable")
    assert "Not a directory" in lines[0] or "exists" in lines[0]
    assert lines[1].startswith("Hint: pass a folder you can write with --data-dir")
    assert len(lines) == 2 and "Traceback" not in err
    assert blocker.read_text() == "not a folder"


def test_commands_are_registered_once_however_often_main_runs() -> None:
    """Repeated registration made every `main()` call in a test session slower than the last."""
    import raypipe.cli.main as cli_main

    for _ in range(3):
        try:
            cli_main.main(["version"])
        except SystemExit as exit_:
            assert exit_.code in (0, None)
    groups = [info.name for info in cli_main.app.registered_groups]
    assert len(groups) == len(set(groups))
    features = next(i for i in cli_main.app.registered_groups if i.name == "features")
    names = [c.name for c in features.typer_instance.registered_commands]
    assert len(names) == len(set(names))


def test_a_plain_typer_exception_is_said_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # typer's public base exception has no `show` (only its click subclasses do).
    import typer

    class Raising:
        def main(self, **kwargs: object) -> None:
            raise typer.TyperException("the option table is broken")

    monkeypatch.setattr(typer.main, "get_command", lambda app: Raising())
    with pytest.raises(SystemExit) as info:
        main(["validate", "job.yaml"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "the option table is broken" in err
    assert "Traceback" not in err
