"""A JSON report is an artifact anyone can edit (issue 19): `render`, `comment --report` and `--merge`
read it as a bounded regular file, parse it strictly, re-derive its verdict from its clauses, keep a
clause id inside its markdown code span, and show bidi controls instead of obeying them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from hostile_files import without_blocking
from markdown_it import MarkdownIt
from reports import clause, make_report

from promote.cli import cli
from promote.report import filters
from promote.report.load import load_report
from promote.report.render import render_comment, render_html, render_markdown, render_text

RLO = "\u202e"


def _report(tmp_path: Path, change=None, *, clauses=None, name: str = "r.json") -> Path:  # noqa: ANN001
    report = make_report(clauses or [clause("kl-mean", "fail", 2e-3, bound=1e-3),
                                     clause("argmax", "pass", 0.995, op="min", bound=0.98, metric="argmax_agree")])
    data = json.loads(report.to_json())
    if change:
        change(data)
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def _render(path: Path, *args: str):
    return CliRunner().invoke(cli, ["render", str(path), *args])


@pytest.mark.parametrize(("text", "needle"), [
    ('{"a": Infinity}', "Infinity"), ('{"a": NaN}', "NaN"), ('{"a": 1e400}', "beyond the float range"),
    ('{"a": 1' + "0" * 400 + "}", "beyond the int64 range"), ("[" * 100_000 + "]" * 100_000, ""),
    ("[" * 200 + "]" * 200, "more than 64 levels"), ('{"a": "\udcff"}', ""),
])
def test_non_standard_json_is_exit_2_never_an_internal_error(tmp_path, text, needle):
    path = tmp_path / "r.json"
    path.write_text(text, errors="surrogatepass")
    for args in ((), ("--format", "markdown")):
        res = _render(path, *args)
        assert res.exit_code == 2 and isinstance(res.exception, SystemExit), (res.output, res.exception)
        assert str(path) in res.output and needle in res.output


def test_a_report_field_with_infinity_is_refused(tmp_path):
    path = _report(tmp_path)
    path.write_text(path.read_text().replace('"duration_s": 1.25', '"duration_s": Infinity', 1))
    res = _render(path, "--format", "text")
    assert res.exit_code == 2 and "Infinity" in res.output


def test_a_verdict_that_disagrees_with_its_clauses_is_refused(tmp_path):
    def passing(data: dict) -> None:
        data["verdict"], data["exit_code"] = "pass", 0

    def waived(data: dict) -> None:  # the failing clause's action forged to pass, no rule named
        data["actions"][0]["action"] = "pass"
        passing(data)

    def status(data: dict) -> None:  # the clause forged to pass, its action left as it was
        data["stages"][0]["clauses"][0]["status"] = "pass"

    def exit_code(data: dict) -> None:
        data["exit_code"] = 0 if data["verdict"] == "error" else 3

    for change, needle in ((passing, "disagrees with its clauses"), (waived, "does not follow from the clause"),
                           (status, "does not follow from the clause"), (exit_code, "does not follow from verdict")):
        path = _report(tmp_path, change)
        res = _render(path, "--format", "markdown")
        assert res.exit_code == 2 and needle in res.output and str(path) in res.output, res.output
        res = CliRunner().invoke(cli, ["comment", "--report", str(path), "--dry-run"])
        assert res.exit_code == 2 and needle in res.output, res.output
    assert _render(_report(tmp_path), "--format", "markdown").exit_code == 0  # the untouched report renders


def test_a_clause_id_with_backticks_stays_inside_its_code_span(tmp_path):
    evil = "x` <img src=https://evil.example/p.png> [link](https://evil.example) `y"
    clauses = [clause(evil, "fail", 2e-3, bound=1e-3), clause("ok|`|", "fail", 2e-3, bound=1e-3)]
    path = _report(tmp_path, clauses=clauses)
    res = CliRunner().invoke(cli, ["comment", "--report", str(path), "--dry-run"])
    assert res.exit_code == 0, res.output
    for body in (render_comment(load_report(path)), _render(path, "--format", "markdown").stdout):
        html = MarkdownIt("commonmark", {"html": True}).enable("table").render(body)
        assert "<img" not in html and "evil.example\"" not in html and '<a href="https://evil' not in html
        assert f"<code>{evil.replace('<', '&lt;').replace('>', '&gt;')}</code>" in html
        assert "<code>ok|`|</code>" in html  # the table's \| is undone inside the span
    assert filters.md_code("`") == "`` ` ``" and filters.md_code("a``b") == "```a``b```"


def test_bidi_controls_are_shown_never_obeyed(tmp_path, monkeypatch, capsys):
    report = make_report([clause(f"kl{RLO}mean", "fail", 2e-3, bound=1e-3, message=f"drift {RLO}4 ssap"),
                          clause("ok", "pass", 0.0, bound=1.0, slice=f"lang={RLO}he")], name=f"tiny{RLO}lm")
    for text in (render_markdown(report), render_text(report), render_comment(report), render_html(report)):
        assert RLO not in text and "[U+202E]" in text
    html = render_html(report)
    assert "<bdi>tiny[U+202E]lm</bdi>" in html and "unicode-bidi: isolate" in html
    assert RLO in report.to_json() or "\\u202e" in report.to_json()  # the JSON keeps the data as it was
    from promote.publish import Log, publish_github

    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "out"))
    monkeypatch.setenv("RUNNER_TEMP", str(tmp_path))
    publish_github(report, json_written=None, log=Log(github=True))
    annotations = capsys.readouterr().err
    assert "::error" in annotations and RLO not in annotations and "[U+202E]" in annotations


def test_a_fifo_or_a_device_as_report_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "r.json"
    os.mkfifo(fifo)
    res = without_blocking(lambda: _render(fifo), fifo)
    assert res.exit_code == 2 and "FIFO" in res.output
    res = _render(Path("/dev/zero"))
    assert res.exit_code == 2 and "character device" in res.output
    res = CliRunner().invoke(cli, ["comment", "--report", "/dev/zero", "--dry-run"])
    assert res.exit_code == 2 and "character device" in res.output


def test_a_fifo_or_non_standard_json_as_merge_input_is_a_usage_error(tmp_path):
    from promote.errors import UsageError
    from promote.report.merge import read_stages

    fifo = tmp_path / "earlier.json"
    os.mkfifo(fifo)
    error = without_blocking(lambda: read_stages(fifo, contract_sha256="ab" * 32), fifo)
    assert isinstance(error, UsageError) and "FIFO" in error.format_message()
    path = _report(tmp_path, name="inf.json")
    path.write_text(path.read_text().replace('"duration_s": 1.25', '"duration_s": Infinity', 1))
    with pytest.raises(UsageError, match="Infinity"):
        read_stages(path, contract_sha256="ab" * 32)
