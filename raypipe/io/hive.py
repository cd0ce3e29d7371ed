"""Hive partition directories: ``column=value/`` with values that survive any text.

Values are percent-encoded (UTF-8), so ``/``, ``=``, ``%``, spaces and unicode round-trip; a null
becomes ``__HIVE_DEFAULT_PARTITION__``. A string whose encoding would collide with that marker has
its first ``_`` escaped as ``%5F``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "NULL_PARTITION",
    "decode_segment",
    "decode_value",
    "encode_segment",
    "encode_value",
    "partition_dir",
    "restore_value",
    "value_to_text",
]

NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"


def encode_value(value: str | None) -> str:
    """Percent-encode one partition value (``None`` -> the null marker)."""
    if value is None:
        return NULL_PARTITION
    encoded = quote(value, safe="")
    if encoded == NULL_PARTITION:
        encoded = "%5F" + encoded[1:]
    return encoded


def decode_value(text: str) -> str | None:
    """Inverse of :func:`encode_value`."""
    if text == NULL_PARTITION:
        return None
    return unquote(text)


def encode_segment(column: str, value: str | None) -> str:
    """``column=value`` with both sides encoded."""
    return f"{quote(column, safe='')}={encode_value(value)}"


def decode_segment(segment: str) -> tuple[str, str | None]:
    """Inverse of :func:`encode_segment`."""
    column, sep, value = segment.partition("=")
    if not sep:
        raise ValueError(f"`{segment}` is not a `column=value` directory")
    return unquote(column), decode_value(value)


def partition_dir(columns: Sequence[str], values: Mapping[str, str | None]) -> str:
    """The relative directory of one partition, e.g. ``country=DE/day=2024-01-01``."""
    return "/".join(encode_segment(column, values[column]) for column in columns)


def value_to_text(array: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Render partition values as text (the inverse is :func:`restore_value`)."""
    return pc.cast(array, pa.string())


def restore_value(text: str | None, type_: pa.DataType) -> pa.Scalar:
    """A partition value's text back to a scalar of its original type."""
    return pc.cast(pa.array([text], pa.string()), type_)[0]
