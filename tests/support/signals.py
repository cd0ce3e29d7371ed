"""Children that a test interrupts with SIGINT start with it as a terminal leaves it."""

from __future__ import annotations

import signal

__all__ = ["sigint_as_from_a_terminal"]


def sigint_as_from_a_terminal() -> None:
    """``preexec_fn``: SIGINT at its default. A test run started in the background by a script
    (``make test &``) inherits SIGINT ignored, and so would the child, which then never sees the
    Ctrl-C the test sends it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
