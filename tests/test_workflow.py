"""Runner interface: command escaping, annotation caps, heredoc outputs, summary budget."""

from __future__ import annotations

from promote.github import workflow


def test_escaping_rules():
    assert workflow.escape_data("50%\r\n::x") == "50%25%0D%0A::x"
    assert workflow.escape_property("a:b,c\n") == "a%3Ab%2Cc%0A"
    assert workflow.command("error", "m\n::error::x", file="c.yaml", line=3, title="t: 1") == \
        "::error file=c.yaml,line=3,title=t%3A 1::m%0A::error::x"
    assert workflow.command("notice", "m") == "::notice::m"


def test_annotations_worst_first_capped_per_level_with_overflow_notice():
    items = [{"level": "warning", "title": f"w{i}", "message": "w", "line": i + 1} for i in range(12)]
    items += [{"level": "error", "title": f"e{i}", "message": "e", "line": None} for i in range(15)]
    lines = workflow.annotations(items, file="contract.yaml")
    assert [line.split(" ", 1)[0] for line in lines] == ["::error"] * 10 + ["::warning"] * 10 + ["::notice"]
    assert lines[-1].endswith("::7 more promote findings are not annotated; see the job summary")
    assert "file=" not in lines[0]  # no line known: no file either
    assert lines[10].startswith("::warning file=contract.yaml,line=1,title=w0::")


def test_outputs_use_random_heredoc_delimiters_that_values_cannot_close(tmp_path):
    path = tmp_path / "out"
    path.write_text("earlier=1\n")
    hostile = "line1\nEOF\npromote_\nverdict=pass"
    workflow.set_outputs({"verdict": "block", "report-json": hostile}, path)
    workflow.set_outputs({"other": "x"}, path)
    text = path.read_text()
    delimiters = [line.split("<<", 1)[1] for line in text.splitlines() if "<<" in line]
    assert len(set(delimiters)) == 3 and all(len(d) == len("promote_") + 32 for d in delimiters)
    assert workflow.read_outputs(path) == {"earlier": "1", "verdict": "block", "report-json": hostile, "other": "x"}


def test_outputs_without_github_output_are_a_no_op(monkeypatch):
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    workflow.set_outputs({"verdict": "pass"})  # nothing to write to, no error


def test_summary_budget_and_refusal(tmp_path):
    path = tmp_path / "summary.md"
    assert workflow.write_summary("# one\n", path)
    assert workflow.summary_budget(path) == workflow.SUMMARY_LIMIT - len("# one\n") - 1
    assert not workflow.write_summary("x" * workflow.SUMMARY_LIMIT, path)
    assert path.read_text() == "# one\n"


def test_in_actions():
    assert workflow.in_actions({"GITHUB_ACTIONS": "true"})
    assert not workflow.in_actions({})
