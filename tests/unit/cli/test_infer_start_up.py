"""What `raypipe infer` loads at start-up is frozen out of the collector's scans."""

from __future__ import annotations

import gc

from raypipe.cli.infer import _start_up_kept


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
