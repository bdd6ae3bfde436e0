"""Progress of a long kernel run on stderr, in the form the place it lands can show.

Why a module of its own: a terminal wants one line rewritten in place (``\\r``), but a CI log keeps
every byte, so ``\\r`` there turns into hundreds of fragments or one endless line, and a job that is
silent for minutes looks hung. So there are two modes: ``tty`` (one line updated in place, shown
once the run has taken ``after_s``) and ``lines`` (a plain newline-terminated line at most every
``every_s``, plus the final one). The clock and the stream are injected, so tests drive time by hand.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import TextIO

__all__ = ["MODES", "Progress", "default_mode", "progress_printer"]

MODES = ("tty", "lines")

#: ``show(done, total)``: called after each batch with samples done so far and the total.
Progress = Callable[[int, int], None]


def default_mode(flag: bool | None, *, stderr_is_tty: bool, env: Mapping[str, str] | None = None) -> str | None:
    """Which progress display a run gets.

    ``--progress``/``--no-progress`` win (``--progress`` away from a terminal prints lines); by
    default a terminal gets the in-place line, a CI job (``CI=true``, as GitHub Actions, GitLab and
    most CI systems set it) gets a line every ~10 s, and anything else (a pipe, a file) gets none.
    """
    if flag is False:
        return None
    if stderr_is_tty:
        return "tty"
    if flag:
        return "lines"
    ci = (os.environ if env is None else env).get("CI", "")
    return "lines" if ci.strip().lower() in ("true", "1", "yes") else None


def progress_printer(mode: str | bool | None, *, clock: Callable[[], float] | None = None,
                     stream: TextIO | None = None, after_s: float = 2.0, every_s: float = 10.0) -> Progress | None:
    """A ``show(done, total)`` callback for ``mode`` (None or False: no display).

    ``True`` means ``tty`` (what ``--progress`` meant before the modes existed). ``clock`` defaults
    to ``monotonic`` of this module (a seam tests replace).
    """
    if not mode:
        return None
    if mode is True:
        mode = "tty"
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {MODES}, not {mode!r}")
    clock = clock or monotonic
    start = clock()
    last_line = [start]

    def show(done: int, total: int) -> None:
        out = stream if stream is not None else sys.stderr
        now = clock()
        elapsed = now - start
        finished = done >= total
        if mode == "lines":
            if not finished and now - last_line[0] < every_s:
                return
            if finished and elapsed < after_s:
                return  # a short run needs no progress at all
            last_line[0] = now
            out.write(_text(done, total, elapsed) + "\n")
        else:
            if elapsed < after_s:
                return
            out.write("\r" + _text(done, total, elapsed) + " ")
            if finished:
                out.write("\n")
        out.flush()

    return show


def monotonic() -> float:
    """Seconds from a clock that never goes back (the default clock of ``progress_printer``)."""
    return time.monotonic()


def _text(done: int, total: int, elapsed: float) -> str:
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate else 0.0
    return f"promote: numerics {done}/{total} samples, {elapsed:.0f}s elapsed, ~{eta:.0f}s left"
