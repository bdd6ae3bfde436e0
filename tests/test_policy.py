"""Escalation policy: rule matching, defaults, verdicts and exit codes."""

from __future__ import annotations

from promote.contract.model import Escalation, Rule
from promote.policy import decide
from promote.results import ClauseResult, StageResult


def stage(*statuses, name="numerics"):
    return StageResult(name=name, status="x", clauses=[
        ClauseResult(id=f"c{i}", stage=name, status=s, message="") for i, s in enumerate(statuses)])


def test_all_pass():
    d = decide([stage("pass", "pass")], Escalation())
    assert (d.verdict, d.exit_code) == ("pass", 0)


def test_fail_blocks_by_default_and_vacuous_too():
    assert decide([stage("pass", "fail")], Escalation()).exit_code == 1
    d = decide([stage("vacuous")], Escalation())
    assert (d.verdict, d.exit_code) == ("block", 1)
    assert "escalation.default" in d.actions[0].reason


def test_rule_first_match_wins_with_glob():
    rules = (Rule(stage="numerics", clause="c*", statuses=("fail",), slice=None, action="warn", index=0),
             Rule(stage=None, clause=None, statuses=None, slice=None, action="block", index=1))
    d = decide([stage("fail")], Escalation(rules=rules))
    assert (d.verdict, d.exit_code) == ("warn", 0)
    assert d.actions[0].reason == "escalation.rules[0] matched"
    assert decide([stage("fail")], Escalation(rules=rules), fail_on="warn").exit_code == 1


def test_error_exits_3_and_all_skipped_is_not_a_pass():
    assert decide([stage("pass", "error")], Escalation()).exit_code == 3
    d = decide([stage("skipped")], Escalation())
    assert (d.verdict, d.exit_code) == ("error", 3)
    assert decide([], Escalation()).exit_code == 3


def test_fail_on_never_still_reports_block():
    d = decide([stage("fail")], Escalation(), fail_on="never")
    assert (d.verdict, d.exit_code) == ("block", 0)
