"""Hostile feature expressions fail fast with an ExpressionError, never a crash or a null."""

from __future__ import annotations

import time

import pytest

from raypipe.features.expressions import ExpressionError, compile_expression

SCHEMA = {"x": "num", "flag": "bool"}


@pytest.mark.parametrize(
    "text",
    [
        "-" * 5_000 + "x",
        "+".join(["x"] * 3_000),
        "not " * 2_000 + "flag",
        "(" * 4_000 + "x" + ")" * 4_000,
        "-" * 10_000 + "x",  # depth 10,000: refused by length before parsing
    ],
)
def test_deep_expressions_are_refused_quickly(text: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ExpressionError, match=r"nested|characters long"):
        compile_expression(text, SCHEMA)
    assert time.perf_counter() - started < 1.0


def test_moderate_nesting_still_compiles() -> None:
    assert compile_expression("-" * 50 + "x", SCHEMA).kind == "num"


@pytest.mark.parametrize("literal", [2**70, -(2**63) - 1, 2**63])
def test_integer_literals_past_64_bits_are_errors_not_nulls(literal: int) -> None:
    with pytest.raises(ExpressionError, match="outside the 64-bit range"):
        compile_expression(f"x + {literal}", SCHEMA)


def test_largest_int64_literal_is_kept() -> None:
    import polars as pl

    compiled = compile_expression(f"x * 0 + {2**63 - 1}", SCHEMA)
    frame = pl.DataFrame({"x": [1]}).select(compiled.expr.alias("y"))
    assert frame["y"][0] == 2**63 - 1
