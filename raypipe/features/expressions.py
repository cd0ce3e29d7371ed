"""The feature expression language: a small, safe subset of Python expression syntax.

Text is parsed with :func:`ast.parse` (which only builds a tree; nothing is executed) and every
node is checked against a whitelist: names, literals, arithmetic (``+ - * / %``), comparisons
(``== != < <= > >=``, ``in [...]``), ``and``/``or``/``not``, parentheses and a fixed set of
functions. Names are typed against a schema, so ``amount == "x"`` or an unknown column is an error
before any data is read. A checked expression compiles to a :class:`polars.Expr`.

Examples
--------
>>> compiled = compile_expression("spend_7d / (spend_30d + 1)",
...                               {"spend_7d": "num", "spend_30d": "num"})
>>> compiled.kind
'num'
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import polars as pl

__all__ = [
    "FUNCTIONS",
    "CompiledExpression",
    "ExpressionError",
    "Kind",
    "compile_expression",
    "kind_of_dtype",
]

Kind = Literal["num", "bool", "str", "time", "null"]


class ExpressionError(ValueError):
    """An expression is malformed or ill-typed; the message says where and why."""


@dataclass(frozen=True)
class CompiledExpression:
    """A checked expression: its polars form, result kind and the names it reads."""

    text: str
    expr: pl.Expr
    kind: Kind
    names: frozenset[str]


def kind_of_dtype(dtype: pl.DataType) -> Kind | None:
    """The expression kind of a polars dtype, or None for kinds the language cannot use."""
    if dtype == pl.Boolean:
        return "bool"
    if dtype.is_numeric():
        return "num"
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "str"
    if dtype.is_temporal():
        return "time"
    if dtype == pl.Null:
        return "null"
    return None


def _safe_div(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    return pl.when(b == 0).then(None).otherwise(a.cast(pl.Float64) / b)


# name -> (argument kinds, result kind, builder); "any" accepts every kind.
FUNCTIONS: Mapping[str, tuple[tuple[str, ...], Kind, Callable[..., pl.Expr]]] = {
    "abs": (("num",), "num", lambda a: a.abs()),
    "sqrt": (("num",), "num", lambda a: a.cast(pl.Float64).sqrt()),
    "log1p": (("num",), "num", lambda a: a.cast(pl.Float64).log1p()),
    "log": (("num",), "num", lambda a: a.cast(pl.Float64).log()),
    "exp": (("num",), "num", lambda a: a.cast(pl.Float64).exp()),
    "safe_div": (("num", "num"), "num", _safe_div),
    "least": (("num", "num"), "num", lambda a, b: pl.min_horizontal(a, b)),
    "greatest": (("num", "num"), "num", lambda a, b: pl.max_horizontal(a, b)),
    "coalesce": (("any", "any"), "null", lambda a, b: pl.coalesce(a, b)),
    "is_null": (("any",), "bool", lambda a: a.is_null()),
    "lower": (("str",), "str", lambda a: a.str.to_lowercase()),
}

_ARITHMETIC: Mapping[type[ast.operator], Callable[[pl.Expr, pl.Expr], pl.Expr]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a.cast(pl.Float64) / b,
    ast.Mod: lambda a, b: a % b,
}
_COMPARE: Mapping[type[ast.cmpop], Callable[[pl.Expr, pl.Expr], pl.Expr]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%"}


def compile_expression(text: str, schema: Mapping[str, Kind]) -> CompiledExpression:
    """Parse, type-check and compile ``text`` against ``schema`` (name -> kind).

    Raises
    ------
    ExpressionError
        Syntax outside the language, an unknown name or function, or mismatched types.
    """
    if not text or not text.strip():
        raise ExpressionError("the expression is empty")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(
            f"the expression is {len(text):,} characters long, more than {MAX_EXPRESSION_CHARS:,}"
        )
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"`{_short(text)}` is not a valid expression: {exc.msg}") from exc
    except (RecursionError, MemoryError) as exc:  # CPython's parser gives up on deep nesting
        raise ExpressionError(
            f"`{_short(text)}` is nested more deeply than {MAX_EXPRESSION_DEPTH} levels"
        ) from exc
    _check_depth(tree.body, text)
    compiler = _Compiler(text, schema)
    expr, kind = compiler.visit(tree.body)
    return CompiledExpression(text, expr, kind, frozenset(compiler.names))


#: Bounds that keep a hostile expression from exhausting the stack or memory.
MAX_EXPRESSION_CHARS = 10_000
MAX_EXPRESSION_DEPTH = 100
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def _short(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def _check_depth(root: ast.AST, text: str) -> None:
    """Iteratively (no recursion) refuse trees deeper than :data:`MAX_EXPRESSION_DEPTH`."""
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_EXPRESSION_DEPTH:
            raise ExpressionError(
                f"in `{_short(text)}`: the expression is nested more deeply than "
                f"{MAX_EXPRESSION_DEPTH} levels; split it into several features"
            )
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


class _Compiler:
    def __init__(self, text: str, schema: Mapping[str, Kind]) -> None:
        self.text = text
        self.schema = schema
        self.names: set[str] = set()

    def fail(self, message: str) -> ExpressionError:
        return ExpressionError(f"in `{self.text}`: {message}")

    def visit(self, node: ast.AST) -> tuple[pl.Expr, Kind]:
        handler: Callable[[ast.AST], tuple[pl.Expr, Kind]] | None = getattr(
            self, f"_visit_{type(node).__name__.lower()}", None
        )
        if handler is None:
            raise self.fail(
                f"`{type(node).__name__}` syntax is not allowed "
                "(allowed: names, literals, + - * / %, comparisons, in [...], "
                f"and/or/not, calls of {', '.join(sorted(FUNCTIONS))})"
            )
        return handler(node)

    def _visit_name(self, node: ast.Name) -> tuple[pl.Expr, Kind]:
        if node.id in ("true", "false"):
            return pl.lit(node.id == "true"), "bool"
        if node.id not in self.schema:
            known = ", ".join(f"`{name}`" for name in sorted(self.schema)) or "none"
            raise self.fail(f"unknown name `{node.id}` (known: {known})")
        self.names.add(node.id)
        return pl.col(node.id), self.schema[node.id]

    def _visit_constant(self, node: ast.Constant) -> tuple[pl.Expr, Kind]:
        value = node.value
        if value is None:
            return pl.lit(None), "null"
        if isinstance(value, bool):
            return pl.lit(value), "bool"
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            raise self.fail(
                f"integer literal {_short(str(value))} is outside the 64-bit range "
                f"[{INT64_MIN}, {INT64_MAX}]; write it as a float (`{float(value):.6g}`) if meant"
            )
        if isinstance(value, int | float):
            return pl.lit(value), "num"
        if isinstance(value, str):
            return pl.lit(value), "str"
        raise self.fail(f"literal {value!r} is not allowed")

    def _visit_unaryop(self, node: ast.UnaryOp) -> tuple[pl.Expr, Kind]:
        expr, kind = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            self._expect(kind, "bool", "operand of `not`")
            return ~expr, "bool"
        if isinstance(node.op, ast.USub | ast.UAdd):
            self._expect(kind, "num", "operand of unary minus")
            return (-expr if isinstance(node.op, ast.USub) else expr), "num"
        raise self.fail("`~` is not allowed; use `not`")

    def _visit_binop(self, node: ast.BinOp) -> tuple[pl.Expr, Kind]:
        build = _ARITHMETIC.get(type(node.op))
        if build is None:
            raise self.fail(f"operator `{type(node.op).__name__}` is not allowed")
        left, left_kind = self.visit(node.left)
        right, right_kind = self.visit(node.right)
        symbol = _SYMBOL[type(node.op)]
        if left_kind == right_kind == "time" and isinstance(node.op, ast.Sub):
            return (left - right).dt.total_seconds(fractional=True), "num"
        self._expect(left_kind, "num", f"left side of `{symbol}`")
        self._expect(right_kind, "num", f"right side of `{symbol}`")
        return build(left, right), "num"

    def _visit_boolop(self, node: ast.BoolOp) -> tuple[pl.Expr, Kind]:
        parts = [self.visit(value) for value in node.values]
        word = "and" if isinstance(node.op, ast.And) else "or"
        for _, kind in parts:
            self._expect(kind, "bool", f"operand of `{word}`")
        result = parts[0][0]
        for expr, _ in parts[1:]:
            result = (result & expr) if word == "and" else (result | expr)
        return result, "bool"

    def _visit_compare(self, node: ast.Compare) -> tuple[pl.Expr, Kind]:
        left, left_kind = self.visit(node.left)
        result: pl.Expr | None = None
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):
                term = self._membership(left, left_kind, comparator)
                term = ~term if isinstance(op, ast.NotIn) else term
                right, right_kind = left, left_kind
            else:
                build = _COMPARE.get(type(op))
                if build is None:
                    raise self.fail(f"comparison `{type(op).__name__}` is not allowed")
                right, right_kind = self.visit(comparator)
                if "null" not in (left_kind, right_kind) and left_kind != right_kind:
                    raise self.fail(f"cannot compare {left_kind} with {right_kind}")
                term = build(left, right)
            result = term if result is None else (result & term)
            left, left_kind = right, right_kind
        assert result is not None
        return result, "bool"

    def _membership(self, left: pl.Expr, kind: Kind, node: ast.AST) -> pl.Expr:
        if not isinstance(node, ast.List | ast.Tuple | ast.Set):
            raise self.fail('`in` needs a literal list, e.g. `x in ["a", "b"]`')
        values = []
        for element in node.elts:
            if not isinstance(element, ast.Constant):
                raise self.fail("`in` lists hold literals only")
            _, element_kind = self._visit_constant(element)
            if element_kind not in (kind, "null"):
                raise self.fail(f"`in` list holds {element_kind}, the left side is {kind}")
            values.append(element.value)
        return left.is_in(values)

    def _visit_call(self, node: ast.Call) -> tuple[pl.Expr, Kind]:
        if not isinstance(node.func, ast.Name) or node.keywords:
            raise self.fail("only plain calls of known functions are allowed")
        name = node.func.id
        if name not in FUNCTIONS:
            raise self.fail(f"unknown function `{name}` (known: {', '.join(sorted(FUNCTIONS))})")
        argument_kinds, result_kind, build = FUNCTIONS[name]
        if len(node.args) != len(argument_kinds):
            raise self.fail(
                f"`{name}` takes {len(argument_kinds)} argument(s), received {len(node.args)}"
            )
        args = [self.visit(arg) for arg in node.args]
        for position, ((_, kind), expected) in enumerate(
            zip(args, argument_kinds, strict=True), start=1
        ):
            if expected != "any":
                self._expect(kind, expected, f"argument {position} of `{name}`")
        if result_kind == "null":  # coalesce: the kind of its non-null arguments
            kinds = {kind for _, kind in args} - {"null"}
            if len(kinds) > 1:
                raise self.fail(f"`{name}` arguments differ in kind: {sorted(kinds)}")
            result_kind = next(iter(kinds), "null")
        return build(*(expr for expr, _ in args)), result_kind

    def _expect(self, kind: Kind, expected: str, what: str) -> None:
        if kind != expected and kind != "null":
            raise self.fail(f"{what} must be {expected}, received {kind}")
