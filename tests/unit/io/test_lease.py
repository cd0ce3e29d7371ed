"""One writer per dataset, and folders raypipe did not write are refused before any work."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import time
from pathlib import Path

import pyarrow as pa
import pytest

from raypipe.io.dataset import DatasetWriter, read_dataset, write_dataset
from raypipe.io.lease import (
    LEASE_NAME,
    DatasetLease,
    DatasetLeaseError,
    ForeignFolderError,
    ensure_writable_dataset,
    held_lease,
    hold_dataset_leases,
)

FORK = multiprocessing.get_context("fork")


def _hold(url: str, ready: multiprocessing.synchronize.Event, stop: object) -> None:
    with DatasetLease(url, run_id="run-A"):
        ready.set()
        stop.wait(30)  # type: ignore[attr-defined]


def test_a_second_writer_is_refused_with_the_holder_named(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    ready, stop = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold, args=(url, ready, stop))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(DatasetLeaseError) as info:
            DatasetLease(url).acquire()
        message = str(info.value)
        assert f"pid {holder.pid}" in message and "run `run-A`" in message
        assert socket.gethostname() in message and "Hint:" in message
        with pytest.raises(DatasetLeaseError):  # a bare commit takes the lease too
            write_dataset(url, pa.table({"x": [1]}))
    finally:
        stop.set()
        holder.join(30)
    write_dataset(url, pa.table({"x": [1]}))  # released: the next writer goes ahead
    assert not (tmp_path / "ds" / LEASE_NAME).exists()


def test_the_lease_of_a_killed_writer_is_taken_over(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    ready, stop = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold, args=(url, ready, stop))
    holder.start()
    assert ready.wait(30)
    holder.kill()
    holder.join(30)  # reaped: its pid is gone
    assert (tmp_path / "ds" / LEASE_NAME).exists()
    assert write_dataset(url, pa.table({"x": [1, 2]})).rows == 2


def _foreign_lease(path: Path, *, expires_in: float) -> None:
    path.mkdir(parents=True, exist_ok=True)
    document = {
        "owner": {"host": "another-host", "pid": 1, "run_id": "r"},
        "token": "theirs",
        "expires_at": time.time() + expires_in,
    }
    (path / LEASE_NAME).write_text(json.dumps(document))


def test_a_live_lease_of_another_host_is_respected_and_an_expired_one_taken(
    tmp_path: Path,
) -> None:
    url = str(tmp_path / "ds")
    _foreign_lease(tmp_path / "ds", expires_in=60)
    with pytest.raises(DatasetLeaseError, match="another-host"):
        write_dataset(url, pa.table({"x": [1]}))
    _foreign_lease(tmp_path / "ds", expires_in=-1)
    assert write_dataset(url, pa.table({"x": [1]})).rows == 1


def test_the_lease_is_renewed_while_held(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    with DatasetLease(url, seconds=0.6) as lease:
        first = json.loads((tmp_path / "ds" / LEASE_NAME).read_text())["expires_at"]
        time.sleep(0.9)
        second = json.loads((tmp_path / "ds" / LEASE_NAME).read_text())["expires_at"]
        assert second > first
        lease.check()
    assert held_lease(url) is None


def test_a_writer_that_lost_its_lease_does_not_commit(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    writer = DatasetWriter(url)
    with DatasetLease(url):
        entries = writer.write(pa.table({"x": [1]}))
        _foreign_lease(tmp_path / "ds", expires_in=60)  # another host took it over
        with pytest.raises(DatasetLeaseError, match="lost its lease"):
            writer.commit(entries)
    assert (tmp_path / "ds" / LEASE_NAME).exists()  # theirs is left alone


def test_memory_filesystem_lease() -> None:
    url = "memory://lease-test/ds"
    with hold_dataset_leases([url], run_id="r1") as leases:
        assert held_lease(url) is leases[0]
        write_dataset(url, pa.table({"x": [1]}))  # nested in the held lease
    assert held_lease(url) is None


def test_a_folder_raypipe_did_not_write_is_refused_and_left_untouched(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "photo.parquet").write_bytes(b"precious")
    (folder / "_SUCCESS").write_bytes(b"")
    before = sorted(os.listdir(folder))
    with pytest.raises(ForeignFolderError) as info:
        ensure_writable_dataset(str(folder))
    assert "`photo.parquet`" in str(info.value) and "Hint:" in str(info.value)
    with pytest.raises(ForeignFolderError):
        write_dataset(str(folder), pa.table({"x": [1]}))
    both = [str(tmp_path / "new"), str(folder)]
    with pytest.raises(ForeignFolderError), hold_dataset_leases(both):
        pass
    assert sorted(os.listdir(folder)) == before
    assert (folder / "photo.parquet").read_bytes() == b"precious"
    assert not (tmp_path / "new").exists() or not os.listdir(tmp_path / "new")
    file_url = str(folder / "photo.parquet")
    with pytest.raises(ForeignFolderError, match="existing file"):
        ensure_writable_dataset(file_url)


def test_absent_empty_and_raypipe_folders_are_writable(tmp_path: Path) -> None:
    ensure_writable_dataset(str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    ensure_writable_dataset(str(tmp_path / "empty"))
    write_dataset(str(tmp_path / "ds"), pa.table({"x": [1]}))
    ensure_writable_dataset(str(tmp_path / "ds"))
    DatasetWriter(str(tmp_path / "dead")).write(pa.table({"x": [1]}))  # a first run that died
    ensure_writable_dataset(str(tmp_path / "dead"))
    assert write_dataset(str(tmp_path / "dead"), pa.table({"x": [2]})).rows == 1
    assert read_dataset(str(tmp_path / "dead"))["x"].to_pylist() == [2]


def test_a_nested_hold_is_given_back_by_the_outer_one(tmp_path: Path) -> None:
    """The driver holds a stage's outputs and `infer` holds its own again, in one process."""
    from raypipe.io.lease import LEASE_NAME, hold_dataset_leases

    url = str(tmp_path / "out")
    lease_file = tmp_path / "out" / LEASE_NAME
    with hold_dataset_leases([url], run_id="outer") as outer:
        with hold_dataset_leases([url]) as inner:
            assert inner[0] is outer[0]
        assert lease_file.exists(), "the outer hold still holds it"
        outer[0].check()
    assert not lease_file.exists(), "the lease is given back when the outer hold ends"
    with hold_dataset_leases([url], run_id="next"):  # a later writer takes it without a warning
        pass
