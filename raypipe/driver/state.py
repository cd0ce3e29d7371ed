"""What the driver keeps between runs in the job's folder, ``<data_dir>/jobs/<job>``.

- ``stages/<stage>.json``: the commit record of a stage's last successful run (fingerprint,
  outputs with versions, metrics). Written after every output is committed, so its presence
  means the stage finished; it is the cache.
- ``runs/<run_id>/run.json``: the run record, rewritten atomically as stages finish.
- ``runs/<run_id>/_driver/_lease.json``: the lease of the driver working on the run (see
  :meth:`DriverState.take_over`), so two ``--resume`` started at once cannot both take it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime, timezone

from raypipe.driver.record import RunRecord, StageRecord, StageStatus
from raypipe.errors import DataError, RaypipeError
from raypipe.io.fs import join_url, resolve_fs, write_bytes_atomic
from raypipe.io.lease import DatasetLease, DatasetLeaseError
from raypipe.redaction import redact_record
from raypipe.stages.base import job_data_url

__all__ = ["DriverState", "new_run_id"]


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a short random suffix."""
    now = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{uuid.uuid4().hex[:6]}"


class DriverState:
    """Reads and writes the records of job ``job`` in its folder of ``data_dir``."""

    def __init__(
        self, data_dir: str, job: str, storage_options: Mapping[str, object] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.job = job
        self.job_dir = job_data_url(data_dir, job)
        self.storage_options = dict(storage_options or {})

    def run_url(self, run_id: str) -> str:
        return join_url(self.job_dir, "runs", run_id, "run.json")

    def take_over(self, run_id: str) -> DatasetLease:
        """Become the one driver of run ``run_id``: its lease, held (and renewed) until released.

        The lease is taken with the store's compare-and-set (see :mod:`raypipe.io.lease`), so of
        two drivers started at once exactly one gets it; a killed driver's lease is taken over
        once it expires (at once on the same host).

        Raises
        ------
        RaypipeError
            Another live driver holds the run; the message names it.
        """
        lease = DatasetLease(
            join_url(self.job_dir, "runs", run_id, "_driver"), self.storage_options, run_id=run_id
        )
        try:
            return lease.acquire()
        except DatasetLeaseError as exc:
            holder = exc.message.partition(" is being written by ")[2] or exc.message
            raise RaypipeError(
                f"Run `{run_id}` of job `{self.job}` is already driven by {holder}",
                hint="wait for that driver to end or stop it (Ctrl-C in its terminal, or "
                "`raypipe jobs stop ID`); a killed driver's run can be resumed once its lease "
                "expires",
            ) from exc

    def stage_url(self, stage: str) -> str:
        return join_url(self.job_dir, "stages", f"{stage}.json")

    def check_writable(self) -> None:
        """Fail with one clear error, before any work, if the job's folder cannot be written.

        Creates the folder and writes, then removes, an empty probe file of its own.
        """
        try:
            fs, folder = resolve_fs(self.job_dir, self.storage_options)
            fs.makedirs(folder, exist_ok=True)
            probe = f"{folder.rstrip('/')}/.raypipe-write-check-{uuid.uuid4().hex[:8]}"
            fs.pipe_file(probe, b"")
            fs.rm_file(probe)
        except Exception as exc:  # any filesystem's failure: permissions, credentials, a file
            lines = str(exc).strip().splitlines()
            detail = getattr(exc, "strerror", None) or (lines[0] if lines else "")
            raise DataError(
                f"data_dir `{self.data_dir}` is not writable: cannot write in "
                f"`{self.job_dir}` ({type(exc).__name__}: {detail})",
                hint="pass a folder you can write with --data-dir, or fix its permissions; "
                "for s3:// and other object stores, check the credentials (e.g. AWS_PROFILE) "
                "or the spec's storage_options",
            ) from exc

    def write_run(self, record: RunRecord) -> str:
        url = self.run_url(record.run_id)
        self._write_atomic(url, record.to_json().encode())
        return url

    def read_run(self, run_id: str) -> RunRecord:
        return RunRecord.from_json(self._read(self.run_url(run_id)).decode())

    def latest_unfinished_run(self) -> RunRecord | None:
        """The newest run of the job if it did not succeed, for ``--resume``."""
        fs, root = resolve_fs(join_url(self.job_dir, "runs"), self.storage_options)
        if not fs.exists(root):
            return None
        for run_dir in sorted(fs.ls(root, detail=False), reverse=True):
            run_id = run_dir.rstrip("/").rsplit("/", 1)[-1]
            try:
                record = self.read_run(run_id)
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if record.job == self.job:
                return None if record.succeeded else record
        return None

    def write_stage_commit(self, record: StageRecord) -> None:
        # A record a person may read: an error text or a metric may name a URL with a password.
        text = json.dumps(redact_record(asdict(record)), default=str)
        self._write_atomic(self.stage_url(record.name), text.encode())

    def read_stage_commit(self, stage: str) -> StageRecord | None:
        try:
            data = json.loads(self._read(self.stage_url(stage)))
        except FileNotFoundError:
            return None
        record = StageRecord.from_dict(data)
        return record if record.status in StageStatus.FINISHED else None

    def _read(self, url: str) -> bytes:
        fs, path = resolve_fs(url, self.storage_options)
        with fs.open(path, "rb") as handle:
            data: bytes = handle.read()
        return data

    def _write_atomic(self, url: str, data: bytes) -> None:
        fs, path = resolve_fs(url, self.storage_options)
        write_bytes_atomic(fs, path, data)
