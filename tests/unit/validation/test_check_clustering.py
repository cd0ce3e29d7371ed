from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from raypipe.engine.inline import InlineBackend
from raypipe.io.clustering import clustered_groups
from raypipe.io.dataset import DatasetWriter, read_dataset
from raypipe.io.manifest import read_manifest
from raypipe.validation.checking import run_check
from raypipe.validation.rules import read_rules


def test_checked_rows_keep_the_sources_metadata_and_clustering(tmp_path: Path) -> None:
    source = str(tmp_path / "events")
    writer = DatasetWriter(source, target_file_bytes=2_000)
    entries = []
    for shard in range(3):  # each shard: disjoint players, several files
        players = pa.array([shard * 100 + i % 50 for i in range(600)], pa.int64())
        amounts = pa.array([float(i % 7) - 1.0 for i in range(600)])
        entries += writer.write(pa.table({"player_id": players, "amount": amounts}), part=shard)
    metadata = {"clustered_by": ["player_id"], "cutoff": "2026-01-01T00:00:00"}
    manifest = writer.commit(entries, metadata=metadata)
    rules = read_rules(
        {"rules": [{"check": "range", "column": "amount", "min": 0, "policy": "quarantine"}]}
    )
    run_check(
        source,
        manifest,
        rules,
        InlineBackend(),
        data_url=str(tmp_path / "data"),
        quarantine_url=str(tmp_path / "quarantine"),
    )
    checked = read_manifest(str(tmp_path / "data"))
    assert checked.metadata["cutoff"] == "2026-01-01T00:00:00"
    groups = clustered_groups(checked, ["player_id"])
    assert groups is not None
    players_per_group = [
        set(read_dataset(str(tmp_path / "data"), files=group)["player_id"].to_pylist())
        for group in groups
    ]
    for i, left in enumerate(players_per_group):
        for right in players_per_group[i + 1 :]:
            assert not left & right
    negatives = sum(1 for i in range(600) if i % 7 == 0)
    assert read_manifest(str(tmp_path / "quarantine")).rows == 3 * negatives
