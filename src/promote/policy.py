"""Escalation policy Π: clause results → actions → verdict and exit code (docs/contract.md, `escalation`).

A pure function, no I/O. The first matching rule decides a clause's action; clauses no rule matches
get ``pass`` when they passed (or were skipped) and the contract's default action otherwise — so
``vacuous`` and ``inconclusive`` are routed like violations, never waved through. A clause that
could not be evaluated (``error``) makes the run exit 3 whatever the rules say, and so does an
identity finding of severity ``invalid`` (docs/identity.md): the verdict is then ``invalid``, the
stages are not judged (their clauses carry status ``invalid``) and no rule applies.

Matching (all given conditions must hold; omitted ones match anything):
- ``stage``: equal to the clause's stage;
- ``clause``: shell glob on the clause id (``kl-*``);
- ``slice``: shell glob on the clause's slice (``script=*``); a rule that names a slice never matches
  a clause evaluated on all data (it has no slice);
- ``status``: one status or a list. A rule **without** ``status`` matches only clauses that did not
  pass (anything but ``pass``/``skipped``): ``{when: {slice: "script=*"}, action: route-to-reference}``
  routes the failing scripts, not every script. To act on passing clauses, say ``status: pass``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from promote.errors import EXIT_COULD_NOT_EVALUATE, EXIT_GATE_FAILED, EXIT_PASS
from promote.findings import Finding, is_invalid
from promote.results import GREEN, Choice, ClauseResult, StageResult, Status

__all__ = ["ACTIONS", "ACTION_SEVERITY", "ALL_TRAFFIC", "FAIL_ON", "GREEN", "VERDICTS", "Action", "ActionName",
           "Decision", "decide", "describe_rule", "routes"]


class ActionName(Choice):
    """What the policy does with a clause; the member order is the severity order, mildest first."""

    PASS = "pass"
    WARN = "warn"
    SHADOW_ONLY = "shadow-only"
    ROUTE_TO_REFERENCE = "route-to-reference"
    ROLLBACK = "rollback"
    BLOCK = "block"


ACTIONS: tuple[str, ...] = tuple(a.value for a in ActionName)
ACTION_SEVERITY: dict[str, int] = {a.value: rank for rank, a in enumerate(ActionName)}
#: A run's verdict: its most severe action, ``error`` when a clause could not be evaluated, or ``invalid``
#: when the identity check found the two sides do not compute on the same thing (exit 3 both).
VERDICTS: tuple[str, ...] = (*ACTIONS, Status.ERROR.value, Status.INVALID.value)
#: The action every clause of an ``invalid`` run gets: it is never promoted, whatever the rules say.
INVALID_REASON = "status invalid: not judged (the identity check found a mismatch); no rule applies"
FailOn = Literal["fail", "warn", "never"]
FAIL_ON: tuple[str, ...] = ("fail", "warn", "never")
ALL_TRAFFIC = "*"


@dataclass
class Action:
    """What the policy did with one clause result, and why (quoted in every report)."""

    clause: str
    stage: str
    status: Status
    action: ActionName
    reason: str
    slice: str | None = None
    rule: int | None = None

    def __post_init__(self) -> None:
        self.status, self.action = Status(self.status), ActionName(self.action)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Decision:
    """Every action, the verdict, the exit code and the traffic that must fall back to K_ref."""

    actions: list[Action]
    verdict: str  # one of VERDICTS
    exit_code: int
    routes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, not {self.verdict!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "exit_code": self.exit_code, "routes": list(self.routes),
                "actions": [a.to_dict() for a in self.actions]}


def describe_rule(rule: Any) -> str:
    """``escalation.rules[1] (stage=numerics, clause=kl-*, status=fail)``: a rule as a reader finds it."""
    conditions = []
    if rule.stage is not None:
        conditions.append(f"stage={rule.stage}")
    if rule.clause is not None:
        conditions.append(f"clause={rule.clause}")
    if rule.slice is not None:
        conditions.append(f"slice={rule.slice}")
    conditions.append("status=" + ("|".join(rule.statuses) if rule.statuses is not None else "not pass"))
    return f"escalation.rules[{rule.index}] ({', '.join(conditions)})"


def _matches(rule: Any, clause: ClauseResult) -> bool:
    if rule.stage is not None and rule.stage != clause.stage:
        return False
    if rule.clause is not None and not fnmatch.fnmatchcase(clause.id, rule.clause):
        return False
    if rule.slice is not None and (clause.slice is None or not fnmatch.fnmatchcase(clause.slice, rule.slice)):
        return False
    if rule.statuses is None:
        return clause.status not in GREEN
    return clause.status in rule.statuses


def _action_for(clause: ClauseResult, escalation: Any) -> Action:
    def act(action: str, reason: str, rule: int | None = None) -> Action:
        return Action(clause.id, clause.stage, clause.status, action, reason, clause.slice, rule)

    if clause.status == "invalid":
        return act("block", INVALID_REASON)
    for rule in escalation.rules:
        if _matches(rule, clause):
            return act(rule.action, f"{describe_rule(rule)} matched status {clause.status}", rule.index)
    if clause.status in GREEN:
        return act("pass", f"status {clause.status}; no rule matched")
    if clause.status == "warn":
        return act("warn", "status warn (clause severity is warn); no rule matched")
    return act(escalation.default, f"status {clause.status}; no rule matched, so escalation.default "
                                   f"({escalation.default}) applies")


def routes(actions: list[Action]) -> list[str]:
    """Slices that must fall back to the reference kernel, in first-seen order (``*``: all traffic)."""
    out: list[str] = []
    for a in actions:
        if a.action == "route-to-reference":
            target = a.slice or ALL_TRAFFIC
            if target not in out:
                out.append(target)
    return out


def decide(stages: list[StageResult], escalation: Any, *, fail_on: FailOn = "fail",
           findings: list[Finding] | tuple[Finding, ...] = ()) -> Decision:
    """Actions for every clause, the verdict (most severe action) and the exit code.

    Verdict: ``invalid`` if an identity finding (``findings``) or a clause says so, else ``error`` if
    any clause could not be evaluated, else ``pass``/``warn`` or the most severe action. ``fail_on``:
    ``fail`` exits 1 on blocking actions (shadow-only and worse), ``warn`` also on warnings, ``never``
    reports but exits 0 (errors and invalid runs still exit 3: nothing was judged).
    """
    if fail_on not in FAIL_ON:
        raise ValueError(f"fail_on must be one of {FAIL_ON}, not {fail_on!r}")
    actions = [_action_for(c, escalation) for s in stages for c in s.clauses]
    routed = routes(actions)
    if is_invalid(list(findings)) or any(a.status == "invalid" for a in actions):
        return Decision(actions, "invalid", EXIT_COULD_NOT_EVALUATE, routed)
    if any(a.status == "error" for a in actions):
        return Decision(actions, "error", EXIT_COULD_NOT_EVALUATE, routed)
    if all(a.status == "skipped" for a in actions):  # nothing was judged: never a pass
        return Decision(actions, "error", EXIT_COULD_NOT_EVALUATE, routed)
    worst = max((a.action for a in actions), key=ACTION_SEVERITY.__getitem__)
    gate_failed = ACTION_SEVERITY[worst] >= ACTION_SEVERITY["shadow-only"] or (fail_on == "warn" and worst == "warn")
    exit_code = EXIT_GATE_FAILED if gate_failed and fail_on != "never" else EXIT_PASS
    return Decision(actions, worst, exit_code, routed)
