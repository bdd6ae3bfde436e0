"""Renderings: golden markdown (normal, all-pass, many failures, hostile, oversized), escaping filters,
text colour, JUnit, and the JSON report against its schema. Regenerate goldens with UPDATE_GOLDEN=1."""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
from reports import clause, invalid_report, make_report, normal_report

from promote.contract.model import Rule
from promote.report import filters
from promote.report.model import Report
from promote.report.render import (
    COMMENT_BUDGET,
    RenderError,
    render_comment,
    render_junit,
    render_markdown,
    render_minimal_comment,
    render_summary,
    render_text,
)
from promote.resources import load_schema
from promote.results import Bound

GOLDEN = Path(__file__).parent / "golden"
HOSTILE = "evil | <script>alert(1)</script> `tick` **bold** [x](http://e.vil) --> ::error::pwned"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"golden file {path} missing; run with UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


def all_pass_report() -> Report:
    return make_report([clause("kl-mean", "pass", 2e-4, bound=1e-3),
                        clause("argmax", "pass", 0.995, op="min", bound=0.98, metric="argmax_agree")])


def many_failures_report() -> Report:
    return make_report([clause(f"kl-{i:02d}", "fail", 1e-3 * (i + 2), bound=1e-3) for i in range(40)]
                       + [clause("ok", "pass", 0.0, bound=1.0)])


def hostile_report() -> Report:
    return make_report(
        [clause("kl-mean", "fail", 2e-3, bound=1e-3, message=HOSTILE + "\n::warning::second line"),
         clause("slice-kl", "fail", 3e-3, bound=1e-3, stage="slices", slice='script="x"|`y`<b>'),
         clause("slice-kl", "pass", 1e-4, bound=1e-3, stage="slices", slice="script=]latn[")],
        name=HOSTILE, command="promote check 'we```ird.yaml'",
        rules=(Rule(stage="slices", clause=None, statuses=None, slice="*", action="route-to-reference", index=0),))


def oversized_report() -> Report:
    """Long multi-byte messages and slice values (eval-set tags are free text) everywhere."""
    long = "é漢🙂x" * 400
    clauses = [clause(f"c{i:04d}", "fail", float(i), bound=0.5, message=long) for i in range(300)]
    clauses += [clause(f"p{i:04d}", "pass", 0.1, bound=0.5, message=long, slice=f"lang=l{i:03d}{long}",
                       stage="slices") for i in range(300)]
    clauses += [clause("slice-kl", "fail", 0.002 + i * 1e-5, bound=1e-3, stage="slices",
                       slice=f"lang=l{i:03d}{long}", message=long) for i in range(400)]
    rules = (Rule(stage="slices", clause="slice-*", statuses=None, slice="lang=*", action="route-to-reference",
                  index=0),)
    return make_report(clauses, warnings=[long] * 50, rules=rules)


CASES = {"normal": normal_report, "all_pass": all_pass_report, "many_failures": many_failures_report,
         "hostile": hostile_report, "invalid": invalid_report}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_comment_and_markdown(case):
    report = CASES[case]()
    check_golden(f"{case}.comment.md", render_comment(report))
    check_golden(f"{case}.report.md", render_markdown(report))


def _tables_and_fences_intact(text: str) -> None:
    fences = re.findall(r"^(`{3,})", text, flags=re.M)
    assert len(fences) % 2 == 0, "unbalanced code fence"
    assert text.count("<details>") == text.count("</details>")
    for block in re.split(r"\n\s*\n", text):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        if rows:
            widths = {len(re.findall(r"(?<!\\)\|", row)) for row in rows}
            assert len(widths) == 1, f"table with rows of different widths: {rows[:3]}"
            assert re.match(r"^\|(---\|)+$", rows[1]), "table header separator missing"


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_rendering_keeps_tables_and_fences_whole(case):
    report = CASES[case]()
    for text in (render_comment(report), render_markdown(report), render_summary(report)):
        _tables_and_fences_intact(text)


def test_oversized_comment_fits_by_dropping_whole_sections():
    report = oversized_report()
    full = render_markdown(report)
    assert len(full.encode("utf-8")) > COMMENT_BUDGET * 5
    body = render_comment(report)
    size = len(body.encode("utf-8"))
    assert size <= COMMENT_BUDGET
    _tables_and_fences_intact(body)
    assert body.startswith(filters.marker(report.contract["name"]))
    assert "### ❌ Promotion blocked" in body
    assert "<sub>promote 0.1.0" in body  # footer kept
    assert "Reproduce locally" in body
    # Lower-value sections were dropped whole (the full markdown has them).
    assert "passing</summary>" in full and "xychart-beta" in full
    assert "passing</summary>" not in body and "xychart-beta" not in body
    assert "more failing or warning clauses" in body or "left out here to fit the size limit" in body
    check_golden("oversized.comment.md", body)
    summary = render_summary(report, budget=200_000)
    assert len(summary.encode("utf-8")) <= 200_000
    _tables_and_fences_intact(summary)


def test_too_small_budget_is_an_error_not_a_cut():
    with pytest.raises(RenderError):
        render_summary(normal_report(), budget=100)


def test_minimal_comment_is_small_and_keeps_marker_and_verdict():
    report = oversized_report()
    minimal = render_minimal_comment(report)
    assert len(minimal.encode("utf-8")) < 4000
    assert filters.marker(report.contract["name"]) in minimal and "Promotion blocked" in minimal


def test_hostile_names_are_neutralised():
    report = hostile_report()
    for text in (render_comment(report), render_markdown(report)):
        assert "<script>" not in text and "<b>" not in text
        assert "\n::" not in text, "a line starts with a workflow command"
        # Exactly two HTML comments end (marker in the comment, provenance) — the name cannot end one.
        assert text.count("-->") == text.count("<!--")
        assert "we```ird.yaml" in text and "````sh" in text  # a longer fence than the command's backticks
        assert "evil \\| &lt;script&gt;" in text
        visible = re.sub(r"<!-- promote:provenance .* -->", "", text)
        assert "[x](http" not in visible  # no clickable links from data
    text = render_text(report)
    assert not any(line.startswith("::") for line in text.splitlines())
    chart = render_markdown(report).split("```mermaid")[1].split("```")[0]
    assert '"script=\'x\'|\'y\'\'b\'"' in chart and "<" not in chart


def test_chart_only_when_slice_results_exist():
    assert "xychart-beta" in render_markdown(normal_report())
    assert "xychart-beta" not in render_markdown(all_pass_report())
    assert "mermaid" not in render_comment(many_failures_report())


def test_vacuous_inconclusive_error_never_render_as_pass():
    report = make_report([clause("v", "vacuous", 0.0, bound=1.0, message="outputs constant on both sides"),
                          clause("i", "inconclusive", 0.5, bound=1.0), clause("e", "error", message="boom")])
    md = render_markdown(report)
    assert "Could not evaluate" in md and "passing</summary>" not in md
    for status in ("vacuous", "inconclusive", "error"):
        assert f" {status} |" in md
    junit = ET.fromstring(render_junit(report).split("\n", 1)[1])
    cases = {c.get("name"): c for c in junit.iter("testcase")}
    assert cases["v"].find("failure") is not None
    assert cases["i"].find("skipped") is not None
    assert cases["e"].find("error") is not None
    assert junit.get("failures") == "1" and junit.get("errors") == "1" and junit.get("skipped") == "1"


def test_junit_one_testcase_per_clause_and_slice():
    report = normal_report()
    root = ET.fromstring(render_junit(report).split("\n", 1)[1])
    names = [c.get("name") for c in root.iter("testcase")]
    assert names == ["kl-mean", "kl-p99", "osc-max", "argmax", "finite", "slice-kl[script=latn]",
                     "slice-kl[script=hani]", "slice-kl[script=cyrl]"]
    osc = next(c for c in root.iter("testcase") if c.get("name") == "osc-max")
    assert osc.find("failure") is None and "warning:" in osc.find("system-out").text
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["verdict"] == "block" and props["report_sha256"] == report.sha256()


def test_junit_survives_control_characters():
    report = make_report([clause("kl", "fail", 1.0, bound=0.5, message="bad \x00\x1b[31m byte")])
    root = ET.fromstring(render_junit(report).split("\n", 1)[1])
    assert "\ufffd" in root.find(".//failure").get("message")


def test_text_colour_only_when_asked():
    report = normal_report()
    assert "\x1b[" not in render_text(report)
    assert "\x1b[31" in render_text(report, colour=True)


def test_synthetic_reports_validate_and_round_trip():
    for factory in (*CASES.values(), oversized_report):
        data = json.loads(factory().to_json())
        jsonschema.validate(data, load_schema("report"))
        assert Report.from_dict(data).to_dict() == data


def test_footer_carries_provenance():
    report = normal_report()
    body = render_comment(report)
    assert f"report sha256 {report.sha256()[:12]}" in body
    assert "contract tiny-lm-bf16 sha256 abababababab" in body and "commit 0123456789ab" in body
    hidden = re.search(r"<!-- promote:provenance (.*) -->", body).group(1)
    assert json.loads(hidden)["report_sha256"] == report.sha256()


@pytest.mark.parametrize(("value", "expected"), [
    ("a|b", "a\\|b"), ("<i>", "&lt;i&gt;"), ("x`y", "x\\`y"), ("l1\nl2\r\n", "l1 l2 "), ("a\\|b", "a\\\\\\|b"),
])
def test_md_cell(value, expected):
    assert filters.md_cell(value) == expected


def test_md_text_and_fence_and_mermaid():
    assert filters.md_text("**x** [l](u) <b>") == "\\*\\*x\\*\\* \\[l\\](u) &lt;b&gt;"
    assert filters.fence("no ticks") == "```"
    assert filters.fence("a ```` b") == "`````"
    assert filters.mermaid_label('a"b\\c`d<e>') == "a'b'c'd'e'"
    assert filters.mermaid_number(1.5e-7) == "0.00000015" and filters.mermaid_number(-0.0) == "0"


def test_margin_is_signed_headroom():
    assert filters.margin(0.5, [Bound("max", 1.0)]) == 0.5
    assert filters.margin(0.5, [Bound("min", 0.9)]) == pytest.approx(-0.4)
    assert filters.margin(float("nan"), [Bound("max", 1.0)]) is None
    assert filters.margin_text(2.0, [Bound("max", 1.0)]) == "-1 (-100%)"


def test_marker_is_safe_and_distinct():
    a, b = filters.marker("a b"), filters.marker("a-b")
    assert a != b and filters.MARKER_PATTERN.fullmatch(a)
    assert filters.MARKER_PATTERN.fullmatch(filters.marker("x --> <!-- y\n"))


def test_every_status_and_verdict_has_its_mark_and_title():
    from promote.policy import VERDICTS
    from promote.report.formats import FORMATS
    from promote.report.render import RENDERERS, STATUS_MARKS, VERDICT_TITLES
    from promote.results import Status

    assert set(STATUS_MARKS) == {s.value for s in Status}
    assert set(VERDICT_TITLES) == set(VERDICTS)
    assert tuple(RENDERERS) == FORMATS
