"""The one apply flow every sink shares: read, compare, act only on a difference, read back.

Why one flow: the guarantees of ``sinks/api.py`` — idempotent, read back after acting, ``--dry-run`` acts on
nothing, a failing target gives ``ok=False`` and never an exception — are easy to get subtly wrong five times.
A sink supplies four small things: its current state (``state``), the state a decision wants (``want``:
``None`` when the decision changes nothing, e.g. ``hold``), whether a state satisfies a want (``satisfied``)
and how to get there (``enact``). Everything else is here.
"""

from __future__ import annotations

from typing import Any

from promote.http import HttpError
from promote.redact import redact, redact_data
from promote.sinks.api import Decision, SinkResult
from promote.sinks.options import one_line

#: Actions that set the candidate's weight (``hold`` and ``stop`` change nothing in a routing sink).
WEIGHT_ACTIONS = frozenset({"route_back", "restore", "promote"})


class TargetError(Exception):
    """The target system failed: unreachable, refused the change, or answered something unreadable."""


#: What a target's failure may raise: the sink's own TargetError, the HTTP layer's, a socket's or a file's, and a
#: document nested deeper than Python recurses (a hostile answer). Anything else is a bug and is not hidden.
FAILURES = (TargetError, HttpError, OSError, RecursionError)


def wanted_weight(decision: Decision) -> int | None:
    """The candidate's share (0..100) a decision asks a routing sink for, ``None`` when it asks for no change."""
    if decision.action not in WEIGHT_ACTIONS:
        return None
    return 0 if decision.action == "route_back" else 100 if decision.action == "promote" \
        else decision.candidate_weight


class BaseSink:
    """Subclasses set ``name`` and implement ``state``, ``want``, ``satisfied``, ``enact`` and ``describe``."""

    name = "sink"

    # -- what a sink implements ----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """The target's current state, JSON-safe, no secret; raises ``TargetError`` (or HttpError/OSError)."""
        raise NotImplementedError

    def want(self, decision: Decision) -> Any:
        """What the decision asks of this sink; ``None`` means nothing to change."""
        return wanted_weight(decision)

    def satisfied(self, state: dict[str, Any], want: Any) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def enact(self, state: dict[str, Any], want: Any, decision: Decision) -> None:  # pragma: no cover
        raise NotImplementedError

    def describe(self, state: dict[str, Any], want: Any) -> str:  # pragma: no cover - abstract
        """One line: what ``enact`` would change, from ``state`` towards ``want``."""
        raise NotImplementedError

    # -- the shared flow -----------------------------------------------------------------------------
    def read_back(self) -> dict[str, Any]:
        """The current state, or ``{"error": why}`` when the target cannot be read (never raises for that)."""
        try:
            return redact_data(self.state())
        except FAILURES as exc:
            return {"error": redact(one_line(exc))}

    def apply(self, decision: Decision, *, dry_run: bool = False) -> SinkResult:
        weight = decision.candidate_weight
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
            return self._result(False, dry_run, False, self.read_back(), f"the decision asks for a candidate weight "
                                f"of {weight!r}; a share of traffic is a whole number from 0 to 100: nothing done")
        try:
            before = self.state()
        except FAILURES as exc:
            return self._result(False, dry_run, False, {"error": one_line(exc)}, f"cannot read the target: {exc}")
        want = self.want(decision)
        if want is None:
            return self._result(True, dry_run, False, before, f"{decision.action}: nothing to change")
        if self.satisfied(before, want):
            return self._result(True, dry_run, False, before, f"{decision.action}: already as asked, nothing sent")
        if dry_run:
            return self._result(True, True, False, before, f"dry run: would {self.describe(before, want)}")
        plan = self.describe(before, want)
        try:
            self.enact(before, want, decision)
        except FAILURES as exc:  # part of a change may have been made (one weight of two): say what is true now
            after = self.read_back()
            changed = "error" not in after and after != redact_data(before)
            return self._result(False, False, changed, after, f"could not {plan}: {exc}")
        try:
            after = self.state()
        except FAILURES as exc:
            return self._result(False, False, True, {"error": one_line(exc)}, f"{plan}, but cannot read it back: {exc}")
        if not self.satisfied(after, want):
            return self._result(False, False, after != before, after,
                                f"asked to {plan}, but the target reads back a different state: someone else may "
                                "be changing it too")
        return self._result(True, False, True, after, plan)

    def _result(self, ok: bool, dry_run: bool, changed: bool, read_back: dict[str, Any], message: str) -> SinkResult:
        # a server may echo a token back in an error body: secrets are masked in whatever a result carries
        return SinkResult(sink=self.name, ok=ok, dry_run=dry_run, changed=changed, read_back=redact_data(read_back),
                          message=redact(one_line(message, 500)))
