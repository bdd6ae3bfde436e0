"""GitHub mode end to end through the CLI with real kernels (the `mini` project): job summary, step
outputs, annotations, the sticky comment against a local HTTP server, and every bad-input case from
issue 6. The token is distinctive so a leak anywhere in the output is caught."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from reports import clause, make_report

from promote.cli import cli
from promote.github.workflow import read_outputs
from promote.publish import Log, publish_github

TOKEN = "ghp_LEAKCANARY_7f3a9c2e1d_DO_NOT_PRINT"
REPO = "octo/model"
COMMENTS = "/repos/octo/model/issues/7/comments"


@pytest.fixture
def gh(tmp_path, httpserver):
    """A GitHub Actions environment for a same-repo pull_request event, API on the local server."""
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7, "head": {"sha": "headsha", "repo": {"full_name": REPO}},
                                                  "base": {"repo": {"full_name": REPO}}}}))
    env = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": REPO, "GITHUB_EVENT_PATH": str(event),
           "GITHUB_EVENT_NAME": "pull_request", "GITHUB_REF": "refs/pull/7/merge", "GITHUB_SHA": "mergesha",
           "GITHUB_API_URL": httpserver.url_for("").rstrip("/"), "GITHUB_TOKEN": TOKEN,
           "GITHUB_OUTPUT": str(tmp_path / "output"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
           "GITHUB_WORKSPACE": str(tmp_path), "RUNNER_TEMP": str(tmp_path / "runner-temp"), "NO_COLOR": "1"}
    return env


def run(env, *args):
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert TOKEN not in result.output and TOKEN not in result.stderr
    assert "Traceback" not in result.output
    return result


def bot_comment(cid, body):
    return {"id": cid, "body": body, "user": {"login": "github-actions[bot]"}, "created_at": "2026-01-01T00:00:00Z",
            "html_url": f"https://github.example/{REPO}/pull/7#issuecomment-{cid}"}


def test_github_mode_writes_summary_outputs_and_annotations_and_comments(mini, gh, httpserver, tmp_path):
    httpserver.expect_request("/user").respond_with_json({"message": "Resource not accessible by integration"},
                                                         status=403)
    httpserver.expect_request(COMMENTS, method="GET").respond_with_json([])
    httpserver.expect_oneshot_request(COMMENTS, method="POST").respond_with_json(bot_comment(1, "x"), status=201)
    contract = mini.contract(candidate="build_hot")
    result = run(gh, "check", str(contract))
    assert result.exit_code == 1
    # The text report is fenced by stop-commands so nothing in it can act as a workflow command.
    lines = result.stdout.splitlines()
    token = re.match(r"::stop-commands::([0-9a-f]{32})$", lines[0]).group(1)
    assert lines[-1] == f"::{token}::"
    # Annotations point at the violated clause's line in the contract, relative to the workspace.
    errors = [line for line in result.stderr.splitlines() if line.startswith("::error ")]
    assert len(errors) == 1 and "file=contract.yaml,line=" in errors[0] and "kl-mean" in errors[0]
    kl_line = next(i for i, text in enumerate(contract.read_text().splitlines(), 1) if "kl-mean" in text)
    assert f"line={kl_line}," in errors[0]
    outputs = read_outputs(gh["GITHUB_OUTPUT"])
    assert outputs["verdict"] == "block" and outputs["exit-code"] == "1"
    report = json.loads(Path(outputs["report-json"]).read_text())
    assert report["verdict"] == "block"
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("### ❌ Promotion blocked") and "| ❌ fail | `kl-mean` |" in summary
    posted = [json.loads(r.get_data()) for r, _ in httpserver.log if r.method == "POST"]
    assert len(posted) == 1 and posted[0]["body"].startswith("<!-- promote:report key=mini-")
    assert "PR comment created" in result.stderr


def test_comment_off_and_outside_actions_sends_nothing(mini, gh, httpserver):
    assert run(gh, "check", str(mini.contract()), "--comment", "off").exit_code == 0
    local = {k: v for k, v in gh.items() if k != "GITHUB_ACTIONS"}
    result = run(local, "check", str(mini.contract()))
    assert result.exit_code == 0 and "::" not in result.output
    assert httpserver.log == []


def test_no_pr_context_skips_comment_with_notice(mini, gh, httpserver, tmp_path):
    event = tmp_path / "push.json"
    event.write_text(json.dumps({"ref": "refs/heads/main"}))
    env = {**gh, "GITHUB_EVENT_PATH": str(event), "GITHUB_EVENT_NAME": "push", "GITHUB_REF": "refs/heads/main"}
    httpserver.expect_request("/repos/octo/model/commits/mergesha/pulls").respond_with_json([])
    result = run(env, "check", str(mini.contract()))
    assert result.exit_code == 0
    assert re.search(r"^::notice title=promote::no pull request for this run", result.stderr, re.M)
    assert all(r.method == "GET" for r, _ in httpserver.log)


def test_missing_token_warns_and_keeps_the_gate(mini, gh, httpserver):
    env = {**gh, "GITHUB_TOKEN": "", "GH_TOKEN": ""}
    result = run(env, "check", str(mini.contract(candidate="build_hot")))
    assert result.exit_code == 1
    assert "::warning title=promote::no GitHub token" in result.stderr
    assert httpserver.log == []


def test_api_unreachable_warns_and_keeps_the_gate(mini, gh):
    env = {**gh, "GITHUB_API_URL": "http://127.0.0.1:9"}
    result = run(env, "check", str(mini.contract()))
    assert result.exit_code == 0
    assert "::warning title=promote::PR comment not posted" in result.stderr and "unreachable" in result.stderr


def test_fork_pr_skips_comment_with_notice(mini, gh, httpserver, tmp_path):
    event = tmp_path / "fork.json"
    event.write_text(json.dumps({"pull_request": {"number": 7, "head": {"repo": {"full_name": "someone/model"}},
                                                  "base": {"repo": {"full_name": REPO}}}}))
    result = run({**gh, "GITHUB_EVENT_PATH": str(event)}, "check", str(mini.contract(candidate="build_hot")))
    assert result.exit_code == 1
    assert "::notice title=promote::pull request from a fork" in result.stderr
    assert httpserver.log == []
    assert read_outputs(gh["GITHUB_OUTPUT"])["verdict"] == "block"  # summary and outputs still written


def test_contract_name_with_markdown_and_html_is_escaped_in_the_comment(mini, gh, httpserver):
    httpserver.expect_request("/user").respond_with_json({"login": "promote-bot"})
    httpserver.expect_request(COMMENTS, method="GET").respond_with_json([])
    httpserver.expect_request(COMMENTS, method="POST").respond_with_json(bot_comment(1, "x"), status=201)
    contract = mini.contract(extra={"name": "**big** <img src=x onerror=alert(1)> | [l](http://x) `c`"})
    assert run(gh, "check", str(contract)).exit_code == 0
    body = next(json.loads(r.get_data())["body"] for r, _ in httpserver.log if r.method == "POST")
    assert "<img" not in body and "\\*\\*big\\*\\* &lt;img src=x onerror=alert(1)&gt; \\| \\[l\\]" in body


def test_summary_not_written_when_the_step_summary_is_full(mini, gh, tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("x" * (1024 * 1024 - 50))
    result = run(gh, "check", str(mini.contract()), "--comment", "off")
    assert result.exit_code == 0 and "job summary not written" in result.stderr
    assert summary.stat().st_size == 1024 * 1024 - 50


def test_clause_message_with_workflow_command_is_neutralised(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "out"))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.setenv("RUNNER_TEMP", str(tmp_path))
    report = make_report([clause("kl", "fail", 1.0, bound=0.5, message="bad\n::error::forged%0A::warning::x, y: z")])
    publish_github(report, json_written=None, log=Log(github=True))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("::error file=examples/tiny_lm/contract.yaml,line=10,title=promote fail%3A kl::")
    assert "bad%0A::error::forged%250A::warning::x, y: z" in lines[0]


def test_junit_format_on_a_real_run(mini):
    result = run({}, "check", str(mini.contract(candidate="build_hot")), "--format", "junit")
    assert result.exit_code == 1
    assert result.stdout.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert '<testcase classname="promote.numerics" name="kl-mean"' in result.stdout
    assert "<failure" in result.stdout


def test_comment_command_dry_run_prints_body_size_and_plan(mini, gh, httpserver, tmp_path):
    report = tmp_path / "r.json"
    assert run({}, "check", str(mini.contract()), "--output", f"json={report}").exit_code == 0
    result = run(gh, "comment", "--report", str(report), "--dry-run")
    assert result.exit_code == 0
    assert result.stdout.startswith("<!-- promote:report key=mini-")
    size = len(result.stdout.encode("utf-8"))
    assert f"comment body is {size} bytes" in result.stderr
    assert f"would send: GET {gh['GITHUB_API_URL']}/repos/octo/model/issues/7/comments?per_page=100" in result.stderr
    assert "POST" in result.stderr and httpserver.log == []


def test_comment_command_posts_from_a_report_and_is_idempotent(mini, gh, httpserver, tmp_path):
    report = tmp_path / "r.json"
    run({}, "check", str(mini.contract()), "--output", f"json={report}")
    state: list[dict] = []

    def listing(request):
        from werkzeug import Response

        return Response(json.dumps(state), content_type="application/json")

    def create(request):
        from werkzeug import Response

        state.append(bot_comment(len(state) + 1, request.get_json()["body"]))
        return Response(json.dumps(state[-1]), status=201, content_type="application/json")

    httpserver.expect_request("/user").respond_with_json({}, status=403)
    httpserver.expect_request(COMMENTS, method="GET").respond_with_handler(listing)
    httpserver.expect_request(COMMENTS, method="POST").respond_with_handler(create)
    env = {**gh, "GITHUB_ACTIONS": ""}
    first = run(env, "comment", "--report", str(report))
    second = run(env, "comment", "--report", str(report))
    assert (first.exit_code, second.exit_code) == (0, 0)
    assert "PR comment created" in first.stderr and "PR comment unchanged" in second.stderr
    assert len(state) == 1


def test_comment_command_bad_inputs(gh, tmp_path, httpserver):
    body = tmp_path / "c.md"
    body.write_text("no marker here")
    assert "has no promote marker" in run(gh, "comment", "--body", str(body)).stderr
    assert run(gh, "comment", "--body", str(body)).exit_code == 2
    bad = tmp_path / "bad.json"
    bad.write_text('{"verdict": "pass"}')
    result = run(gh, "comment", "--report", str(bad))
    assert result.exit_code == 2 and "is not a promote report" in result.stderr
    assert run(gh, "comment").exit_code == 2  # neither --report nor --body
    marked = tmp_path / "m.md"
    marked.write_text("<!-- promote:report key=x-1 -->\nhi\n")
    result = run({**gh, "GITHUB_TOKEN": "", "GH_TOKEN": ""}, "comment", "--body", str(marked))
    assert result.exit_code == 2 and "no GitHub token" in result.stderr
    httpserver.expect_request("/user").respond_with_json({}, status=403)
    httpserver.expect_request(COMMENTS, method="GET").respond_with_json([])
    httpserver.expect_request(COMMENTS, method="POST").respond_with_json({"message": "Resource not accessible by "
                                                                                     "integration"}, status=403)
    result = run(gh, "comment", "--body", str(marked))
    assert result.exit_code == 3 and "pull-requests: write" in result.stderr
    assert httpserver.log and all(TOKEN not in r.get_data(as_text=True) for r, _ in httpserver.log)


def test_workflow_run_for_a_fork_finds_the_pr_by_head(gh, httpserver, tmp_path):
    """Stage 2 of the fork recipe: empty workflow_run.pull_requests, commit lookup misses, head lookup hits."""
    event = tmp_path / "workflow_run.json"
    event.write_text(json.dumps({"workflow_run": {
        "event": "pull_request", "head_sha": "forksha", "head_branch": "feature", "pull_requests": [],
        "head_repository": {"full_name": "someone/model", "owner": {"login": "someone"}}}}))
    marked = tmp_path / "m.md"
    marked.write_text("<!-- promote:report key=x-1 -->\nhi\n")
    httpserver.expect_request("/repos/octo/model/commits/forksha/pulls").respond_with_json([])
    httpserver.expect_request("/repos/octo/model/pulls", query_string={"head": "someone:feature", "state": "open"}
                              ).respond_with_json([{"number": 7}])
    httpserver.expect_request("/user").respond_with_json({}, status=403)
    httpserver.expect_request(COMMENTS, method="GET").respond_with_json([])
    httpserver.expect_request(COMMENTS, method="POST").respond_with_json(bot_comment(1, "x"), status=201)
    env = {**gh, "GITHUB_EVENT_PATH": str(event), "GITHUB_EVENT_NAME": "workflow_run", "GITHUB_REF": "refs/heads/main"}
    result = run(env, "comment", "--body", str(marked))
    assert result.exit_code == 0 and "PR comment created" in result.stderr


def test_colour_honours_force_color_no_color_and_the_flag(mini):
    path = str(mini.contract(candidate="build_hot"))
    assert "\x1b[" in run({"FORCE_COLOR": "1"}, "check", path).stdout
    assert "\x1b[" not in run({"NO_COLOR": "1", "FORCE_COLOR": "1"}, "check", path).stdout
    assert "\x1b[" not in run({"FORCE_COLOR": "1"}, "check", path, "--no-color").stdout
    assert "\x1b[" in run({"NO_COLOR": "1"}, "check", path, "--color").stdout
