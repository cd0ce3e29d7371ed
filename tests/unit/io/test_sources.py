"""Readers take plain Parquet (a file, a folder, Hive partitions) as well as committed datasets."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raypipe.errors import DataError, DatasetNotCommittedError
from raypipe.io.dataset import DatasetWriter, iter_batches, read_dataset, scan_dataset
from raypipe.io.sources import PLAIN_SOURCE, open_dataset


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": range(12),
            "score": [i / 10 for i in range(12)],
            "country": ["DE", "FR", "a b"] * 4,
            "day": [1, 2] * 6,
        }
    )


def _rows(table: pa.Table) -> list[tuple[object, ...]]:
    frame = table.to_pandas()[["id", "score", "country", "day"]]
    return sorted(tuple(row) for row in frame.itertuples(index=False))


def test_hive_partitions_written_by_pandas(tmp_path: Path) -> None:
    url = str(tmp_path / "hive")
    _frame().to_parquet(url, partition_cols=["country", "day"])
    manifest = open_dataset(url)
    assert manifest.metadata == {"source": PLAIN_SOURCE}
    assert set(manifest.partition_by) == {"country", "day"}
    assert manifest.schema.field("day").type == pa.int64()
    expected = sorted(tuple(row) for row in _frame().itertuples(index=False))
    assert _rows(read_dataset(url)) == expected
    assert scan_dataset(url).collect().height == 12
    assert sum(batch.num_rows for batch in iter_batches(url)) == 12


def test_a_single_file_and_a_folder_of_files(tmp_path: Path) -> None:
    (tmp_path / "flat").mkdir()
    frame = _frame()
    frame.iloc[:5].to_parquet(tmp_path / "flat" / "a.parquet")
    frame.iloc[5:].to_parquet(tmp_path / "flat" / "b.parquet")
    (tmp_path / "flat" / "_SUCCESS").write_bytes(b"")
    (tmp_path / "flat" / ".hidden.parquet").write_bytes(b"skipped like Spark does")
    assert read_dataset(str(tmp_path / "flat")).num_rows == 12
    single = read_dataset(str(tmp_path / "flat" / "a.parquet"))
    assert single.num_rows == 5 and single.column_names == list(frame.columns)


def test_plain_version_changes_when_a_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), path)
    first = open_dataset(str(path)).version
    assert open_dataset(str(path)).version == first
    pq.write_table(pa.table({"x": [1, 2, 3]}), path)
    assert open_dataset(str(path)).version != first


def test_missing_empty_and_unfinished_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        open_dataset(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no Parquet files"):
        open_dataset(str(tmp_path / "empty"))
    DatasetWriter(str(tmp_path / "dead")).write(pa.table({"x": [1]}))
    with pytest.raises(DatasetNotCommittedError, match="writer did not finish"):
        read_dataset(str(tmp_path / "dead"))
