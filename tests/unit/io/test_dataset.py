from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raypipe.errors import DatasetNotCommittedError
from raypipe.io.dataset import (
    DatasetWriter,
    iter_batches,
    read_dataset,
    scan_dataset,
    write_dataset,
)
from raypipe.io.manifest import MANIFEST_NAME, read_manifest


def _sorted(table: pa.Table) -> list[dict[str, object]]:
    return sorted(table.to_pylist(), key=repr)


def _table() -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(8), pa.int64()),
            "country": ["DE", "a/b", "x=%", None, "DE", "日本", "", "a/b"],
            "day": pa.array([dt.date(2024, 1, 1 + i % 2) for i in range(8)], pa.date32()),
            "score": pa.array([0.5 * i for i in range(8)], pa.float64()),
        }
    )


def test_partitioned_round_trip_restores_partition_columns_with_their_type(
    tmp_path: Path,
) -> None:
    url = str(tmp_path / "ds")
    manifest = write_dataset(url, _table(), partition_by=["country", "day"])
    back = read_dataset(url)
    assert back.schema == _table().schema
    assert _sorted(back) == _sorted(_table())
    assert manifest.rows == 8 and manifest.partition_by == ("country", "day")
    first = manifest.files[0]
    stored = pq.read_table(tmp_path / "ds" / first.path)
    assert "country" not in stored.column_names and "day" not in stored.column_names
    assert any("__HIVE_DEFAULT_PARTITION__" in entry.path for entry in manifest.files)


def test_files_are_zstd_without_dictionary_on_floats(tmp_path: Path) -> None:
    manifest = write_dataset(str(tmp_path / "ds"), _table())
    metadata = pq.ParquetFile(tmp_path / "ds" / manifest.files[0].path).metadata
    columns = {
        metadata.schema.column(i).name: metadata.row_group(0).column(i)
        for i in range(metadata.num_columns)
    }
    assert all(column.compression == "ZSTD" for column in columns.values())
    assert not any("DICTIONARY" in enc for enc in columns["score"].encodings)


def test_columns_whose_values_repeat_get_a_dictionary_and_unique_ids_do_not(
    tmp_path: Path,
) -> None:
    rows = 10_000
    table = pa.table(
        {
            "player_id": pa.array(range(10**9, 10**9 + rows), pa.int64()),
            "level": pa.array([i % 7 for i in range(rows)], pa.int64()),
            "country": pa.array([("de", "fr", "jp")[i % 3] for i in range(rows)]),
            "name": pa.array([f"player-{i}" for i in range(rows)]),
        }
    )
    manifest = write_dataset(str(tmp_path / "ds"), table)
    metadata = pq.ParquetFile(tmp_path / "ds" / manifest.files[0].path).metadata
    dictionary = {
        metadata.schema.column(i).name: any(
            "DICTIONARY" in encoding for encoding in metadata.row_group(0).column(i).encodings
        )
        for i in range(metadata.num_columns)
    }
    assert dictionary == {"player_id": False, "level": True, "country": True, "name": False}
    assert read_dataset(str(tmp_path / "ds")).equals(table)


def test_large_partition_is_split_by_target_file_bytes(tmp_path: Path) -> None:
    table = pa.table({"x": pa.array(range(10_000), pa.int64())})
    manifest = write_dataset(str(tmp_path / "ds"), table, target_file_bytes=20_000)
    assert len(manifest.files) == 4
    assert read_dataset(str(tmp_path / "ds"))["x"].to_pylist() == list(range(10_000))


def test_version_depends_on_content_only(tmp_path: Path) -> None:
    one = write_dataset(str(tmp_path / "a"), _table(), partition_by=["country"])
    two = write_dataset(str(tmp_path / "b"), _table(), partition_by=["country"])
    again = write_dataset(str(tmp_path / "a"), _table(), partition_by=["country"])
    assert one.version == two.version == again.version
    assert {e.path for e in one.files} != {e.path for e in two.files}
    # The same content again reuses the committed files, so readers of it are never disturbed.
    assert {e.path for e in one.files} == {e.path for e in again.files}
    changed = _table().set_column(0, "id", pa.array(range(1, 9), pa.int64()))
    other = write_dataset(str(tmp_path / "c"), changed, partition_by=["country"])
    assert other.version != one.version


def test_reader_refuses_an_uncommitted_dataset(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    DatasetWriter(url).write(_table(), part=0)
    with pytest.raises(DatasetNotCommittedError, match="no committed manifest") as info:
        read_dataset(url)
    assert "rerun the stage" in str(info.value)


def test_reader_refuses_missing_or_resized_files(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    manifest = write_dataset(url, _table(), partition_by=["country"])
    path = tmp_path / "ds" / manifest.files[0].path
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetNotCommittedError, match="bytes"):
        read_dataset(url)
    path.unlink()
    with pytest.raises(DatasetNotCommittedError, match="missing"):
        read_dataset(url)


def test_hash_verification_catches_same_size_tampering(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    manifest = write_dataset(url, _table())
    path = tmp_path / "ds" / manifest.files[0].path
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetNotCommittedError, match="SHA-256"):
        read_dataset(url, verify="hash")


def test_commit_collects_stale_files_of_a_failed_attempt(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    writer = DatasetWriter(url)
    stale = writer.write(_table(), part=0)  # attempt that never commits
    manifest = writer.commit(writer.write(_table(), part=0))
    on_disk = {
        os.path.relpath(os.path.join(root, name), url)
        for root, _, names in os.walk(url)
        for name in names
    }
    assert on_disk == {
        MANIFEST_NAME,
        "_lease.lock",
        f"_versions/{manifest.version}.json",
        *(e.path for e in manifest.files),
    }
    assert not (tmp_path / "ds" / stale[0].path).exists()


def test_commit_from_several_tasks_and_replacement(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    writer = DatasetWriter(url, partition_by=["country"])
    table = _table()
    entries = [e for i in range(2) for e in writer.write(table.slice(4 * i, 4), part=i)]
    first = writer.commit(entries, metadata={"k": 1})
    assert read_manifest(url).metadata == {"k": 1}
    assert _sorted(read_dataset(url)) == _sorted(table)
    second = write_dataset(url, table.slice(0, 2), partition_by=["country"])
    assert second.version != first.version and read_dataset(url).num_rows == 2


def test_empty_dataset_keeps_its_schema(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    empty = _table().slice(0, 0)
    manifest = write_dataset(url, empty, partition_by=["country"])
    assert manifest.rows == 0
    assert read_dataset(url).schema == empty.schema
    assert scan_dataset(url).collect().columns == empty.column_names
    assert list(iter_batches(url)) == []
    plain = DatasetWriter(str(tmp_path / "plain"))
    assert plain.commit(plain.write(empty, part=0)).schema == empty.schema


def test_scan_iter_and_columns(tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    write_dataset(url, _table(), partition_by=["country"])
    frame = scan_dataset(url, columns=["id", "country"]).collect()
    assert frame.schema == pl.Schema({"id": pl.Int64, "country": pl.String})
    assert sorted(frame.rows()) == sorted((r["id"], r["country"]) for r in _table().to_pylist())
    batches = list(iter_batches(url, columns=["country", "score"], batch_rows=1))
    assert all(b.num_rows == 1 for b in batches) and len(batches) == 8
    assert read_dataset(url, columns=["score"]).column_names == ["score"]


def test_memory_filesystem_round_trip() -> None:
    url = "memory://raypipe-tests/ds"
    write_dataset(url, _table(), partition_by=["day"])
    assert _sorted(read_dataset(url)) == _sorted(_table())
    assert _sorted(scan_dataset(url).collect().to_arrow()) == _sorted(
        pl.from_arrow(_table()).to_arrow()  # type: ignore[union-attr]
    )
    assert read_manifest(url).rows == 8


rows = st.lists(
    st.tuples(
        st.none() | st.sampled_from(["a", "b/c", "", "%=", "é"]),
        st.none() | st.integers(-3, 3),
        st.none() | st.floats(allow_nan=False, width=64),
    ),
    max_size=12,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=rows, partition=st.sampled_from([(), ("key",), ("key", "num")]))
def test_write_read_round_trip_property(
    tmp_path: Path, data: list[tuple[object, ...]], partition: tuple[str, ...]
) -> None:
    schema = pa.schema([("key", pa.string()), ("num", pa.int32()), ("value", pa.float64())])
    table = pa.Table.from_pylist(
        [dict(zip(schema.names, row, strict=True)) for row in data], schema=schema
    )
    url = f"memory://prop/{len(data)}-{'-'.join(partition)}"
    manifest = write_dataset(url, table, partition_by=partition)
    back = read_dataset(url)
    assert back.schema == schema
    assert _sorted(back) == _sorted(table)
    assert manifest.rows == len(data)
    assert write_dataset(url, table, partition_by=partition).version == manifest.version


def test_writer_is_picklable_and_entries_survive_a_round_trip(tmp_path: Path) -> None:
    import pickle
    from dataclasses import asdict

    from raypipe.io.manifest import FileEntry

    writer = pickle.loads(pickle.dumps(DatasetWriter(str(tmp_path / "ds"), partition_by=["day"])))
    entries = [FileEntry(**asdict(e)) for e in writer.write(_table(), part="task-1")]
    assert writer.commit(entries).rows == 8
