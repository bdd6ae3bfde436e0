"""Escalation policy Π: clause results → actions → verdict and exit code (DESIGN.md §7).

A pure function, no I/O. The first matching rule decides a clause's action; clauses no rule matches
get ``pass`` when they passed (or were skipped) and the contract's default action otherwise — so
``vacuous`` and ``inconclusive`` are routed like violations, never waved through. A clause that
could not be evaluated (``error``) makes the run exit 3 whatever the rules say.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass
from typing import Any

from promote.errors import EXIT_COULD_NOT_EVALUATE, EXIT_GATE_FAILED, EXIT_PASS
from promote.results import ClauseResult, StageResult

ACTION_SEVERITY = {"pass": 0, "warn": 1, "shadow-only": 2, "route-to-reference": 3, "rollback": 4, "block": 5}
FAIL_ON = ("fail", "warn", "never")


@dataclass
class Action:
    clause: str
    stage: str
    status: str
    action: str
    reason: str
    slice: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Decision:
    actions: list[Action]
    verdict: str
    exit_code: int

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "exit_code": self.exit_code, "actions": [a.to_dict() for a in self.actions]}


def _matches(rule: Any, clause: ClauseResult) -> bool:
    if rule.stage is not None and rule.stage != clause.stage:
        return False
    if rule.clause is not None and not fnmatch.fnmatchcase(clause.id, rule.clause):
        return False
    if rule.statuses is not None and clause.status not in rule.statuses:
        return False
    return not (rule.slice is not None and not fnmatch.fnmatchcase(clause.slice or "", rule.slice))


def _action_for(clause: ClauseResult, escalation: Any) -> Action:
    for rule in escalation.rules:
        if _matches(rule, clause):
            return Action(clause.id, clause.stage, clause.status, rule.action,
                          f"escalation.rules[{rule.index}] matched", clause.slice)
    if clause.status in ("pass", "skipped"):
        return Action(clause.id, clause.stage, clause.status, "pass", f"status {clause.status}", clause.slice)
    if clause.status == "warn":
        return Action(clause.id, clause.stage, clause.status, "warn", "clause severity is warn", clause.slice)
    return Action(clause.id, clause.stage, clause.status, escalation.default,
                  f"status {clause.status}; no rule matched, escalation.default", clause.slice)


def decide(stages: list[StageResult], escalation: Any, *, fail_on: str = "fail") -> Decision:
    """Actions for every clause, the verdict (most severe action) and the exit code.

    Verdict: ``error`` if any clause could not be evaluated, else ``pass``/``warn`` or the most
    severe action. ``fail_on``: ``fail`` exits 1 on blocking actions, ``warn`` also on warnings,
    ``never`` reports but exits 0 (errors still exit 3: nothing was judged).
    """
    actions = [_action_for(c, escalation) for s in stages for c in s.clauses]
    if any(a.status == "error" for a in actions):
        return Decision(actions, "error", EXIT_COULD_NOT_EVALUATE)
    if all(a.status == "skipped" for a in actions):  # nothing was judged: never a pass
        return Decision(actions, "error", EXIT_COULD_NOT_EVALUATE)
    worst = max((a.action for a in actions), key=ACTION_SEVERITY.__getitem__)
    gate_failed = ACTION_SEVERITY[worst] >= ACTION_SEVERITY["shadow-only"] or (fail_on == "warn" and worst == "warn")
    exit_code = EXIT_GATE_FAILED if gate_failed and fail_on != "never" else EXIT_PASS
    return Decision(actions, worst, exit_code)
