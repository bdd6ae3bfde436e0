"""Ctrl-C and SIGTERM stop a run with the shell's codes (130, 143), told apart from user code.

A model factory or forward may raise ``KeyboardInterrupt`` or ``SystemExit`` itself (``sys.exit(0)``,
``argparse`` on promote's own command line): that is a kernel that could not be evaluated (exit 3),
never a pass. A real signal must still stop the run. The CLI therefore installs handlers that
record the signal and raise :class:`Interrupted`, an exception user code does not raise and
``except Exception``/``except KeyboardInterrupt`` do not catch. Code that converts user-code
exceptions asks :func:`received` first, so a signal stays a signal even when user code catches
``Interrupted`` and raises something else.

A signal must end the process within seconds whatever the threads are doing: a worker thread
blocked on a server that never answers keeps ``with ThreadPoolExecutor`` waiting in ``__exit__``,
and the interpreter joins such threads again at exit. So the first signal also starts a watchdog
that ends the process with the signal's code after ``GRACE_S`` (time for ``finally`` blocks to
close kernels), a second signal ends it at once, and :func:`exit_now` leaves without joining
threads still blocked. Report files are written atomically (``atomic.py``), so the previous report
is intact whenever the process ends. A command that finished ends through :func:`finish`: the exit a
normal one would make, without the interpreter's slow teardown.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import io
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import NoReturn

from promote.errors import EXIT_SIGINT, EXIT_SIGTERM

_CODES = {signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM}
_received: list[int] = []
GRACE_S = 5.0  # after a signal, cleanup may take this long before the process is ended regardless


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


def exit_now(code: int) -> None:
    """End the process with ``code`` now: streams flushed, threads not joined (one blocked on a
    socket would keep the interpreter alive), no ``atexit`` handlers (the executor's joins those)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def finish(code: object) -> NoReturn:
    """End a command that has finished, as ``sys.exit(code)`` would, without the interpreter's teardown.

    Why: once torch and transformers are imported, tearing the interpreter down (module dictionaries,
    millions of objects, C++ static destructors) takes ~1 s of a 5-10 s check on a 2-core machine
    (docs/performance.md); nothing in it is promote's work. What a normal exit does that matters still
    happens: every ``atexit`` handler runs (the launched servers' PID backstop, temporary folders, Ray,
    multiprocessing, logging), every other open file object is closed (a model factory's own log keeps
    its lines), then stdout and stderr are flushed. The normal exit is kept where it would do more: a
    live non-daemon thread (the interpreter would wait for it), an interpreter without
    ``atexit._run_exitfuncs``, or ``PROMOTE_FULL_EXIT=1`` (a tool that hooks interpreter finalisation).
    """
    if stuck_threads() or os.environ.get("PROMOTE_FULL_EXIT") == "1" or not hasattr(atexit, "_run_exitfuncs"):
        sys.exit(code)
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code & 0xFF
    else:  # sys.exit("message"): the message on stderr, status 1
        with contextlib.suppress(Exception):
            print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    gc.disable()  # the process ends in a moment: no collection, and none of the whole heap unfrozen just below
    gc.unfreeze()  # gc.get_objects() does not list frozen objects: a file a kernel opened while it loaded (heap.py)
    _close_open_files()
    exit_now(status)


def _close_open_files() -> None:
    """Close every open file object but the standard streams, as their finalisers would at a normal exit (a
    gzip file gets its trailer, a log its last lines). ``io.IOBase`` is an ABC, slow to test 360 000 objects
    against one by one: the answer is kept per type."""
    std = set()
    for stream in (sys.stdin, sys.stdout, sys.stderr, sys.__stdin__, sys.__stdout__, sys.__stderr__):
        while stream is not None:
            std.add(id(stream))
            stream = getattr(stream, "buffer", None) or getattr(stream, "raw", None)
    is_file: dict[type, bool] = {}
    for obj in gc.get_objects():
        kind = type(obj)
        known = is_file.get(kind)
        if known is None:
            known = is_file[kind] = issubclass(kind, io.IOBase)
        if known and id(obj) not in std:
            with contextlib.suppress(Exception):
                obj.close()


def stuck_threads() -> list[threading.Thread]:
    """Live non-daemon threads other than this one: the interpreter would wait for them at exit."""
    return [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon and t.is_alive()]


def _watchdog(code: int, name: str) -> None:
    time.sleep(GRACE_S)
    with contextlib.suppress(Exception):
        sys.stderr.write(f"\npromote: interrupted by {name}; worker threads did not stop within {GRACE_S:g} s, "
                         f"ending the process (exit {code})\n")
    exit_now(code)


def _handler(signum: int, frame: object) -> None:
    code = _CODES.get(signum, 128 + int(signum))
    if _received:  # a second signal: the user means it
        exit_now(_CODES.get(_received[0], code))
    _received.append(signum)
    threading.Thread(target=_watchdog, args=(code, signal.Signals(signum).name), name="promote-signal-watchdog",
                     daemon=True).start()
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
