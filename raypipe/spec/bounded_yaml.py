"""YAML parsing with limits, so a hostile spec fails in well under a second instead of hanging.

PyYAML resolves an alias to the node it names, so ten lines of nested aliases (the "billion
laughs" bomb) describe a tree of 10^9 nodes, which every later walk (``${ENV}`` expansion,
pydantic) would visit. Deep nesting makes the recursive composer raise ``RecursionError``, and a
huge integer literal slips through to places that turn it into null. This module checks, in this
order, each step bounded by the one before:

1. the text size (:data:`MAX_SPEC_BYTES`);
2. the event stream (an iterative parser, libyaml's when installed, so no recursion and no
   quadratic scan): nesting depth, alias count and scalar length;
3. the composed node graph: the number of nodes it stands for once aliases are expanded
   (memoised per node, so the bomb is counted in linear time), and no alias refers to itself;
4. the constructed values (:func:`literal_problems`, also run on ``--set`` values): integers
   fit in 64 bits, strings fit :data:`MAX_STRING_CHARS`.

Every violation is a :class:`~raypipe.errors.SpecError` naming the file and line.
:func:`parse_bounded_yaml` is the one way raypipe reads any YAML it is handed (job specs, rules,
feature views, search spaces, a model's answer, ``--set`` values): steps 1-4 in one call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from raypipe.errors import SpecError

__all__ = [
    "MAX_ALIASES",
    "MAX_DEPTH",
    "MAX_EXPANDED_NODES",
    "MAX_SPEC_BYTES",
    "LIMITS_HINT",
    "MAX_STRING_CHARS",
    "literal_problems",
    "load_bounded_yaml",
    "parse_bounded_yaml",
]

MAX_SPEC_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_ALIASES = 1_000
MAX_EXPANDED_NODES = 100_000
MAX_STRING_CHARS = 65_536
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

LIMITS_HINT = "a job spec is small and plain; remove the deep nesting, aliases or huge literals"


def load_bounded_yaml(text: str, name: str) -> tuple[Any, yaml.Node | None]:
    """Parse ``text`` (the file ``name``) within limits 1-3; returns ``(data, root node)``.

    Raises
    ------
    SpecError
        Invalid YAML, or a limit exceeded (with the file and line).
    """
    if len(text) > MAX_SPEC_BYTES:
        _fail(f"{name}: the spec is {len(text):,} characters, more than {MAX_SPEC_BYTES:,}", name)
    try:
        _check_events(text, name)
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            if root is not None:
                _check_expanded_size(root, name)
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        problem = getattr(exc, "problem", None) or str(exc)
        if "nesting depth" in problem:  # libyaml's own bound (1,000 levels) was hit first
            _fail(f"{where}: nesting is deeper than {MAX_DEPTH} levels", name)
        raise SpecError([f"{where}: invalid YAML: {problem}"], source=name) from exc
    return data, root


def parse_bounded_yaml(text: str, name: str) -> Any:
    """The value of the YAML ``text`` (the file or option ``name``), within every limit (1-4).

    Raises
    ------
    SpecError
        Invalid YAML (its ``__cause__`` is the :class:`yaml.YAMLError`), or a limit exceeded.
    """
    data, _root = load_bounded_yaml(text, name)
    problems = [
        f"{name}: {'.'.join(map(str, path)) or 'value'}: {message}"
        for path, message in literal_problems(data)
    ]
    if problems:
        raise SpecError(problems, source=name, hint=LIMITS_HINT)
    return data


def literal_problems(
    value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """``(path, message)`` for every integer outside int64 and every over-long string in ``value``.

    ``value`` must already be bounded in size and depth (as :func:`load_bounded_yaml` ensures).
    """
    if isinstance(value, bool):
        return
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        yield (
            path,
            (
                f"integer literal with {len(str(abs(value)))} digits is outside the 64-bit range "
                f"[{INT64_MIN}, {INT64_MAX}]"
            ),
        )
    elif isinstance(value, str) and len(value) > MAX_STRING_CHARS:
        yield path, f"string of {len(value):,} characters is longer than {MAX_STRING_CHARS:,}"
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from literal_problems(key, path)
            yield from literal_problems(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from literal_problems(item, (*path, index))


def _check_events(text: str, name: str) -> None:
    depth = aliases = 0
    # libyaml when present: PyYAML's pure-Python scanner is quadratic in flow nesting depth.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for event in yaml.parse(text, Loader=loader):
        line = event.start_mark.line + 1 if event.start_mark is not None else 1
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                _fail(f"{name}:{line}: nesting is deeper than {MAX_DEPTH} levels", name)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                _fail(f"{name}:{line}: more than {MAX_ALIASES} aliases (`*name`)", name)
        elif isinstance(event, yaml.ScalarEvent) and len(event.value) > MAX_STRING_CHARS:
            _fail(
                f"{name}:{line}: a value of {len(event.value):,} characters is longer than "
                f"{MAX_STRING_CHARS:,}",
                name,
            )


def _check_expanded_size(root: yaml.Node, name: str) -> None:
    """Count the nodes ``root`` stands for with aliases expanded; memoised per shared node."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def size(node: yaml.Node) -> int:  # recursion depth <= MAX_DEPTH, checked before
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in in_progress:
            _fail(f"{name}:{node.start_mark.line + 1}: an alias refers to its own anchor", name)
        in_progress.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        in_progress.discard(key)
        if total > MAX_EXPANDED_NODES:
            _fail(
                f"{name}:{node.start_mark.line + 1}: with its aliases expanded the spec has more "
                f"than {MAX_EXPANDED_NODES:,} values (an alias bomb?)",
                name,
            )
        sizes[key] = total
        return total

    size(root)


def _fail(problem: str, name: str) -> None:
    raise SpecError([problem], source=name, hint=LIMITS_HINT)
