"""An option that several commands take is defined once: same flag, same help everywhere."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import typer.main

from raypipe.cli.main import _register_commands, app

#: Flags whose meaning differs by design: `--data-dir` of a command that reads a job spec
#: replaces the spec's; the Ray Jobs commands' `--address` is the dashboard's URL, as in
#: `ray job submit --address`.
DIFFERENT_BY_DESIGN = {
    *((command, "--data-dir") for command in ("run", "submit", "watch")),
    *((command, "--address") for command in ("submit", "jobs list", "jobs logs", "jobs stop")),
}


def _commands(command: Any, path: str = "") -> list[tuple[str, Any]]:
    found = [(path, command)] if path else []
    for name, sub in getattr(command, "commands", {}).items():
        found += _commands(sub, f"{path} {name}".strip())
    return found


def test_each_shared_flag_has_one_definition() -> None:
    _register_commands()
    helps: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    by_design: dict[str, set[str]] = defaultdict(set)
    for path, command in _commands(typer.main.get_command(app)):
        for param in command.params:
            for flag in getattr(param, "opts", []):
                help_text = getattr(param, "help", "") or ""
                if (path, flag) in DIFFERENT_BY_DESIGN:
                    by_design[flag].add(help_text)
                elif flag.startswith("--"):
                    helps[flag][help_text].append(path)
    shared = ("--address", "--inline", "--set", "--data-dir", "--tracking-uri", "--redis-url")
    for flag in (*shared, "--sqlite-path"):
        assert flag in helps, f"no command takes {flag}"
    for flag in shared:
        assert len(helps[flag]) == 1, f"{flag} is defined {len(helps[flag])} ways: {helps[flag]}"
    assert len(by_design["--data-dir"]) == 1, by_design["--data-dir"]  # one spec override
    assert "--online-path" not in helps, "the SQLite store is `--sqlite-path` everywhere"
