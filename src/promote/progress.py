"""Progress of a long run on stderr, in the form the place it lands can show.

Why a module of its own: a terminal wants one line rewritten in place (``\\r``), but a CI log or a
pipe keeps every byte, so ``\\r`` there turns into hundreds of fragments or one endless line, and a
job that is silent for minutes looks hung (a piped first run of the example once printed nothing
for 105 s). So there are two modes: ``tty`` (one line updated in place, shown once the run has
taken ``after_s``) and ``lines`` (a plain newline-terminated line: one when the run starts, then
at most one every ``every_s`` from the batches and from a heartbeat thread that speaks for the
phases with no batches — building kernels, compiling, a stage of HTTP requests — plus the final
one). The clock and the stream are injected, so tests drive time by hand.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["EVERY_S", "MODES", "Progress", "ProgressPrinter", "default_mode", "progress_printer"]

MODES = ("tty", "lines")
EVERY_S = 5.0
"""Seconds between two plain lines (``lines`` mode)."""

#: ``show(done, total)``: called after each batch with samples done so far and the total.
Progress = Callable[[int, int], None]


def default_mode(flag: bool | None, *, stderr_is_tty: bool) -> str | None:
    """Which progress display a run gets.

    ``--no-progress`` turns it off; otherwise a terminal gets the in-place line and anything else
    (a pipe, a file, a CI log) plain lines, so a piped or captured run is never silent for long.
    """
    if flag is False:
        return None
    return "tty" if stderr_is_tty else "lines"


class ProgressPrinter:
    """A ``show(done, total)`` callback plus the run's phases (``begin``, ``phase``, ``end``).

    ``lines`` mode prints a line at ``begin`` and keeps a daemon thread that prints the current
    phase when nothing was printed for ``every_s``; ``end`` stops it. ``tty`` mode ignores phases.
    """

    def __init__(self, mode: str, *, clock: Callable[[], float], stream: TextIO | None, after_s: float,
                 every_s: float) -> None:
        self.mode, self.clock, self.stream, self.after_s, self.every_s = mode, clock, stream, after_s, every_s
        self.start = self.last_line = clock()
        self.what, self.counts = "starting", None  # the phase, and (done, total) of its batches
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        self.counts = (done, total)
        elapsed, finished = now - self.start, done >= total
        if self.mode == "lines":
            if (not finished and now - self.last_line < self.every_s) or (finished and elapsed < self.after_s):
                return  # a short run needs no progress at all
            self._line(self._status(now), now)
        elif elapsed >= self.after_s:
            with self._lock:
                out = self._out()
                out.write("\r" + _text(self.what, done, total, elapsed) + " " + ("\n" if finished else ""))
                out.flush()

    def begin(self, what: str) -> None:
        """The run starts: say so at once (``lines``) and start the heartbeat."""
        if self.mode != "lines":
            return
        self._line(f"promote: {what} (a progress line every {self.every_s:.0f} s; --no-progress hides them)",
                   self.clock())
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, args=(self._out(),), name="promote-progress",
                                        daemon=True)
        self._thread.start()

    def phase(self, what: str) -> None:
        """Name what the run does now (a stage); its batch counts start again."""
        self.what, self.counts = what, None

    def end(self) -> None:
        """Stop the heartbeat (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _beat(self, out: TextIO) -> None:
        poll = min(1.0, self.every_s / 2)
        while not self._stop.wait(poll):
            now = self.clock()
            if now - self.last_line >= self.every_s:
                self._line(self._status(now), now, out)

    def _status(self, now: float) -> str:
        if self.counts is None:
            return f"promote: {self.what}, {now - self.start:.0f}s elapsed"
        return _text(self.what, *self.counts, now - self.start)

    def _line(self, text: str, now: float, out: TextIO | None = None) -> None:
        with self._lock:
            self.last_line = now
            out = out or self._out()
            out.write(text + "\n")
            out.flush()

    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr


def progress_printer(mode: str | bool | None, *, clock: Callable[[], float] | None = None,
                     stream: TextIO | None = None, after_s: float = 2.0,
                     every_s: float = EVERY_S) -> ProgressPrinter | None:
    """A printer for ``mode`` (None or False: no display).

    ``True`` means ``tty`` (what ``--progress`` meant before the modes existed). ``clock`` defaults
    to ``monotonic`` of this module (a seam tests replace).
    """
    if not mode:
        return None
    if mode is True:
        mode = "tty"
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {MODES}, not {mode!r}")
    return ProgressPrinter(mode, clock=clock or monotonic, stream=stream, after_s=after_s, every_s=every_s)


def monotonic() -> float:
    """Seconds from a clock that never goes back (the default clock of ``progress_printer``)."""
    return time.monotonic()


def _text(what: str, done: int, total: int, elapsed: float) -> str:
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate else 0.0
    return f"promote: {what} {done}/{total} samples, {elapsed:.0f}s elapsed, ~{eta:.0f}s left"
