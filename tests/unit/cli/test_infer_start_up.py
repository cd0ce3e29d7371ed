"""`raypipe infer` freezes what start-up made while it scores, and gives the collector back as
it was (the mechanism itself: ``tests/unit/test_collector.py``)."""

from __future__ import annotations

import gc
from pathlib import Path

from raypipe.cli.main import main
from tests.unit.inference.data import train_model, write_files


def _infer(tmp_path: Path) -> None:
    model = train_model(tmp_path / "model.ubj")
    write_files(tmp_path / "in", files=1, rows=100)
    main(["infer", "--model", str(model), "--input", str(tmp_path / "in"),
          "--output", str(tmp_path / "out"), "--id-columns", "player_id"])  # fmt: skip


def test_a_command_run_in_the_callers_process_leaves_nothing_frozen(
    tmp_path: Path, no_ray: list[str]
) -> None:
    assert gc.get_freeze_count() == 0
    _infer(tmp_path)
    assert gc.get_freeze_count() == 0


def test_a_callers_own_freeze_is_left_as_it_was(tmp_path: Path, no_ray: list[str]) -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        _infer(tmp_path)
        # still frozen, and nothing added (some of the caller's frozen objects may have died)
        assert 0 < gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()
