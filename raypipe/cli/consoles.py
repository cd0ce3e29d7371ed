"""The CLI's two consoles, one for results (stdout) and one for errors (stderr).

In a terminal rich wraps to its width. Elsewhere (CI logs, files, a test's capture) lines are
never wrapped, so a path or a command a user copies from the output stays whole, and tables get
160 columns.
"""

from __future__ import annotations

import sys

from rich.console import Console

__all__ = ["console", "error_console"]


def _console(*, stderr: bool) -> Console:
    terminal = (sys.stderr if stderr else sys.stdout).isatty()
    return Console(stderr=stderr, width=None if terminal else 160, soft_wrap=not terminal)


console = _console(stderr=False)
error_console = _console(stderr=True)
