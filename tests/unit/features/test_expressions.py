"""The expression language: what it accepts, what it computes, what it refuses."""

from __future__ import annotations

import polars as pl
import pytest

from raypipe.features.expressions import ExpressionError, compile_expression

SCHEMA = {"a": "num", "b": "num", "kind": "str", "flag": "bool", "ts": "time"}
FRAME = pl.DataFrame(
    {"a": [1, 4, None], "b": [2, 0, 3], "kind": ["x", "y", None], "flag": [True, False, True]}
)


def run(text: str) -> list:
    compiled = compile_expression(text, SCHEMA)
    return FRAME.select(compiled.expr.alias("out"))["out"].to_list()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a + b * 2", [5, 4, None]),
        ("a / b", [0.5, float("inf"), None]),
        ("safe_div(a, b)", [0.5, None, None]),
        ("-a % 3", [2, 2, None]),
        ('kind == "x" or kind in ["y"]', [True, True, None]),
        ('kind not in ["x"] and flag', [False, False, None]),
        ("not flag", [False, True, False]),
        ("1 < b <= 2", [True, False, False]),
        ("coalesce(a, 0) + log1p(0)", [1.0, 4.0, 0.0]),
        ("is_null(kind)", [False, False, True]),
        ("greatest(a, b)", [2, 4, 3]),
    ],
)
def test_computes(text: str, expected: list) -> None:
    assert run(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os')", "unknown function `__import__`"),
        ("a.real", "`Attribute` syntax is not allowed"),
        ("[x for x in a]", "`ListComp` syntax is not allowed"),
        ("lambda: 1", "`Lambda` syntax is not allowed"),
        ("a[0]", "`Subscript` syntax is not allowed"),
        ("a ** 2", "`Pow` is not allowed"),
        ("missing + 1", "unknown name `missing`"),
        ('a == "x"', "cannot compare num with str"),
        ("kind + 1", "left side of `+` must be num, received str"),
        ("a and flag", "operand of `and` must be bool, received num"),
        ("sqrt(a, b)", "`sqrt` takes 1 argument(s), received 2"),
        ("a in b", "`in` needs a literal list"),
        ("sqrt(x=a)", "only plain calls"),
        ("a +", "not a valid expression"),
        ("", "empty"),
    ],
)
def test_refuses(text: str, message: str) -> None:
    with pytest.raises(
        ExpressionError,
        match=message.replace("(", r"\(")
        .replace(")", r"\)")
        .replace("[", r"\[")
        .replace("*", r"\*")
        .replace("+", r"\+"),
    ):
        compile_expression(text, SCHEMA)


def test_reports_names_and_kind() -> None:
    compiled = compile_expression("safe_div(a, b) > 1 and flag", SCHEMA)
    assert compiled.kind == "bool" and compiled.names == {"a", "b", "flag"}
