"""Escalation policy: rule matching, defaults, verdicts and exit codes."""

from __future__ import annotations

from promote.contract.model import Escalation, Rule
from promote.policy import decide
from promote.results import ClauseResult, StageResult, worst_status


def stage(*statuses, name="numerics", slices=None):
    slices = slices or [None] * len(statuses)
    return StageResult(name=name, status=worst_status(list(statuses)), clauses=[
        ClauseResult(id=f"c{i}", stage=name, status=s, message="", slice=sl)
        for i, (s, sl) in enumerate(zip(statuses, slices, strict=True))])


def rule(action, index=0, **when):
    statuses = when.pop("status", None)
    statuses = (statuses,) if isinstance(statuses, str) else statuses
    return Rule(stage=when.get("stage"), clause=when.get("clause"), statuses=statuses, slice=when.get("slice"),
                action=action, index=index)


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
    assert d.actions[0].reason == "escalation.rules[0] (stage=numerics, clause=c*, status=fail) matched status fail"
    assert d.actions[0].rule == 0
    assert decide([stage("fail")], Escalation(rules=rules), fail_on="warn").exit_code == 1


def test_error_exits_3_and_all_skipped_is_not_a_pass():
    assert decide([stage("pass", "error")], Escalation()).exit_code == 3
    d = decide([stage("skipped")], Escalation())
    assert (d.verdict, d.exit_code) == ("error", 3)
    assert decide([], Escalation()).exit_code == 3


def test_fail_on_never_still_reports_block():
    d = decide([stage("fail")], Escalation(), fail_on="never")
    assert (d.verdict, d.exit_code) == ("block", 0)


def test_rule_without_status_never_acts_on_passing_clauses():
    esc = Escalation(rules=(rule("block", stage="numerics"),))
    d = decide([stage("pass", "pass")], esc)
    assert (d.verdict, d.exit_code) == ("pass", 0)
    assert all(a.rule is None for a in d.actions)
    # ... but an explicit `status: pass` does.
    d = decide([stage("pass")], Escalation(rules=(rule("shadow-only", status="pass"),)))
    assert (d.verdict, d.exit_code) == ("shadow-only", 1)


def test_route_to_reference_lists_the_failing_slices_only():
    esc = Escalation(rules=(rule("route-to-reference", stage="slices", slice="script=*"),))
    st = stage("fail", "pass", "inconclusive", "fail", name="slices",
               slices=["script=latn", "script=cyrl", "script=hani", None])
    d = decide([st], esc)
    assert d.routes == ["script=latn", "script=hani"]
    # The slice-less failure is not matched by a slice rule: the default (block) applies and wins.
    assert d.actions[3].action == "block" and "escalation.default (block)" in d.actions[3].reason
    assert (d.verdict, d.exit_code) == ("block", 1)
    only_sliced = decide([stage("fail", "pass", name="slices", slices=["script=latn", "script=cyrl"])], esc)
    assert (only_sliced.verdict, only_sliced.exit_code, only_sliced.routes) == ("route-to-reference", 1,
                                                                                 ["script=latn"])


def test_route_without_slice_means_all_traffic():
    d = decide([stage("fail")], Escalation(default="route-to-reference"))
    assert d.routes == ["*"]


def test_verdict_is_most_severe_action_in_severity_order():
    esc = Escalation(rules=(rule("warn", clause="c0"), rule("rollback", 1, clause="c1"),
                            rule("shadow-only", 2, clause="c2")))
    d = decide([stage("fail", "fail", "fail")], esc)
    assert d.verdict == "rollback"
    assert [a.action for a in d.actions] == ["warn", "rollback", "shadow-only"]
    warn_only = decide([stage("fail")], Escalation(rules=(rule("warn"),)))
    assert (warn_only.verdict, warn_only.exit_code) == ("warn", 0)


def test_error_wins_over_rules_that_say_pass():
    d = decide([stage("error", "fail")], Escalation(rules=(rule("pass", status=["error", "fail"]),)))
    assert (d.verdict, d.exit_code) == ("error", 3)
    assert d.actions[0].action == "pass"  # the action is still reported as the rule said


def test_unknown_fail_on_is_rejected():
    import pytest

    with pytest.raises(ValueError):
        decide([stage("pass")], Escalation(), fail_on="sometimes")


def test_contract_rules_reach_the_report_end_to_end(mini):
    import json

    from click.testing import CliRunner

    from promote.cli import cli

    path = mini.contract(candidate="build_hot", extra={"escalation": {"default": "block", "rules": [
        {"when": {"clause": "kl-*", "status": ["fail", "vacuous"]}, "action": "warn"}]}})
    result = CliRunner().invoke(cli, ["check", str(path), "--format", "json"])
    report = json.loads(result.stdout)
    kl = next(a for a in report["actions"] if a["clause"] == "kl-mean")
    assert (kl["action"], kl["rule"]) == ("warn", 0)
    assert kl["reason"] == "escalation.rules[0] (clause=kl-*, status=fail|vacuous) matched status fail"
    assert (report["verdict"], result.exit_code) == ("warn", 0)
    assert CliRunner().invoke(cli, ["check", str(path), "--fail-on", "warn"]).exit_code == 1
    text = CliRunner().invoke(cli, ["check", str(path), "--no-color"]).stdout
    assert "warn kl-mean: escalation.rules[0]" in text


def test_statuses_and_actions_are_typed_but_read_as_their_plain_strings():
    """One declaration each (results.Status, policy.ActionName); the members behave as the strings
    reports, templates and older code compare against, and a misspelt status is refused at once."""
    import json

    import pytest

    from promote.policy import ACTION_SEVERITY, ActionName
    from promote.results import GREEN, STATUS_SEVERITY, Bound, Status

    clause = ClauseResult(id="c", stage="numerics", status="fail", message="")
    assert clause.status is Status.FAIL and clause.status == "fail"
    assert (f"{clause.status}", repr(clause.status), json.dumps(clause.to_dict()["status"])) == \
        ("fail", "'fail'", '"fail"')
    assert {Status.PASS: 1}["pass"] == 1 and set(GREEN) == {"pass", "skipped"}
    assert max(STATUS_SEVERITY, key=STATUS_SEVERITY.__getitem__) == "invalid"  # not judged (issue 23)
    assert max(ACTION_SEVERITY, key=ACTION_SEVERITY.__getitem__) == ActionName.BLOCK == "block"
    with pytest.raises(ValueError, match="not a valid Status"):
        ClauseResult(id="c", stage="numerics", status="passed", message="")
    with pytest.raises(ValueError, match="bound op"):
        Bound("maximum", 1.0)
