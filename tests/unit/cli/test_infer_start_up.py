"""What `raypipe infer` loads at start-up is frozen out of the collector's scans while it runs."""

from __future__ import annotations

import gc
from pathlib import Path

from raypipe.cli.infer import _start_up_kept
from raypipe.cli.main import main
from tests.unit.inference.data import train_model, write_files


def test_what_start_up_makes_is_frozen_and_the_collector_comes_back() -> None:
    before = gc.get_freeze_count()
    try:
        with _start_up_kept():
            assert not gc.isenabled()  # no collection while the imports pile up
            loaded = [[index] for index in range(1_000)]  # tracked containers, as modules make
        assert gc.isenabled()
        assert gc.get_freeze_count() >= before + len(loaded)
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual


def test_a_collector_the_caller_had_off_stays_off() -> None:
    gc.disable()
    try:
        with _start_up_kept():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()


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
