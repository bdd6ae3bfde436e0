"""Ctrl-C and SIGTERM stop a run with the shell's codes (130, 143), told apart from user code.

A model factory or forward may raise ``KeyboardInterrupt`` or ``SystemExit`` itself (``sys.exit(0)``,
``argparse`` on promote's own command line): that is a kernel that could not be evaluated (exit 3),
never a pass. A real signal must still stop the run. The CLI therefore installs handlers that
record the signal and raise :class:`Interrupted`, an exception user code does not raise and
``except Exception``/``except KeyboardInterrupt`` do not catch. Code that converts user-code
exceptions asks :func:`received` first, so a signal stays a signal even when user code catches
``Interrupted`` and raises something else.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

from promote.errors import EXIT_SIGINT, EXIT_SIGTERM

_CODES = {signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM}
_received: list[int] = []


class Interrupted(BaseException):
    """The process got SIGINT or SIGTERM; ``exit_code`` is 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = _CODES.get(signum, 128 + int(signum))
        super().__init__(signal.Signals(signum).name)


def received() -> int | None:
    """The first signal received while :func:`handling` was active, else None."""
    return _received[0] if _received else None


def check() -> None:
    """Raise :class:`Interrupted` if a signal arrived (for code about to reinterpret an exception)."""
    signum = received()
    if signum is not None:
        raise Interrupted(signum)


def _handler(signum: int, frame: object) -> None:
    _received.append(signum)
    raise Interrupted(signum)


@contextlib.contextmanager
def handling() -> Iterator[None]:
    """Install the SIGINT/SIGTERM handlers for the block (main thread only), then restore the old ones."""
    saved = {}
    try:
        for signum in _CODES:
            saved[signum] = signal.signal(signum, _handler)
    except ValueError:  # not the main thread: leave signals to whoever owns it
        pass
    _received.clear()
    try:
        yield
    finally:
        for signum, old in saved.items():
            signal.signal(signum, old)
