"""The collector paused for imports and frozen for long phases, and given back as it was."""

from __future__ import annotations

import gc

from raypipe import collector


def test_no_collection_while_paused_and_the_collector_comes_back() -> None:
    with collector.paused():
        assert not gc.isenabled()  # no collection while the imports pile up
    assert gc.isenabled()


def test_a_collector_the_caller_had_off_stays_off() -> None:
    gc.disable()
    try:
        with collector.paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_what_exists_is_frozen_for_the_block_only() -> None:
    assert gc.get_freeze_count() == 0
    loaded = [[index] for index in range(1_000)]  # tracked containers, as modules make
    with collector.frozen():
        # the process's objects are out of the collector's way
        assert gc.get_freeze_count() >= len(loaded)
    assert gc.get_freeze_count() == 0  # and back after the block


def test_a_callers_own_freeze_is_neither_added_to_nor_undone() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with collector.frozen():
            [[index] for index in range(1_000)]
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
