"""Stage kinds from other packages: entry points and `package.module:Class`, checked like ours."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from raypipe.cli.main import main
from raypipe.driver import RunOptions, StageStatus, run_job
from raypipe.engine.inline import InlineBackend
from raypipe.errors import SpecError
from raypipe.spec import load_job
from raypipe.stages.registry import StageKindError, installed_kinds, known_kinds, load_stage
from tests.support.plugin_package import PACKAGE, PluginPackage

pytestmark = pytest.mark.usefixtures("plugin_package")

JOB = """\
name: plugins
data_dir: {data_dir}
stages:
  squares: {{uses: plugin.squares, with: {{rows: 6, parts: 3}}}}
  total:   {{uses: {total}, inputs: {{data: squares.data}}}}
"""


def write_job(tmp_path: Path, total: str = "plugin.total") -> Path:
    spec = tmp_path / "job.yaml"
    spec.write_text(JOB.format(data_dir=tmp_path / "data", total=total))
    return spec


def run(spec: Path, *overrides: str):
    return run_job(
        load_job(spec, overrides=overrides, env={}),
        backend=InlineBackend(),
        driver_node=lambda: "node-0",
        options=RunOptions(),
    )


def test_installed_kinds_are_known_and_load_like_built_in_ones() -> None:
    assert installed_kinds() == {
        "plugin.squares": f"{PACKAGE}.stages:SquaresStage",
        "plugin.total": f"{PACKAGE}.stages:TotalStage",
    }
    assert {"plugin.squares", "plugin.total", "ingest"} <= set(known_kinds())
    assert load_stage("plugin.total").inputs == ("data",)
    assert load_stage(f"{PACKAGE}.stages:TotalStage") is load_stage("plugin.total")


@pytest.mark.parametrize("total", ["plugin.total", f"{PACKAGE}.stages:TotalStage"])
def test_a_job_of_plugin_kinds_runs(tmp_path: Path, total: str) -> None:
    record = run(write_job(tmp_path, total))
    assert record.status == StageStatus.SUCCEEDED
    assert record.stages["squares"].rows_out == 6
    assert record.stages["total"].metrics["total"] == sum(v * v for v in range(6))
    assert record.stages["total"].kind == total


def test_plugin_options_and_wiring_are_checked_with_file_and_line(tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(
        "name: plugins\nstages:\n"
        "  squares: {uses: plugin.squares, with: {rowz: 3}}\n"
        "  total: {uses: plugin.total, inputs: {data: squares.nothing, more: squares.data}}\n"
        "  lonely: {uses: plugin.total}\n"
    )
    with pytest.raises(SpecError) as info:
        load_job(spec, env={})
    text = "\n".join(info.value.problems)
    assert (
        "job.yaml:3 `stages.squares.with.rowz`: unknown key; expected one of: parts, rows" in text
    )
    assert "stage `squares` (plugin.squares) has no output `nothing`; outputs: data" in text
    assert "`plugin.total` has no input `more`; expected: data" in text
    assert (
        "job.yaml:5 `stages.lonely.inputs`: stage `lonely` (plugin.total) needs input `data`"
        in text
    )


@pytest.mark.parametrize(
    ("uses", "message", "hint"),
    [
        (
            "plugin.sqaures",
            "unknown stage kind `plugin.sqaures`; expected one of: ",
            "named `package.module:Class`",
        ),
        (
            "no_such_package.stages:Thing",
            "no module `no_such_package.stages` (`no_such_package` is not installed",
            "install the package that provides it",
        ),
        (
            f"{PACKAGE}.broken:Stage",
            f"importing `{PACKAGE}.broken` failed: ModuleNotFoundError",
            f"install `raypipe_test_missing_dependency`, which `{PACKAGE}.broken` imports",
        ),
        (
            f"{PACKAGE}.stages:SquareStage",
            f"module `{PACKAGE}.stages` has no `SquareStage`",
            "stage classes in `raypipe_test_plugin.stages`: LooseOptionsStage, SquaresStage, "
            "TotalStage, VersionedStage",
        ),
        (
            f"{PACKAGE}.stages:NotAStage",
            "is not a stage class: expected a subclass of `raypipe.stages.Stage`, received "
            f"class `{PACKAGE}.stages.NotAStage`",
            "subclass `raypipe.stages.Stage`",
        ),
        (
            f"{PACKAGE}.stages:LooseOptionsStage",
            "`options` must be a `StageOptions` subclass, received class `builtins.dict`",
            "set `options` to a `raypipe.stages.StageOptions` subclass",
        ),
    ],
)
def test_a_bad_uses_is_located_and_explained(
    tmp_path: Path, uses: str, message: str, hint: str
) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(f"name: plugins\nstages:\n  a: {{uses: '{uses}'}}\n")
    with pytest.raises(StageKindError) as direct:
        load_stage(uses)
    assert message in direct.value.message and hint in direct.value.hint
    with pytest.raises(SpecError) as info:
        load_job(spec, env={})
    [problem] = info.value.problems
    assert "job.yaml:3 `stages.a.uses`: " in problem
    assert message in problem and f"hint: {direct.value.hint}" in problem


def test_validate_lists_installed_kinds_among_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text("name: plugins\nstages:\n  a: {uses: plugin.sqaures}\n")
    with pytest.raises(SystemExit) as info:
        main(["validate", str(spec)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown stage kind `plugin.sqaures`" in err
    assert "plugin.squares" in err and "plugin.total" in err and "ingest" in err


def test_editing_a_stage_module_reruns_its_stages(
    tmp_path: Path, plugin_package: PluginPackage
) -> None:
    spec = write_job(tmp_path)
    first = run(spec)
    again = run(spec)
    assert all(stage.cached for stage in again.stages.values())

    plugin_package.edit("OFFSET = 0", "OFFSET = 1")
    edited = run(spec)
    assert not edited.stages["squares"].cached and not edited.stages["total"].cached
    assert edited.stages["squares"].fingerprint != first.stages["squares"].fingerprint


def test_a_declared_version_decides_instead_of_the_source(
    tmp_path: Path, plugin_package: PluginPackage
) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(
        f"name: versioned\ndata_dir: {tmp_path / 'data'}\n"
        f"stages:\n  v: {{uses: '{PACKAGE}.stages:VersionedStage'}}\n"
    )
    first = run(spec)
    plugin_package.edit("OFFSET = 0", "OFFSET = 1")
    assert run(spec).stages["v"].cached  # source changed, declared version did not

    plugin_package.edit('version = "1"', 'version = "2"')
    importlib.reload(sys.modules[f"{PACKAGE}.stages"])  # as a new process would import it
    bumped = run(spec)
    assert not bumped.stages["v"].cached
    assert bumped.stages["v"].fingerprint != first.stages["v"].fingerprint
