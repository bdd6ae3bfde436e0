"""The decision rules of `promote watch`: a window outcome in, an action and the candidate weight out.

- **Missing data fails, never passes**: ``window.py`` makes a window with nothing judged, an error, a
  vacuous clause or no prompts a ``bad`` window; nothing here can read it as clean.
- **Trip fast**: ``trip_after`` (k) bad windows in a row route the candidate's traffic back (weight 0).
- **Restore slowly**: once routed back, ``restore_after`` (m) clean windows in a row *and* at least
  ``min_wait_s`` since the route-back give the candidate its canary weight again.
- **Inconclusive holds** the current weight and never promotes (it breaks a clean streak).
- **No re-promotion without a new candidate digest**: a digest promoted once is never promoted again;
  a new digest starts fresh streaks (its weight stays where the system is).
- **Invalid stops**: an ``invalid`` outcome (the candidate is not what it claims, issue 23) routes back
  and ends the loop.

Pure: ``step`` returns the new state, so every rule is unit-tested without a clock or a server; the
state is JSON so the audit log carries it and a restarted watch resumes from the last record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

OUTCOMES = ("clean", "bad", "inconclusive", "invalid")


@dataclass(frozen=True)
class Rules:
    trip_after: int = 1  # k
    restore_after: int = 3  # m
    min_wait_s: float = 300.0
    promote_after: int | None = None  # clean windows in a row before promoting; None: never promote
    canary_weight: int = 10  # the candidate's share (0..100) while it is a canary


@dataclass(frozen=True)
class State:
    """Where the rollout stands after a window (JSON in every audit record)."""

    phase: str = "canary"  # canary | routed_back | promoted | stopped
    weight: int = 10
    bad_streak: int = 0
    clean_streak: int = 0
    routed_back_at: float | None = None  # seconds (the loop's clock) of the last route-back
    digest: str = ""
    promoted: tuple[str, ...] = field(default_factory=tuple)  # digests promoted once (never again)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["promoted"] = list(self.promoted)
        return out

    @classmethod
    def from_json(cls, data: Any) -> State:
        """The state an audit record carries (a restarted watch resumes from it); ValueError if malformed."""
        if not isinstance(data, dict):
            raise ValueError("`state` is not an object")
        try:
            state = cls(phase=str(data["phase"]), weight=int(data["weight"]), bad_streak=int(data["bad_streak"]),
                        clean_streak=int(data["clean_streak"]),
                        routed_back_at=None if data.get("routed_back_at") is None else float(data["routed_back_at"]),
                        digest=str(data["digest"]), promoted=tuple(str(d) for d in data.get("promoted", [])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"`state` is malformed ({exc})") from None
        if state.phase not in ("canary", "routed_back", "promoted", "stopped") or not 0 <= state.weight <= 100:
            raise ValueError(f"`state` has phase {state.phase!r} and weight {state.weight}")
        return state


@dataclass(frozen=True)
class Step:
    """One decision: the action (``sinks.api.DecisionAction``), the new state, and why."""

    action: str
    state: State
    reason: str


def initial(rules: Rules, digest: str) -> State:
    return State(weight=rules.canary_weight, digest=digest)


def step(rules: Rules, state: State, outcome: str, digest: str, now: float) -> Step:
    """The decision for one window's ``outcome`` (``OUTCOMES``) about candidate ``digest`` at time ``now``."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown window outcome {outcome!r}")
    if digest != state.digest:  # a new candidate: fresh streaks, the system's weight unchanged
        state = replace(state, digest=digest, bad_streak=0, clean_streak=0)
        if state.phase == "stopped":
            state = replace(state, phase="routed_back")
    if outcome == "invalid":
        return Step("stop", replace(state, phase="stopped", weight=0, clean_streak=0, routed_back_at=now),
                    "the window's verdict is `invalid`: the candidate is not what it claims; routed back and stopped")
    if outcome == "bad":
        return _bad(rules, replace(state, bad_streak=state.bad_streak + 1, clean_streak=0), now)
    if outcome == "inconclusive":
        return Step("hold", replace(state, clean_streak=0),
                    f"inconclusive: holding weight {state.weight} (inconclusive never promotes or restores)")
    return _clean(rules, replace(state, clean_streak=state.clean_streak + 1, bad_streak=0), now)


def _bad(rules: Rules, state: State, now: float) -> Step:
    if state.phase == "routed_back":
        return Step("hold", state, f"bad window while routed back: weight stays 0 ({state.bad_streak} bad in a row)")
    if state.bad_streak >= rules.trip_after:
        return Step("route_back", replace(state, phase="routed_back", weight=0, routed_back_at=now),
                    f"{state.bad_streak} bad window(s) in a row (trip_after {rules.trip_after}): traffic routed "
                    "back to the reference")
    return Step("hold", state, f"{state.bad_streak} bad window(s) in a row, below trip_after {rules.trip_after}: "
                               f"holding weight {state.weight}")


def _clean(rules: Rules, state: State, now: float) -> Step:
    if state.phase == "routed_back":
        waited = now - (state.routed_back_at if state.routed_back_at is not None else now)
        if state.clean_streak >= rules.restore_after and waited >= rules.min_wait_s:
            return Step("restore", replace(state, phase="canary", weight=rules.canary_weight, clean_streak=0),
                        f"{state.clean_streak} clean windows in a row (restore_after {rules.restore_after}) and "
                        f"{waited:.0f} s since the route-back (min_wait {rules.min_wait_s:g} s): canary weight "
                        f"{rules.canary_weight} restored")
        return Step("hold", state, f"clean while routed back: {state.clean_streak}/{rules.restore_after} clean "
                                   f"windows, {waited:.0f}/{rules.min_wait_s:g} s waited; weight stays 0")
    if state.phase == "canary" and rules.promote_after is not None and state.clean_streak >= rules.promote_after:
        if state.digest in state.promoted:
            return Step("hold", state, f"clean, but candidate {state.digest} was promoted once already: no "
                                       "re-promotion without a new candidate digest")
        return Step("promote", replace(state, phase="promoted", weight=100, promoted=(*state.promoted, state.digest)),
                    f"{state.clean_streak} clean windows in a row (promote_after {rules.promote_after}): promoted")
    return Step("hold", state, f"clean ({state.clean_streak} in a row): holding weight {state.weight}")
