"""Reading a job's YAML: parse with locations, expand ``${ENV}``, apply ``--set`` overrides.

Every function here collects problems instead of stopping at the first, so ``raypipe validate``
can list them all. Parsing is bounded (:mod:`raypipe.spec.bounded_yaml`). ``${VAR}`` expands
only variables the spec declares in its top-level ``env:`` list and ``RAYPIPE_*`` ones, so a
shared spec cannot read, say, ``AWS_SECRET_ACCESS_KEY`` into a URL it sends somewhere.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from raypipe.errors import SpecError
from raypipe.spec.bounded_yaml import LIMITS_HINT, literal_problems, load_bounded_yaml

__all__ = [
    "ALWAYS_EXPANDED_PREFIX",
    "YamlSource",
    "apply_overrides",
    "declared_env",
    "expand_env",
    "read_yaml_source",
]

#: Variables with this prefix expand without being declared (raypipe's own settings).
ALWAYS_EXPANDED_PREFIX = "RAYPIPE_"

_ENV_PATTERN = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class YamlSource:
    """A parsed YAML document and the node tree that knows where each key was written."""

    name: str
    data: Any
    root: yaml.Node | None

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """1-based line of the deepest node along ``path`` that exists in the file."""
        node = self.root
        if node is None:
            return None
        line = node.start_mark.line + 1
        for key in path:
            child = None
            if isinstance(node, yaml.MappingNode):
                child = next((value for k, value in node.value if k.value == str(key)), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
                child = node.value[key] if key < len(node.value) else None
            if child is None:
                break
            node = child
            line = node.start_mark.line + 1
        return line

    def where(self, path: Sequence[str | int]) -> str:
        """``file:line path`` for an error message."""
        dotted = ".".join(str(part) for part in path) or "(top level)"
        line = self.line_of(path)
        return f"{self.name}:{line} `{dotted}`" if line else f"{self.name} `{dotted}`"


def read_yaml_source(path: str | Path) -> YamlSource:
    """Read and parse ``path``; a missing file or bad YAML is a :class:`SpecError`."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(
            [f"cannot read `{name}`: {exc.strerror or exc}"],
            hint="check the path of the job spec",
        ) from exc
    data, root = load_bounded_yaml(text, name)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(
            [
                f"{name}:1: a job spec is a mapping with `name`, `data_dir` and `stages`, "
                f"received a {type(data).__name__}"
            ],
            source=name,
        )
    source = YamlSource(name=name, data=data, root=root)
    problems = [f"{source.where(path)}: {message}" for path, message in literal_problems(data)]
    if problems:
        raise SpecError(problems, source=name, hint=LIMITS_HINT)
    return source


def declared_env(data: Any) -> tuple[frozenset[str], list[tuple[tuple[str | int, ...], str]]]:
    """The names in the spec's top-level ``env:`` list, and problems with its shape."""
    declared = data.get("env", []) if isinstance(data, dict) else []
    if declared is None:
        return frozenset(), []
    if not isinstance(declared, list):
        return frozenset(), [(("env",), "expected a list of environment variable names")]
    names: set[str] = set()
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for index, entry in enumerate(declared):
        if isinstance(entry, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", entry):
            names.add(entry)
        else:
            problems.append((("env", index), f"`{entry}` is not an environment variable name"))
    return frozenset(names), problems


def expand_env(
    data: Any,
    env: Mapping[str, str] | None = None,
    *,
    declared: Collection[str] = frozenset(),
    path: tuple[str | int, ...] = (),
    problems: list[tuple[tuple[str | int, ...], str]] | None = None,
) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string; ``$$`` is a literal ``$``.

    Only names in ``declared`` (the spec's ``env:`` list) and ``RAYPIPE_*`` names expand. An
    undeclared name, or a declared one that is unset and has no default, is appended to
    ``problems`` as ``(path, message)`` and left as written.
    """
    env = os.environ if env is None else env
    problems = [] if problems is None else problems
    if isinstance(data, dict):
        return {
            key: expand_env(value, env, declared=declared, path=(*path, key), problems=problems)
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [
            expand_env(value, env, declared=declared, path=(*path, index), problems=problems)
            for index, value in enumerate(data)
        ]
    if not isinstance(data, str):
        return data

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        variable, default = match.group(1), match.group(2)
        if variable not in declared and not variable.startswith(ALWAYS_EXPANDED_PREFIX):
            problems.append(
                (
                    path,
                    f"environment variable `{variable}` is not declared; only variables "
                    f"listed in the spec's top-level `env:` and `{ALWAYS_EXPANDED_PREFIX}*` "
                    f"ones expand (add `{variable}` to `env:`)",
                )
            )
            return match.group(0)
        if variable in env:
            return env[variable]
        if default is not None:
            return default
        problems.append(
            (
                path,
                f"environment variable `{variable}` is not set "
                f"(write `${{{variable}:-default}}` to give a default)",
            )
        )
        return match.group(0)

    return _ENV_PATTERN.sub(substitute, data)


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> list[str]:
    """Apply ``key.path=value`` overrides in place; values are parsed as YAML scalars.

    Returns the problems found (malformed overrides, paths through non-mappings).
    """
    problems: list[str] = []
    for override in overrides:
        dotted, equals, raw_value = override.partition("=")
        keys = [key for key in dotted.strip().split(".") if key]
        if not equals or not keys:
            problems.append(f"--set `{override}`: expected `key.path=value`")
            continue
        try:  # the same bounds as a spec file: an alias bomb in --set fails fast too
            value = load_bounded_yaml(raw_value, "--set")[0] if raw_value.strip() else ""
        except SpecError as exc:
            if not isinstance(exc.__cause__, yaml.YAMLError):
                problems.append(f"--set `{override[:80]}`: {exc.problems[0]}")
                continue
            value = raw_value  # not YAML: the text as written
        too_big = [message for _, message in literal_problems(value)]
        if too_big:
            problems.append(f"--set `{override[:80]}`: {too_big[0]}")
            continue
        node: Any = data
        for depth, key in enumerate(keys[:-1]):
            child = node.get(key) if isinstance(node, dict) else None
            if child is None and isinstance(node, dict):
                child = node[key] = {}
            if not isinstance(child, dict):
                where = ".".join(keys[: depth + 1])
                problems.append(f"--set `{override}`: `{where}` is not a mapping")
                break
            node = child
        else:
            node[keys[-1]] = value
    return problems
