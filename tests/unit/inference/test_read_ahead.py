from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from raypipe.inference.work import read_ahead


def test_items_come_in_order_and_the_next_is_produced_in_another_thread() -> None:
    producers: list[str] = []

    def numbers() -> Iterator[int]:
        for value in range(5):
            producers.append(threading.current_thread().name)
            yield value

    assert list(read_ahead(numbers())) == [0, 1, 2, 3, 4]
    assert all(name.startswith("raypipe-read-ahead") for name in producers)


def test_an_error_surfaces_at_the_item_that_raised_it() -> None:
    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("truncated file")

    seen: list[int] = []
    with pytest.raises(ValueError, match="truncated file"):
        for value in read_ahead(failing()):
            seen.append(value)
    assert seen == [1, 2]


def test_stopping_early_closes_the_source() -> None:
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            yield from range(100)
        finally:
            closed.set()

    items = read_ahead(source())
    assert next(items) == 0
    items.close()
    assert closed.is_set()


def test_an_empty_source_yields_nothing() -> None:
    assert list(read_ahead(iter([]))) == []
