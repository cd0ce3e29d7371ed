"""Ctrl-C and SIGTERM during a run: cancel the run's token, do not kill the driver mid-write.

The first signal cancels the token: the driver stops at the next safe point, writes the run
record as interrupted and raises, so the runtime's ``finally`` shuts down the Ray it started
(a driver killed outright leaves its workers running). A second signal unwinds at once
(``KeyboardInterrupt``, or ``SystemExit(143)`` for SIGTERM), for a stage that does not reach a
safe point soon.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from raypipe.stages.base import CancelToken

__all__ = ["cancel_on_signals", "interrupt_on_sigint"]

logger = logging.getLogger(__name__)

HANDLED = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def cancel_on_signals(token: CancelToken) -> Iterator[CancelToken]:
    """Within the block, SIGINT and SIGTERM cancel ``token`` (exit code ``128 + signal``).

    ``ray.init`` in the main thread installs its own SIGTERM handler (a bare ``sys.exit``):
    enter the block after that, or start Ray from another thread (a job's stages do, where
    ``ray.init`` leaves handlers alone). The previous handlers are restored on exit. Outside the
    main thread (signals go to the main thread only) the block changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield token
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if token.cancelled:  # the second signal: unwind now (the runtime still shuts down Ray)
            if signum == signal.SIGINT:
                raise KeyboardInterrupt(name)
            raise SystemExit(128 + signum)
        token.cancel(name, exit_code=128 + signum)
        logger.warning(
            "%s: interrupting the run at the next safe point (again to stop at once)", name
        )

    previous = {signum: signal.signal(signum, on_signal) for signum in HANDLED}
    try:
        yield token
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def interrupt_on_sigint() -> None:
    """Make SIGINT raise ``KeyboardInterrupt`` here even if this process inherited it ignored.

    A shell starts a background job (``raypipe serve ... &`` in a script) with SIGINT ignored,
    and Python then installs no handler for it; a process that other commands stop with SIGINT
    (``raypipe serve stop``) must listen to it all the same.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
