"""One sink from one entry as a contract's ``watch.sinks`` or a ``--sink`` flag gives it: ``kind`` plus options.

Why beside the registry: an unknown ``kind`` must be the same usage error (exit 2, naming where, the kinds there
are and the closest one) whichever road the entry came by, and ``SINKS.get`` raises a ``KeyError`` meant for
programmers.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from promote.errors import UsageError
from promote.sinks.api import SINKS, Sink


def build_sink(entry: Mapping[str, Any], where: str) -> Sink:
    """The sink ``entry`` describes (``{"kind": "haproxy", "socket": ..., ...}``); UsageError when it is wrong."""
    if not isinstance(entry, Mapping):
        raise UsageError(f"{where}: a sink is a mapping with `kind` and that sink's options")
    kind = entry.get("kind")
    kinds = SINKS.names()
    if not isinstance(kind, str) or kind not in SINKS:
        close = difflib.get_close_matches(str(kind), kinds, n=1, cutoff=0.6)
        hint = f"did you mean `{close[0]}`? " if close else ""
        shown = "missing" if kind is None else f"{kind!r}"
        raise UsageError(f"{where}: `kind` is {shown}; {hint}the sinks are {', '.join(f'`{k}`' for k in kinds)}")
    return SINKS.get(kind)({k: v for k, v in entry.items() if k != "kind"}, where)
