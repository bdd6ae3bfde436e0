"""A report read back must say what its clauses say: the verdict is re-derived, never trusted.

``render`` and ``comment --report`` turn a JSON artifact into the PR comment a reviewer acts on. A
report edited to read ``"verdict": "pass"`` over failed clauses would show "Promotion allowed". The
contract's escalation rules are not in the report, but each clause's action is (``actions``, with
the rule that chose it), so this checks what the policy (``policy.decide``) guarantees: one action
per clause with the clause's status; an action no rule chose follows from the status alone; the
verdict is ``invalid`` when the identity findings or a clause say so (docs/identity.md), else ``error``
when a clause could not be evaluated or none was judged, else the most severe action; the exit code and
routes follow from those. Any disagreement is exit 2 naming the file.
"""

from __future__ import annotations

from promote.errors import EXIT_COULD_NOT_EVALUATE, EXIT_GATE_FAILED, EXIT_PASS, PromoteError
from promote.findings import is_invalid
from promote.policy import ACTION_SEVERITY, GREEN, routes
from promote.report.model import Report


def _unruled(status: str, action: str) -> bool:
    """The action the policy gives a clause no rule matched (``policy._action_for``)."""
    if status == "invalid":
        return action == "block"  # never judged: no rule applies
    if status in GREEN:
        return action == "pass"
    if status == "warn":
        return action == "warn"
    return action != "pass"  # escalation.default: never a pass for fail/inconclusive/vacuous/error


def derived_verdict(report: Report, where: str) -> str:
    """The verdict the clause statuses and their recorded actions give; PromoteError if they disagree."""
    clauses = [c for s in report.stages for c in s.clauses]
    actions = report.decision.actions
    if len(actions) != len(clauses):
        raise PromoteError(f"{where}: {len(actions)} actions for {len(clauses)} clauses; the report was edited or "
                           "is not promote's: render the report promote wrote")
    for clause, action in zip(clauses, actions, strict=True):
        same = (action.clause, action.stage, action.status, action.slice) == \
            (clause.id, clause.stage, clause.status, clause.slice)
        # an invalid clause follows no rule; an unruled action follows from the status alone
        wrong = (action.rule is not None and clause.status == "invalid") or (
            action.rule is None and not _unruled(clause.status, action.action))
        if not same or wrong or action.action not in ACTION_SEVERITY:
            raise PromoteError(f"{where}: the action recorded for clause {clause.id[:80]!r} ({action.action[:40]!r} "
                               f"for status {action.status[:20]!r}) does not follow from the clause (status "
                               f"{clause.status!r}); the report was edited: render the report promote wrote")
    if report.identity is not None and report.identity.invalid != is_invalid(report.identity.findings):
        raise PromoteError(f"{where}: `identity.invalid` disagrees with its findings; the report was edited")
    if is_invalid(report.findings) or any(a.status == "invalid" for a in actions):
        return "invalid"
    if not actions or any(a.status == "error" for a in actions) or all(a.status == "skipped" for a in actions):
        return "error"
    return max((a.action for a in actions), key=ACTION_SEVERITY.__getitem__)


def check_verdict(report: Report, where: str) -> None:
    """Refuse (exit 2) a report whose verdict, exit code or routes disagree with its clauses."""
    verdict = derived_verdict(report, where)
    if report.verdict != verdict:
        raise PromoteError(f"{where}: the report's verdict {report.verdict[:40]!r} disagrees with its clauses, which "
                           f"give {verdict!r}; the report was edited: render the report promote wrote")
    if verdict in ("error", "invalid"):
        allowed = {EXIT_COULD_NOT_EVALUATE}
    elif ACTION_SEVERITY[verdict] >= ACTION_SEVERITY["warn"]:
        allowed = {EXIT_PASS, EXIT_GATE_FAILED}  # --fail-on decides; it is not in the report
    else:
        allowed = {EXIT_PASS}
    if report.exit_code not in allowed:
        raise PromoteError(f"{where}: exit code {report.exit_code} does not follow from verdict {verdict!r}; the "
                           "report was edited: render the report promote wrote")
    if list(report.decision.routes) != routes(report.decision.actions):
        raise PromoteError(f"{where}: the report's routes disagree with its actions; the report was edited")
