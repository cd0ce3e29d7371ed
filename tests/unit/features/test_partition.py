"""Partition helpers: stable key hashing, clustered file groups, balanced bins."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from raypipe.features.partition import hash_partition
from raypipe.io.clustering import balance, clustered_groups
from raypipe.io.manifest import FileEntry, Manifest


@settings(max_examples=50, deadline=None)
@given(
    keys=st.lists(st.one_of(st.none(), st.integers(-5, 50)), max_size=60), parts=st.integers(1, 6)
)
def test_hash_partition_keeps_every_row_once_and_keys_together(keys, parts) -> None:
    frame = pl.DataFrame(
        {"k": keys, "i": list(range(len(keys)))}, schema={"k": pl.Int64, "i": pl.Int64}
    )
    pieces = hash_partition(frame, ["k"], parts)
    assert len(pieces) == parts
    assert sorted(pl.concat(pieces)["i"].to_list()) == list(range(len(keys)))
    owners: dict = {}
    for index, piece in enumerate(pieces):
        assert piece["i"].to_list() == sorted(piece["i"].to_list())  # order kept
        for key in piece["k"].to_list():
            assert owners.setdefault(key, index) == index


def _manifest(paths: list[str], metadata: dict) -> Manifest:
    files = tuple(FileEntry(p, 1, 10 * (i + 1), "x") for i, p in enumerate(paths))
    return Manifest("v", files, len(files), 0, pa.schema([]), metadata=metadata)


def test_clustered_groups_by_writer_part_id() -> None:
    token = "0123456789abcdef"
    paths = [
        f"event_date=2026-01-01/part-0-{token}-00000.parquet",
        f"event_date=2026-01-02/part-0-{token}-00000.parquet",
        f"part-1-{token}-00000.parquet",
        f"part-1-{token}-00001.parquet",
        f"part-12-{token}-00000.parquet",
    ]
    groups = clustered_groups(_manifest(paths, {"clustered_by": ["player_id"]}), ["player_id"])
    assert groups is not None
    assert sorted(len(g) for g in groups) == [1, 2, 2]
    assert clustered_groups(_manifest(paths, {}), ["player_id"]) is None
    assert clustered_groups(_manifest(paths, {"clustered_by": ["x"]}), ["player_id"]) is None
    assert (
        clustered_groups(_manifest(["data.parquet"], {"clustered_by": "player_id"}), ["player_id"])
        is None
    )


def test_balance_keeps_groups_whole() -> None:
    groups = [
        [FileEntry(f"{g}-{i}", 1, size, "x") for i in range(2)]
        for g, size in enumerate([50, 40, 30, 20, 10])
    ]
    bins = balance(groups, 2)
    assert len(bins) == 2
    for group in groups:
        assert sum(all(e in b for e in group) for b in bins) == 1
    assert sorted(sum(e.bytes for e in b) for b in bins) == [140, 160]
