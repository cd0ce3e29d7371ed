from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raypipe.io.fs import join_url, resolve_fs
from raypipe.io.hive import (
    NULL_PARTITION,
    decode_segment,
    decode_value,
    encode_segment,
    encode_value,
)


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("s3://bucket/x", "s3://bucket/x/a/b.parquet"),
        ("s3://bucket/x/", "s3://bucket/x/a/b.parquet"),
        ("memory://x", "memory://x/a/b.parquet"),
        ("file:///tmp/d", "file:///tmp/d/a/b.parquet"),
        ("/tmp/d/", "/tmp/d/a/b.parquet"),
        ("rel/d", "rel/d/a/b.parquet"),
    ],
)
def test_join_url_keeps_the_scheme(base: str, expected: str) -> None:
    assert join_url(base, "a", "/b.parquet") == expected


def test_resolve_fs_strips_the_scheme() -> None:
    fs, path = resolve_fs("memory://bucket/x")
    assert "memory" in fs.protocol
    assert path.endswith("bucket/x")


text = st.text(
    alphabet=st.sampled_from(list("ab/=% _.-é日\n")) | st.characters(exclude_categories=("Cs",)),
    max_size=20,
)  # Arrow strings are UTF-8: lone surrogates cannot occur


@given(value=st.none() | text, column=text.filter(bool))
def test_hive_segments_round_trip(value: str | None, column: str) -> None:
    segment = encode_segment(column, value)
    assert "/" not in segment
    assert segment.count("=") == 1
    assert decode_segment(segment) == (column, value)


@pytest.mark.parametrize("value", ["", "a/b", "x=y", "100%", "with space", "日本", NULL_PARTITION])
def test_hive_values_round_trip_and_stay_distinct_from_null(value: str) -> None:
    encoded = encode_value(value)
    assert decode_value(encoded) == value
    assert encoded != encode_value(None)
