"""Loading a kernel is paid once; CPython's cyclic collector should not make every later step pay it again.

Importing torch and transformers and loading a model creates ~400 000 long-lived objects (modules,
functions, classes, parameters). CPython's collector rescans the whole heap each time it has grown by
a quarter, so while those load it runs ~7 full collections of ever larger heaps, and one more when
numba loads its cached kernels after them: ~1 s of a 5–8 s ``promote check`` at hidden 64
(docs/performance.md, "The garbage collector while kernels load"), none of it finding more than a few
thousand dead objects.

``loading()`` holds back the collector's full collections while a kernel is built or opened (the young
generations are still collected as usual, so short-lived cycles are freed as soon as ever), then
collects the young generations once more and freezes every survivor (``gc.freeze``): later full
collections skip them. Objects freed by reference counting are freed as always, frozen or not; what
freezing keeps is an object that becomes part of an unreachable reference cycle after it reached the
oldest generation (~1 900 small objects after torch, transformers and two Llama models: import-time
frames and functions). A full collection instead of that last young one would free those too but
costs ~0.25 s, as much as the freeze saves once.

Frozen objects that die in a reference cycle are never freed while frozen: for example a cycle made while a
model loaded that still points at one of its weights. So when a kernel closes (``released()``), the next
load first gives everything back to the collector and runs one full collection, then loads: `promote
calibrate`, which loads a fresh candidate for each planted fault and closes it after its row, cannot keep
one row's leftovers through the next. A check closes its kernels only at its end, where no load follows, and
never pays for that collection.

That is a process-wide policy, so promote applies it only in a process it owns: the console entry
(``cli.main``) calls ``own_process()``; a program that imports promote (a notebook, a test session, a
rollout loop calling the Python API) keeps its collector as it was, and ``loading()`` does nothing
there. Nested and concurrent loads freeze once, when the last one ends; a collector that is off stays off.

From Python 3.14 the collector is incremental (two generations; ``gc.set_threshold`` ignores its third
value), so there is no full collection to hold back; the freeze still keeps what loaded out of its scans.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["loading", "own_process", "released"]

_NEVER = 2**31 - 1  # a full collection once the young generations have been collected this many times
HOLDS_FULL_COLLECTIONS = sys.version_info < (3, 14)  # a generational collector whose third threshold counts

_lock = threading.RLock()  # re-entrant: a finaliser run by a collection below may itself start a load
_depth = 0  # loads in progress that hold back full collections
_saved: tuple[int, ...] = ()  # the thresholds to restore when the last load ends
_owned = False  # set by own_process(): this process runs one promote command
_released = False  # a kernel closed since the last freeze: some of what was frozen may be garbage now


def own_process() -> None:
    """Let ``loading()`` set the collector's policy: called by the console entry, whose process exists
    to run one promote command."""
    global _owned
    _owned = True


def released() -> None:
    """A kernel closed: what its load froze may be cyclic garbage now; the next load collects it first."""
    global _released
    _released = True


@contextmanager
def loading() -> Iterator[None]:
    """Hold back full collections for the block (a framework import, a model's weights); when the last
    such block ends, collect the young generations, freeze the survivors and restore the thresholds."""
    global _depth, _saved, _released
    with _lock:
        held = _owned and (_depth > 0 or gc.isenabled())  # not the host's collector, nor one that is off
        if held:
            if _depth == 0:
                if _released:  # a closed kernel's frozen cycles: free them before loading the next one
                    gc.unfreeze()
                    gc.collect()
                    _released = False
                _saved = gc.get_threshold()
                if HOLDS_FULL_COLLECTIONS:
                    gc.set_threshold(_saved[0], _saved[1], _NEVER)
            _depth += 1
    ok = False
    try:
        yield
        ok = True
    finally:
        if held:
            with _lock:
                _depth -= 1
                if _depth == 0:
                    if ok:
                        gc.collect(1)  # the young generations: cheap, and frees what the load just dropped
                        gc.freeze()
                    if HOLDS_FULL_COLLECTIONS:
                        gc.set_threshold(*_saved)
