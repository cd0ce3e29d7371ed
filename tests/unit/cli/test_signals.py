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


def test_a_process_started_with_sigint_ignored_listens_after_interrupt_on_sigint() -> None:
    """`raypipe serve ... &` in a script starts with SIGINT ignored; `serve stop` sends SIGINT."""
    import subprocess
    import sys
    import time

    code = (
        "import sys, time\n"
        "from raypipe.cli.signals import interrupt_on_sigint\n"
        "if sys.argv[1] == 'listen':\n"
        "    interrupt_on_sigint()\n"
        "try:\n"  # from 'ready' on: a signal between the print and the try would escape
        "    print('ready', flush=True)\n"
        "    time.sleep(30)\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(7)\n"
    )

    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    outcomes = {}
    for mode in ("listen", "inherit"):
        child = subprocess.Popen(
            [sys.executable, "-c", code, mode], stdout=subprocess.PIPE, preexec_fn=ignore_sigint
        )
        assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
        child.send_signal(signal.SIGINT)
        time.sleep(1.0)
        outcomes[mode] = child.poll()
        child.kill()
        child.wait()
    assert outcomes == {"listen": 7, "inherit": None}  # without it, the signal is lost
