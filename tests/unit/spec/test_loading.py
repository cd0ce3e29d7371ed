from __future__ import annotations

from pathlib import Path

import pytest

from raypipe.errors import SpecError
from raypipe.spec import load_job
from tests.support.fake_stages import fake_kinds  # noqa: F401 - fixture

pytestmark = pytest.mark.usefixtures("fake_kinds")

GOOD = """\
name: demo
data_dir: ${DATA_ROOT:-/tmp/raypipe-test}/x
stages:
  make:   {uses: test.make, with: {rows: 20}}
  double: {uses: test.double, inputs: {data: make.data}, with: {factor: 3}}
env: [DATA_ROOT]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def test_good_spec_resolves_in_dependency_order(tmp_path: Path) -> None:
    job = load_job(write(tmp_path, GOOD), env={})
    assert [stage.name for stage in job.stages] == ["make", "double"]
    assert job.data_dir == "/tmp/raypipe-test/x"
    assert job.stage("double").options.factor == 3
    assert str(job.stage("double").inputs["data"]) == "make.data"


def test_env_is_expanded_and_overrides_apply(tmp_path: Path) -> None:
    job = load_job(
        write(tmp_path, GOOD),
        env={"DATA_ROOT": "memory://root"},
        overrides=["stages.make.with.rows=5000", "stages.double.with.factor=7"],
    )
    assert job.data_dir == "memory://root/x"
    assert job.stage("make").options.rows == 5000
    assert job.stage("double").options.factor == 7


def test_every_problem_is_listed_with_file_line_and_path(tmp_path: Path) -> None:
    bad = """\
name: demo
data_dir: ${NOPE}
colour: blue
stages:
  make:   {uses: test.make, with: {rows: -1, colums: 3}}
  double: {uses: test.double, inputs: {data: missing.data, other: make.data}}
  typo:   {uses: test.mkae}
env: [NOPE]
"""
    with pytest.raises(SpecError) as info:
        load_job(write(tmp_path, bad), env={})
    text = "\n".join(info.value.problems)
    assert "job.yaml:3 `colour`: unknown key" in text
    assert "job.yaml:2 `data_dir`: environment variable `NOPE` is not set" in text
    assert ":5 `stages.make.with.rows`" in text and "greater than or equal to 0" in text
    assert ":5 `stages.make.with.colums`: unknown key; expected one of: fail, parts, rows" in text
    assert "unknown stage `missing`" in text
    assert "has no input `other`" in text
    assert ":7 `stages.typo.uses`: unknown stage kind `test.mkae`" in text
    assert len(info.value.problems) == 7


def test_cycles_and_missing_outputs_are_reported(tmp_path: Path) -> None:
    cyclic = """\
name: demo
stages:
  a: {uses: test.double, inputs: {data: b.data}}
  b: {uses: test.double, inputs: {data: a.data}}
  c: {uses: test.double, inputs: {data: a.nothing}}
"""
    with pytest.raises(SpecError) as info:
        load_job(write(tmp_path, cyclic), env={})
    text = "\n".join(info.value.problems)
    assert "cycle" in text
    assert "has no output `nothing`" in text


def test_required_input_missing(tmp_path: Path) -> None:
    spec = "name: demo\nstages:\n  d: {uses: test.double}\n"
    with pytest.raises(SpecError, match="needs input `data`"):
        load_job(write(tmp_path, spec), env={})


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"job.yaml:\d+: invalid YAML"):
        load_job(write(tmp_path, "name: x\nstages: [\n"), env={})
    with pytest.raises(SpecError, match="cannot read"):
        load_job(tmp_path / "absent.yaml")


def test_malformed_override(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"expected `key\.path=value`"):
        load_job(write(tmp_path, GOOD), env={}, overrides=["stages.make.with.rows"])
