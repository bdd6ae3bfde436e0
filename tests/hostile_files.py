"""Helpers of the tests that hand promote files it must not trust (issue 19)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def returned_or_raised(call: Callable[[], Any]) -> Any:
    """What ``call`` returns, or the exception it raises (for a call made in a thread)."""
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - returned for the caller to check
        return exc


def without_blocking(call: Callable[[], Any], fifo: Path) -> Any:
    """Run ``call`` in a thread and return its result (or exception). If it is still blocked after 60 s
    (a guard, not a timing assertion: reading a FIFO with no writer blocks forever), open the FIFO's
    writing end so the reader ends, then fail."""
    done: list = []
    worker = threading.Thread(target=lambda: done.append(returned_or_raised(call)), daemon=True)
    worker.start()
    worker.join(60)
    if not done:
        with open(fifo, "wb"):
            pass
        pytest.fail(f"blocked on the FIFO {fifo}")
    return done[0]
