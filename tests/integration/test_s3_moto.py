"""Datasets and ingest over ``s3://`` against moto's S3 server on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pyarrow as pa
import pytest

from raypipe.engine.inline import InlineBackend
from raypipe.errors import DatasetNotCommittedError
from raypipe.ingest.stage import IngestOptions, IngestStage
from raypipe.io.artifacts import read_artifact_file, write_artifact
from raypipe.io.dataset import DatasetWriter, read_dataset, scan_dataset, write_dataset
from raypipe.io.manifest import read_manifest
from raypipe.stages.base import StageContext

pytest.importorskip("moto.server")
pytest.importorskip("s3fs")

from tests.support.s3 import MotoS3, moto_s3

pytestmark = pytest.mark.s3

BUCKET = "raypipe-test"


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3]:
    with moto_s3() as server:
        server.create_bucket(BUCKET)
        yield server


def _table() -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(6), pa.int64()),
            "country": ["DE", "a/b", None, "DE", "x=%", "日本"],
            "day": pa.array([dt.date(2024, 1, 1 + i % 2) for i in range(6)], pa.date32()),
            "score": [0.1 * i for i in range(6)],
        }
    )


def test_partitioned_dataset_round_trips_over_s3(s3: MotoS3) -> None:
    url = f"s3://{BUCKET}/datasets/events"
    options = s3.storage_options
    with pytest.raises(DatasetNotCommittedError):
        read_dataset(url, storage_options=options)
    writer = DatasetWriter(url, partition_by=["country", "day"], storage_options=options)
    stale = writer.write(_table(), part=0)
    manifest = writer.commit(writer.write(_table(), part=0))
    again = write_dataset(url, _table(), partition_by=["country", "day"], storage_options=options)
    assert again.version == manifest.version
    assert read_manifest(url, options).rows == 6
    back = read_dataset(url, storage_options=options, verify="hash")
    assert back.schema == _table().schema
    assert sorted(back.to_pylist(), key=repr) == sorted(_table().to_pylist(), key=repr)
    frame = scan_dataset(url, storage_options=options).collect()
    assert sorted(frame["id"].to_list()) == list(range(6))
    import s3fs

    fs = s3fs.S3FileSystem(**options)
    assert not fs.exists(f"{BUCKET}/datasets/events/{stale[0].path}")


def test_artifact_over_s3(s3: MotoS3) -> None:
    url = f"s3://{BUCKET}/models/m1"
    write_artifact(url, {"model.json": b"{}"}, storage_options=s3.storage_options)
    assert read_artifact_file(url, "model.json", storage_options=s3.storage_options) == b"{}"


def test_ingest_from_and_to_s3(s3: MotoS3) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**s3.storage_options)
    fs.pipe_file(f"{BUCKET}/raw/a.csv", b"id,name\n1,ann\n2,bob\n")
    fs.pipe_file(f"{BUCKET}/raw/b.csv", b"id,name\n3,cy\n")
    context = StageContext(
        stage_name="raw",
        data_dir=f"s3://{BUCKET}/data",
        run_id="r1",
        backend=InlineBackend(),
        storage_options=s3.storage_options,
    )
    options = IngestOptions.model_validate(
        {"source": f"s3://{BUCKET}/raw/*.csv", "schema": {"id": "int64", "name": "string"}}
    )
    result = IngestStage().run(context, {}, options)
    assert result.rows_out == 3
    table = read_dataset(context.output_url("data"), storage_options=s3.storage_options)
    assert sorted(table["id"].to_pylist()) == [1, 2, 3]


def test_lease_is_a_conditional_create_on_s3(s3: MotoS3) -> None:
    """`If-None-Match: *` makes a second creator lose; an expired lease is taken over with
    `If-Match`; versions are kept over S3 as on disk."""
    import json
    import time

    import fsspec

    from raypipe.io.lease import LEASE_NAME, DatasetLease, DatasetLeaseError
    from raypipe.io.manifest import list_versions

    url = f"s3://{BUCKET}/leased/ds"
    options = s3.storage_options
    fs = fsspec.filesystem("s3", **options)
    theirs = {
        "owner": {"host": "another-host", "pid": 1, "run_id": "r"},
        "token": "theirs",
        "expires_at": time.time() + 60,
    }
    fs.pipe_file(f"{BUCKET}/leased/ds/{LEASE_NAME}", json.dumps(theirs).encode())
    with pytest.raises(DatasetLeaseError, match="another-host"):
        write_dataset(url, pa.table({"x": [1]}), storage_options=options)
    lease = DatasetLease(url, options)
    with pytest.raises(Exception, match=r"pre-conditions|PreconditionFailed|412"):
        # What a racing creator meets: the key exists, so the conditional create fails.
        fs.call_s3(
            "put_object",
            Bucket=BUCKET,
            Key=f"leased/ds/{LEASE_NAME}",
            Body=b"{}",
            IfNoneMatch="*",
        )
    theirs["expires_at"] = time.time() - 1
    fs.pipe_file(f"{BUCKET}/leased/ds/{LEASE_NAME}", json.dumps(theirs).encode())
    with lease:
        lease.check()
    for rows in (1, 2, 3):
        write_dataset(url, pa.table({"x": list(range(rows))}), storage_options=options)
    assert [m.rows for m in list_versions(url, options)] == [3, 2, 1]
    assert not fs.exists(f"{BUCKET}/leased/ds/{LEASE_NAME}")
