"""The driver reads inputs pinned to a kept version (`<stage>.<output>@<version>`) and keeps the
job's number of versions; a foreign folder where an output goes is refused before the stage runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from raypipe.driver import JobFailedError, RunOptions, run_job
from raypipe.engine.inline import InlineBackend
from raypipe.errors import SpecError
from raypipe.io.manifest import list_versions
from raypipe.spec import load_job
from tests.support.fake_stages import RUN_LOG, fake_kinds  # noqa: F401 - fixture

pytestmark = pytest.mark.usefixtures("fake_kinds")

SPEC = """\
name: pinned
data_dir: {data_dir}
keep_versions: {keep}
stages:
  make: {{uses: test.make, with: {{rows: {rows}, parts: 2}}}}
  left: {{uses: test.double, inputs: {{data: {reference}}}}}
"""


def _run(tmp_path: Path, *, rows: int, reference: str = "make.data", keep: int = 2):
    spec = tmp_path / "pinned.yaml"
    spec.write_text(
        SPEC.format(data_dir=tmp_path / "data", rows=rows, reference=reference, keep=keep)
    )
    job = load_job(spec, env={})
    return run_job(
        job,
        backend=InlineBackend(),
        options=RunOptions(),
    )


def test_an_input_pinned_to_a_kept_version_reads_that_version(tmp_path: Path) -> None:
    first = _run(tmp_path, rows=30)
    old = first.stages["make"].outputs["data"].version
    second = _run(tmp_path, rows=40)
    assert second.stages["make"].outputs["data"].version != old
    pinned = _run(tmp_path, rows=40, reference=f"make.data@{old[:10]}")
    assert pinned.stages["left"].inputs["data"].version == old
    assert pinned.stages["left"].rows_in == 30
    # The stage reads its input by URL: the driver's pin makes that the old version too.
    assert pinned.stages["left"].metrics["sum"] == 2 * sum(range(30))


def test_the_job_sets_how_many_versions_an_output_keeps(tmp_path: Path) -> None:
    for rows in (10, 20, 30, 40):
        record = _run(tmp_path, rows=rows, keep=2)
    url = record.stages["make"].outputs["data"].url
    # Versions past `keep_versions` stay for the grace period; the newest two are the kept ones.
    assert [manifest.rows for manifest in list_versions(url)][:2] == [40, 30]


def test_a_version_that_is_not_kept_fails_the_stage_clearly(tmp_path: Path) -> None:
    _run(tmp_path, rows=30)
    with pytest.raises(JobFailedError, match="not a kept version"):
        _run(tmp_path, rows=30, reference="make.data@deadbeefdead")


def test_a_malformed_pin_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="@<version>"):
        _run(tmp_path, rows=30, reference="make.data@")


def test_a_foreign_folder_at_an_output_is_refused_before_the_stage_runs(tmp_path: Path) -> None:
    output = tmp_path / "data" / "jobs" / "pinned" / "datasets" / "make" / "data"
    output.mkdir(parents=True)
    (output / "mine.parquet").write_bytes(b"a user's file")
    with pytest.raises(JobFailedError, match="raypipe did not write"):
        _run(tmp_path, rows=30)
    assert "make" not in RUN_LOG
    assert (output / "mine.parquet").read_bytes() == b"a user's file"
