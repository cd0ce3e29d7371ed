"""Kept versions, pinned readers, ownership of files and clean-up of dead writers' leftovers."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from raypipe.errors import DatasetNotCommittedError
from raypipe.io.commit import DEFAULT_KEEP_VERSIONS
from raypipe.io.dataset import DatasetWriter, read_dataset, scan_dataset, write_dataset
from raypipe.io.lease import DatasetLease
from raypipe.io.manifest import MANIFEST_NAME, VERSIONS_DIR, list_versions, read_manifest


def _table(generation: int, rows: int = 6) -> pa.Table:
    return pa.table(
        {
            "gen": pa.array([generation] * (rows + generation), pa.int64()),
            "part": [f"p{i % 2}" for i in range(rows + generation)],
        }
    )


def _commit(url: str, generation: int, *, keep: int | None = None, grace: float = 0.0) -> None:
    writer = DatasetWriter(url, partition_by=["part"], keep_versions=keep, grace_seconds=grace)
    with DatasetLease(url):
        writer.commit(writer.write(_table(generation)), schema=_table(generation).schema)


def _files(root: Path) -> set[str]:
    return {
        os.path.relpath(os.path.join(folder, name), root)
        for folder, _, names in os.walk(root)
        for name in names
    }


def test_keeps_the_last_k_versions_and_lists_them_newest_first(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    for generation in range(5):
        _commit(url, generation, keep=3)
    kept = list_versions(url)
    assert [manifest.rows for manifest in kept] == [6 + 4, 6 + 3, 6 + 2]
    assert [manifest.sequence for manifest in kept] == [5, 4, 3]
    for manifest in kept:
        again = read_dataset(url, version=manifest.version[:8])
        assert again.num_rows == manifest.rows and len(set(again["gen"].to_pylist())) == 1
    listed = {entry.path for manifest in kept for entry in manifest.files}
    data_files = {path for path in _files(tmp_path / "ds") if path.startswith("_data/")}
    assert data_files == listed  # the retired versions' files are gone, nothing else


def test_versions_past_k_stay_readable_during_the_grace_period(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    for generation in range(4):
        _commit(url, generation, keep=1, grace=3600)
    assert len(list_versions(url)) == 4
    _commit(url, 9, keep=1, grace=0)
    assert [manifest.rows for manifest in list_versions(url)] == [15]
    assert DEFAULT_KEEP_VERSIONS == 3


def test_a_reader_pinned_to_the_old_version_survives_reruns(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    _commit(url, 0)
    opened = read_manifest(url)  # what a stage's DatasetInput holds
    _commit(url, 1)
    _commit(url, 2)
    table = read_dataset(url, files=list(opened.files))
    assert table.num_rows == 6 and set(table["gen"].to_pylist()) == {0}
    assert read_dataset(url)["gen"].to_pylist()[0] == 2
    assert scan_dataset(url, version=opened.version).collect().height == 6


def test_unknown_or_ambiguous_version_is_a_clear_error(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    _commit(url, 0)
    with pytest.raises(DatasetNotCommittedError, match="not a kept version") as info:
        read_manifest(url, version="ffffffffff")
    assert "raypipe data versions" in str(info.value)
    with pytest.raises(DatasetNotCommittedError, match="not a kept version"):
        read_manifest(url, version="ab")  # too short to name one


def test_same_content_again_reuses_the_committed_files(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    _commit(url, 0)
    first = read_manifest(url)
    _commit(url, 0)
    again = read_manifest(url)
    assert again.version == first.version and again.files == first.files
    assert again.sequence == first.sequence + 1
    assert len(list_versions(url)) == 1


def test_files_the_dataset_never_listed_are_never_deleted(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    _commit(url, 0)
    mine = tmp_path / "ds" / "notes.parquet"
    mine.write_bytes(b"a user's file inside a raypipe dataset folder")
    (tmp_path / "ds" / "keep" / "x.parquet").parent.mkdir()
    (tmp_path / "ds" / "keep" / "x.parquet").write_bytes(b"also theirs")
    for generation in range(1, 6):
        _commit(url, generation, keep=1)
    assert mine.read_bytes().startswith(b"a user's file")
    assert (tmp_path / "ds" / "keep" / "x.parquet").exists()


def test_old_layout_files_are_deleted_once_their_version_retires(tmp_path: Path) -> None:
    """A dataset written before ``_data/`` existed: its own listed files go, nothing else."""
    url = str(tmp_path / "ds")
    _commit(url, 0)
    manifest = read_manifest(url)
    root = tmp_path / "ds"
    for entry in manifest.files:  # move the files to where the old layout had them
        old = root / entry.path.removeprefix("_data/")
        old.parent.mkdir(parents=True, exist_ok=True)
        (root / entry.path).rename(old)
    legacy = manifest.to_json().replace('"_data/', '"')
    (root / MANIFEST_NAME).write_text(legacy)
    for path in (root / VERSIONS_DIR).iterdir():
        path.unlink()
    assert read_dataset(url).num_rows == 6
    stranger = root / "part=p0" / "theirs.parquet"
    stranger.write_bytes(b"not listed by any manifest")
    _commit(url, 1, keep=1)
    assert stranger.exists()
    assert not any(
        path.endswith(".parquet") and "theirs" not in path and not path.startswith("_data/")
        for path in _files(root)
    )


def test_next_commit_removes_what_dead_writers_left(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    _commit(url, 0)
    root = tmp_path / "ds"
    dead = DatasetWriter(url, partition_by=["part"]).write(_table(7))  # staged, never committed
    (root / f"{MANIFEST_NAME}.tmp-0123abcd").write_bytes(b"{half")
    (root / VERSIONS_DIR / "abc.json.tmp-99").write_bytes(b"{half")
    (root / "_lease.json.tmp-42").write_bytes(b"{half")
    _commit(url, 1)
    left = _files(root)
    assert not any(".tmp-" in path for path in left)
    assert not any(entry.path in left for entry in dead)
    listed = {entry.path for manifest in list_versions(url) for entry in manifest.files}
    assert {path for path in left if path.startswith("_data/")} == listed


def test_a_failed_write_leaves_nothing_a_plain_reader_sees(tmp_path: Path) -> None:
    url = str(tmp_path / "out")
    DatasetWriter(url, partition_by=["part"]).write(_table(1))  # the run dies before commit
    assert pads.dataset(url, format="parquet").files == []  # pyarrow skips `_` names
    _commit(url, 2)
    assert pads.dataset(url, format="parquet").files == []  # committed data is hidden too
    assert read_dataset(url).num_rows == 8


def test_commit_refuses_staged_files_that_vanished(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    writer = DatasetWriter(url)
    entries = writer.write(_table(0))
    (tmp_path / "ds" / entries[0].path).unlink()
    with pytest.raises(DatasetNotCommittedError, match="staged file"):
        writer.commit(entries, schema=_table(0).schema)
    with pytest.raises(DatasetNotCommittedError):
        read_manifest(url)


def test_memory_filesystem_keeps_versions() -> None:
    url = "memory://versions-test/ds"
    for generation in range(3):
        write_dataset(url, _table(generation))
    kept = list_versions(url)
    assert len(kept) == 3
    assert read_dataset(url, version=kept[-1].version)["gen"].to_pylist()[0] == 0


def _read_whole(url: str, _item: int) -> list[int]:
    """A task of a stage that reads its input by URL alone (as a Ray task would)."""
    return sorted(read_dataset(url)["gen"].to_pylist())


def test_a_task_started_on_v1_reads_v1_whole_while_a_rerun_commits_v2(tmp_path: Path) -> None:
    import functools
    import pickle
    import threading

    from raypipe.io.manifest import pinned_manifests, with_pins

    url = str(tmp_path / "ds")
    _commit(url, 0, keep=1, grace=3600)  # v1's files stay readable after v2 replaces it
    with pinned_manifests({url: read_manifest(url)}):  # the driver thread of the stage
        task = pickle.dumps(with_pins(functools.partial(_read_whole, url)))  # shipped to Ray
    _commit(url, 1, keep=1, grace=3600)  # the rerun commits v2 meanwhile
    seen: list[list[int]] = []
    worker = threading.Thread(target=lambda: seen.append(pickle.loads(task)(0)))  # no pins here
    worker.start()
    worker.join()
    assert seen == [[0] * 6]  # v1, whole: not v2's 7 rows of generation 1
    assert read_dataset(url)["gen"].to_pylist() == [1] * 7  # unpinned readers see v2
