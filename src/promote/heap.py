"""Loading a kernel is paid once; CPython's cyclic collector should not make every later step pay it again.

Importing torch and transformers and loading a model creates ~400 000 long-lived objects (modules,
functions, classes, parameters). CPython's collector rescans the whole heap each time it has grown by
a quarter, so while those load it runs ~7 full collections of ever larger heaps, and one more when
numba loads its cached kernels after them: ~1 s of a 5–8 s ``promote check`` at hidden 64
(docs/performance.md, "The garbage collector while kernels load"), none of it finding more than a few
thousand dead objects.

``loading()`` pauses automatic collection while a kernel is built or opened, then collects the young
objects that load created once (its cyclic leftovers, ~10 000 small objects and a hundred frames after
torch and transformers, are freed, not kept) and freezes the survivors (``gc.freeze``), so later
collections skip them. Objects freed by reference counting are freed as always, frozen or not; what
freezing keeps is only an object alive at that moment that becomes part of a reference cycle later.

That is a process-wide policy, so promote applies it only in a process it owns: the console entry
(``cli.main``) calls ``own_process()``; a program that imports promote (a notebook, a test session, a
rollout loop calling the Python API) keeps its collector as it was, and ``loading()`` does nothing
there. Nested and concurrent loads collect and freeze once, when the last one ends; a collector that
was already off stays off.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["loading", "own_process"]

_lock = threading.Lock()
_depth = 0  # loads in progress that paused the collector
_owned = False  # set by own_process(): this process runs one promote command


def own_process() -> None:
    """Let ``loading()`` set the collector's policy: called by the console entry, whose process exists
    to run one promote command."""
    global _owned
    _owned = True


@contextmanager
def loading() -> Iterator[None]:
    """Pause the cyclic collector for the block (a framework import, a model's weights); when the last
    such block ends, collect what it left young, freeze the survivors and resume collecting."""
    global _depth
    with _lock:
        if not _owned or (_depth == 0 and not gc.isenabled()):  # the host's collector, or one already off
            paused = False
        else:
            paused = True
            _depth += 1
            gc.disable()
    ok = False
    try:
        yield
        ok = True
    finally:
        if paused:
            with _lock:
                _depth -= 1
                if _depth == 0:
                    if ok:
                        gc.collect(0)  # everything the load created is still in the youngest generation
                        gc.freeze()
                    gc.enable()
