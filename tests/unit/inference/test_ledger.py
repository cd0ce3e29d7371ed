from __future__ import annotations

from pathlib import Path

from raypipe.inference.ledger import UnitLedger, UnitOutcome


def test_markers_round_trip_and_only_whole_markers_count(tmp_path: Path) -> None:
    ledger = UnitLedger(str(tmp_path / "out"))
    outcome = UnitOutcome(
        unit_id="u1",
        source="a.parquet",
        status="ok",
        rows_in=3,
        rows_out=3,
        entries=({"path": "p.parquet", "rows": 3, "bytes": 10, "sha256": "x", "partition": {}},),
        read_s=0.5,
    )
    ledger.write(outcome)
    units = tmp_path / "out" / "_inference" / "units"
    (units / "u2.json.abc.tmp").write_text("{half")  # a worker died while writing
    (units / "u3.json").write_text("{not json")  # damaged: rescored, not trusted
    found = ledger.read_all(["u1", "u2", "u3", "u4"])
    assert list(found) == ["u1"]
    assert found["u1"] == outcome and found["u1"].resumed
    ledger.clear()
    assert ledger.read_all(["u1"]) == {}
