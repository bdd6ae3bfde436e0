"""The sink protocol shared by ``promote watch`` (the loop) and every sink (issue 24).

A sink turns a ``Decision`` into the state of a system that routes traffic, idempotently, and reads back
the state it set so the audit log records what is true, not what was asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from promote.registry import Registry

#: ``route_back``: send the candidate's traffic to the reference (candidate weight 0);
#: ``restore``: give the candidate its canary weight again; ``hold``: change nothing (inconclusive);
#: ``promote``: the candidate takes all traffic; ``stop``: the loop ends (e.g. an ``invalid`` identity).
DecisionAction = Literal["route_back", "restore", "hold", "promote", "stop"]


@dataclass(frozen=True)
class Decision:
    """What one window decided, in the terms every sink understands."""

    action: DecisionAction
    candidate_weight: int  # the candidate's share of traffic to set, 0..100
    window: int  # the window's sequence number in this watch
    verdict: str  # the window's verdict: pass, fail, inconclusive, invalid, error...
    reason: str  # one line: why this action (k bad windows, m clean windows, missing data...)
    contract_sha256: str
    candidate_digest: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SinkResult:
    """What a sink did: whether it acted, and the state it read back afterwards."""

    sink: str
    ok: bool  # the state read back equals the state the decision asked for (or dry-run)
    dry_run: bool
    changed: bool  # False when the state already was the asked-for one (idempotent no-op)
    read_back: dict[str, Any] = field(default_factory=dict)  # JSON-safe, secrets never included
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Sink(Protocol):
    """One place a decision is enacted. ``apply`` must be idempotent and must not raise for a failure of
    the target system (it returns ``ok=False`` with the message); ``read_back`` returns the current state."""

    name: str

    def apply(self, decision: Decision, *, dry_run: bool = False) -> SinkResult: ...

    def read_back(self) -> dict[str, Any]: ...


#: Builds one sink from its options: ``factory(options, where) -> Sink``. ``options`` is the mapping of one
#: sink (from the contract's ``watch.sinks`` list or one ``--sink`` flag, ``kind`` already removed); ``where``
#: names that source for messages (``"--sink haproxy"``, ``"contract.yaml: watch.sinks[0]"``). Bad options
#: raise ``promote.errors.UsageError`` naming ``where``, the key and the fix (exit 2); nothing is contacted.
SinkFactory = Callable[[Mapping[str, Any], str], Sink]

#: Sink factories by ``kind``: ``haproxy``, ``httproute``, ``argo-abort``, ``flagd``, ``webhook``.
SINKS: Registry[SinkFactory] = Registry("sink")
