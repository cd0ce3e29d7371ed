"""Hostile job specs fail fast with a SpecError; `${ENV}` expands only declared variables."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from raypipe.errors import SpecError
from raypipe.spec import load_job
from tests.support.fake_stages import fake_kinds  # noqa: F401 - fixture

pytestmark = pytest.mark.usefixtures("fake_kinds")

ALIAS_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
name: bomb
"""

SMALL = """\
name: demo
data_dir: {data_dir}
stages:
  make: {{uses: test.make, with: {{rows: {rows}}}}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def load_fast(path: Path, **kwargs: object) -> SpecError:
    started = time.perf_counter()
    with pytest.raises(SpecError) as info:
        load_job(path, env={}, **kwargs)  # type: ignore[arg-type]
    assert time.perf_counter() - started < 1.0
    return info.value


def test_alias_bomb_fails_in_under_a_second(tmp_path: Path) -> None:
    error = load_fast(write(tmp_path, ALIAS_BOMB))
    assert "more than 100,000 values" in str(error) and "alias bomb" in str(error)
    assert "job.yaml:" in str(error)


def test_self_referencing_alias_is_an_error(tmp_path: Path) -> None:
    error = load_fast(write(tmp_path, "name: x\nloop: &l [1, *l]\n"))
    assert "refers to its own anchor" in str(error)


def test_depth_10000_nesting_is_a_clear_error(tmp_path: Path) -> None:
    deep = "name: x\nstages: " + "[" * 10_000 + "]" * 10_000 + "\n"
    error = load_fast(write(tmp_path, deep))
    assert "job.yaml:2: nesting is deeper than 64 levels" in str(error)


def test_integer_past_64_bits_is_an_error_not_null(tmp_path: Path) -> None:
    error = load_fast(write(tmp_path, SMALL.format(data_dir="/tmp/x", rows=2**70)))
    assert "job.yaml:4 `stages.make.with.rows`" in str(error)
    assert "outside the 64-bit range" in str(error)


def test_integer_past_64_bits_in_an_override_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL.format(data_dir="/tmp/x", rows=5))
    error = load_fast(path, overrides=[f"stages.make.with.rows={2**70}"])
    assert "outside the 64-bit range" in str(error)


def test_overlong_string_is_an_error(tmp_path: Path) -> None:
    error = load_fast(write(tmp_path, SMALL.format(data_dir="x" * 70_000, rows=5)))
    assert "longer than 65,536" in str(error)


def test_reasonable_anchors_still_work(tmp_path: Path) -> None:
    text = """\
name: demo
data_dir: /tmp/x
defaults: &rows {rows: 7}
stages:
  make: {uses: test.make, with: *rows}
"""
    # `defaults` is not a JobSpec key: the spec error is about that key, not the alias.
    error = load_fast(write(tmp_path, text))
    assert "`defaults`: unknown key" in str(error)


def test_undeclared_variable_is_not_expanded(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL.format(data_dir="s3://b/${AWS_SECRET_ACCESS_KEY}", rows=5))
    with pytest.raises(SpecError) as info:
        load_job(path, env={"AWS_SECRET_ACCESS_KEY": "sekret"})
    text = str(info.value)
    assert (
        "job.yaml:2 `data_dir`: environment variable `AWS_SECRET_ACCESS_KEY` is not declared"
        in text
    )
    assert "add `AWS_SECRET_ACCESS_KEY` to `env:`" in text
    assert "sekret" not in text


def test_undeclared_variable_with_default_is_also_refused(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL.format(data_dir="${HOME:-/tmp}/x", rows=5))
    with pytest.raises(SpecError, match="`HOME` is not declared"):
        load_job(path, env={"HOME": "/root"})


def test_declared_and_raypipe_variables_expand(tmp_path: Path) -> None:
    text = SMALL.format(data_dir="${RAYPIPE_DATA_DIR:-/tmp}/${BUCKET_DIR}", rows=5)
    path = write(tmp_path, text + "env: [BUCKET_DIR]\n")
    job = load_job(path, env={"RAYPIPE_DATA_DIR": "/data", "BUCKET_DIR": "churn"})
    assert job.data_dir == "/data/churn"


def test_env_list_must_hold_names(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL.format(data_dir="/tmp/x", rows=5) + "env: [OK, 'not a name']\n")
    with pytest.raises(SpecError, match="`not a name` is not an environment variable name"):
        load_job(path, env={})


def test_alias_bomb_in_an_override_fails_fast(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL.format(data_dir=tmp_path / "d", rows=3))
    bomb = "[" + ",".join(["*a"] * 9) + "]"
    value = (
        f"{{a: &a [1,2,3,4,5,6,7,8,9], b: &b {bomb}, "
        + ", ".join(
            f"{k}: &{k} [" + ",".join([f"*{p}"] * 9) + "]"
            for p, k in zip("bcdefgh", "cdefghi", strict=True)
        )
        + "}"
    )
    error = load_fast(path, overrides=[f"stages.make.with.rows={value}"])
    assert "--set" in str(error) and "alias bomb" in str(error)


@pytest.mark.parametrize("reader", ["rules", "views"])
def test_hostile_rules_and_feature_view_files_fail_fast(tmp_path: Path, reader: str) -> None:
    from raypipe.features.spec import load_views
    from raypipe.validation.rules import read_rules

    path = tmp_path / f"{reader}.yaml"
    path.write_text(ALIAS_BOMB)
    started = time.perf_counter()
    with pytest.raises(SpecError, match="alias bomb") as info:
        (read_rules if reader == "rules" else load_views)(path)
    assert time.perf_counter() - started < 1.0
    assert f"{reader}.yaml" in str(info.value)
    path.write_text("rules:\n" + "  " + "[" * 200 + "]" * 200 + "\n")
    with pytest.raises(SpecError, match="nesting is deeper"):
        (read_rules if reader == "rules" else load_views)(path)
