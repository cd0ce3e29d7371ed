"""The first Ctrl-C or SIGTERM cancels the run's token; a second one unwinds at once."""

from __future__ import annotations

import os
import signal

import pytest

from raypipe.cli.signals import cancel_on_signals
from raypipe.stages.base import CancelToken


@pytest.mark.parametrize(
    ("signum", "code", "second"),
    [(signal.SIGINT, 130, KeyboardInterrupt), (signal.SIGTERM, 143, SystemExit)],
    ids=["int", "term"],
)
def test_first_signal_cancels_second_unwinds_handlers_restored(
    signum: int, code: int, second: type[BaseException]
) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with cancel_on_signals(CancelToken()) as token:
        os.kill(os.getpid(), signum)
        assert token.wait(5.0), "the first signal cancels the token and nothing else"
        assert (token.reason, token.exit_code) == (signal.Signals(signum).name, code)
        with pytest.raises(second) as info:
            os.kill(os.getpid(), signum)
            token.wait(5.0)  # the handler raises here, in the main thread
        if second is SystemExit:
            assert info.value.code == code  # type: ignore[union-attr]
    assert {s: signal.getsignal(s) for s in before} == before
