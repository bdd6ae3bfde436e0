"""Issue 9, class 5: the token stays with the API and hostile text stays text. Real kernels (the
`mini` project), a real local GitHub API (pytest-httpserver) and, for the foreign link, a second real
server that must never see the token. Output is parsed the way the Actions runner parses it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer
from reports import clause, make_report
from werkzeug import Request, Response

from promote.cli import cli
from promote.console import fence, guard
from promote.github.api import ForeignURL, GitHubAPI
from promote.github.workflow import read_outputs
from promote.report.filters import md_text
from promote.report.render import render_comment, render_summary

TOKEN = "ghp_HOSTILEcanary_5b2e9d_DO_NOT_PRINT"
REPO = "octo/model"
COMMENTS = "/repos/octo/model/issues/7/comments"
MENTION = re.compile(r"(?<![A-Za-z0-9])@[A-Za-z0-9]")  # what GitHub would turn into a notification


pytestmark = pytest.mark.usefixtures("fresh_redaction")


@pytest.fixture
def gh(tmp_path, httpserver):
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7, "head": {"sha": "headsha", "repo": {"full_name": REPO}},
                                                  "base": {"repo": {"full_name": REPO}}}}))
    return {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": REPO, "GITHUB_EVENT_PATH": str(event),
            "GITHUB_EVENT_NAME": "pull_request", "GITHUB_REF": "refs/pull/7/merge", "GITHUB_SHA": "mergesha",
            "GITHUB_API_URL": httpserver.url_for("").rstrip("/"), "GITHUB_TOKEN": TOKEN,
            "GITHUB_OUTPUT": str(tmp_path / "output"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
            "GITHUB_WORKSPACE": str(tmp_path), "RUNNER_TEMP": str(tmp_path / "runner-temp"), "NO_COLOR": "1"}


@pytest.fixture
def other_server():
    """A second server on another port: the place a hostile Link header points to."""
    server = HTTPServer(host="localhost", port=0)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


def run(env, *args):
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert TOKEN not in result.output and TOKEN not in result.stderr
    assert "Traceback" not in result.output
    return result


def bot_comment(cid, body):
    return {"id": cid, "body": body, "user": {"login": "github-actions[bot]"}, "created_at": "2026-01-01T00:00:00Z",
            "html_url": f"https://github.example/{REPO}/pull/7#issuecomment-{cid}"}


def runner_commands(log: str) -> list[str]:
    """The workflow commands the runner would act on in ``log``: a line that starts with ``::`` after
    leading spaces, or carries the legacy ``##[``, outside a ``::stop-commands::TOKEN`` … ``::TOKEN::``
    fence."""
    commands, stopped_by = [], None
    for line in log.splitlines():
        text = line.lstrip()
        if stopped_by is not None:
            if text == f"::{stopped_by}::":
                stopped_by = None
            continue
        if text.startswith("::stop-commands::"):
            stopped_by = text[len("::stop-commands::"):]
            continue
        if text.startswith("::") or "##[" in text:
            commands.append(text)
    assert stopped_by is None, "a stop-commands fence was never closed"
    return commands


# -- the token goes to the API origin only


def test_foreign_next_link_is_refused_and_never_sent_the_token(httpserver, other_server, monkeypatch):
    monkeypatch.setenv("GITHUB_API_URL", httpserver.url_for("/api/v3").rstrip("/"))
    foreign = other_server.url_for("/api/v3/repos/octo/model/issues/7/comments?page=2")
    other_server.expect_request("/api/v3/repos/octo/model/issues/7/comments").respond_with_json([])
    httpserver.expect_request("/api/v3" + COMMENTS).respond_with_json(
        [bot_comment(1, "x")], headers={"Link": f'<{foreign}>; rel="next"'})
    api = GitHubAPI(TOKEN)
    with pytest.raises(ForeignURL) as caught:
        list(api.paginate(COMMENTS.lstrip("/")))
    assert "not the API origin" in str(caught.value) and TOKEN not in str(caught.value)
    assert other_server.log == []  # not a request, so certainly no Authorization header
    assert [r.headers.get("Authorization") for r, _ in httpserver.log] == [f"Bearer {TOKEN}"]


@pytest.mark.parametrize("link", ["https://{host}/x", "http://127.0.0.2:{port}/x", "//{host}/x", "http://{host}:99999/x"])
def test_other_scheme_host_or_port_is_foreign(httpserver, monkeypatch, link):
    monkeypatch.setenv("GITHUB_API_URL", httpserver.url_for("/api/v3").rstrip("/"))
    api = GitHubAPI(TOKEN)
    url = link.format(host=f"localhost:{httpserver.port}", port=httpserver.port)
    with pytest.raises(ForeignURL):
        api.request("GET", url)
    assert httpserver.log == []
    assert api.url(httpserver.url_for("/api/v3/user")) == httpserver.url_for("/api/v3/user")  # same origin: fine


def test_redirect_to_another_port_is_refused_and_carries_no_token(httpserver, other_server, monkeypatch):
    """Issue 19 item 1: the same rule as the other clients (promote.http): a redirect off the API origin
    is not followed at all, with or without the token — the answer would come from elsewhere."""
    monkeypatch.setenv("GITHUB_API_URL", httpserver.url_for("/api/v3").rstrip("/"))
    other_server.expect_request("/elsewhere").respond_with_json({"login": "someone"})
    httpserver.expect_request("/api/v3/user").respond_with_data(
        "", status=302, headers={"Location": other_server.url_for("/elsewhere")})
    with pytest.raises(ForeignURL, match="another origin"):
        GitHubAPI(TOKEN).get_json("user")
    assert other_server.log == []


def test_check_with_a_foreign_link_warns_keeps_the_gate_and_posts_nothing(mini, gh, httpserver, other_server):
    foreign = other_server.url_for(COMMENTS + "?page=2")
    other_server.expect_request(COMMENTS).respond_with_json([])
    httpserver.expect_request("/user").respond_with_json({"login": "github-actions[bot]"})
    httpserver.expect_request(COMMENTS, method="GET").respond_with_json(
        [], headers={"Link": f'<{foreign}>; rel="next"'})
    result = run(gh, "check", str(mini.contract(candidate="build_hot")))
    assert result.exit_code == 1
    assert re.search(r"^::warning title=promote::PR comment not posted: refused to follow a link", result.stderr, re.M)
    assert other_server.log == []
    assert not [r for r, _ in httpserver.log if r.method == "POST"]  # no duplicate comment from a cut listing
    assert read_outputs(gh["GITHUB_OUTPUT"])["exit-code"] == "1"


def test_error_body_echoing_the_token_is_masked(mini, gh, httpserver):
    def echo(request: Request) -> Response:
        return Response(f"bad request; you sent Authorization: {request.headers.get('Authorization')}", status=400)

    httpserver.expect_request("/user").respond_with_json({"login": "github-actions[bot]"})
    httpserver.expect_request(COMMENTS, method="GET").respond_with_handler(echo)
    result = run(gh, "check", str(mini.contract()))  # run() asserts the token is nowhere in the output
    assert result.exit_code == 0
    assert "you sent Authorization: Bearer ***" in result.stderr


def test_token_never_written_to_reports_summary_outputs_or_the_comment(mini, gh, httpserver, tmp_path):
    httpserver.expect_request("/user").respond_with_json({"login": "github-actions[bot]"})
    httpserver.expect_request(COMMENTS, method="GET").respond_with_json([])
    httpserver.expect_request(COMMENTS, method="POST").respond_with_json(bot_comment(1, "x"), status=201)
    contract = mini.contract(extra={"name": "mini ${GITHUB_TOKEN}", "description": "token ${GITHUB_TOKEN}"})
    outs = [tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.txt", tmp_path / "r.xml"]
    result = run(gh, "check", str(contract), f"--output=json={outs[0]}", f"--output=markdown={outs[1]}",
                 f"--output=text={outs[2]}", f"--output=junit={outs[3]}")
    assert result.exit_code == 0
    written = [*outs, Path(gh["GITHUB_OUTPUT"]), Path(gh["GITHUB_STEP_SUMMARY"])]
    for path in written:
        assert TOKEN not in path.read_text(), path
    posted = [json.loads(r.get_data())["body"] for r, _ in httpserver.log if r.method == "POST"]
    assert len(posted) == 1, result.stderr
    assert TOKEN not in posted[0] and "mini \\*\\*\\*" in posted[0]


# -- publishing problems are warnings; the outputs match the real exit code


BAD_REPLIES = {
    "user-list": ("/user", "GET", lambda r: r.respond_with_json([])),
    "user-null": ("/user", "GET", lambda r: r.respond_with_json(None)),
    "user-html": ("/user", "GET", lambda r: r.respond_with_data("<html>hi</html>", content_type="text/html")),
    "comments-object": (COMMENTS, "GET", lambda r: r.respond_with_json({"message": "hi"})),
    "comments-not-json": (COMMENTS, "GET", lambda r: r.respond_with_data("nope", content_type="text/plain")),
    "comments-odd-items": (COMMENTS, "GET", lambda r: r.respond_with_json(
        [None, 3, {"id": "x", "body": None}, {"id": 5, "body": "<!-- promote:report key=mini", "user": None}])),
    "post-list": (COMMENTS, "POST", lambda r: r.respond_with_json([], status=201)),
    "post-not-json": (COMMENTS, "POST", lambda r: r.respond_with_data("created!", status=201)),
}


@pytest.mark.parametrize("case", sorted(BAD_REPLIES))
@pytest.mark.parametrize("candidate,gate", [("build_hot", 1)])
def test_bad_reply_shape_is_a_warning_and_outputs_match_the_exit_code(mini, gh, httpserver, case, candidate, gate):
    path, method, respond = BAD_REPLIES[case]
    respond(httpserver.expect_request(path, method=method))
    httpserver.expect_request("/user").respond_with_json({"login": "github-actions[bot]"})
    httpserver.expect_request(COMMENTS, method="GET").respond_with_json([])
    httpserver.expect_request(COMMENTS, method="POST").respond_with_json(bot_comment(1, "x"), status=201)
    result = run(gh, "check", str(mini.contract(candidate=candidate)))
    outputs = read_outputs(gh["GITHUB_OUTPUT"])
    assert result.exit_code == gate and outputs["exit-code"] == str(gate), result.stderr
    if case != "comments-odd-items":  # odd items are skipped and the comment is created
        assert "::warning title=promote::PR comment not posted" in result.stderr
        assert "internal error" not in result.stderr


def test_bad_reply_in_a_real_process_keeps_the_exit_code_and_outputs(mini, gh, httpserver):
    """Through the console script's entry point (main), where an escaping exception would be exit 3."""
    httpserver.expect_request("/user").respond_with_json(None)
    env = {**os.environ, **gh, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-m", "promote.cli", "check", str(mini.contract())], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert read_outputs(gh["GITHUB_OUTPUT"])["exit-code"] == "0"
    assert "PR comment not posted" in proc.stderr and TOKEN not in proc.stderr + proc.stdout


# -- mentions


def test_mentions_are_neutralised_in_markdown():
    assert MENTION.search(md_text("ping @octocat and @org/team, mail a@b.c")) is None
    assert md_text("@octocat").replace("\u200b", "") == "@octocat"  # reads the same
    report = make_report([clause("kl", "fail", 1.0, bound=0.5, slice="@octo/reviewers",
                                 message="sample `@alice` diverged; cc @bob")], name="@evil-org/everyone")
    for text in (render_comment(report), render_summary(report)):
        assert MENTION.search(text) is None, [m for m in MENTION.finditer(text)]
        assert "@\u200bevil-org/everyone" in text and "@\u200bocto/reviewers" in text


def test_mentions_in_contract_name_and_description_are_not_posted_raw(mini, gh, httpserver):
    httpserver.expect_request("/user").respond_with_json({"login": "github-actions[bot]"})
    httpserver.expect_request(COMMENTS, method="GET").respond_with_json([])
    httpserver.expect_request(COMMENTS, method="POST").respond_with_json(bot_comment(1, "x"), status=201)
    contract = mini.contract(extra={"name": "mini @octocat", "description": "owned by @org/ml-team"})
    assert run(gh, "check", str(contract), "--comment", "auto").exit_code == 0
    body = next(json.loads(r.get_data())["body"] for r, _ in httpserver.log if r.method == "POST")
    summary = Path(gh["GITHUB_STEP_SUMMARY"]).read_text()
    for text in (body, summary):
        assert "@\u200boctocat" in text and MENTION.search(text) is None


# -- workflow commands in GitHub mode


def hostile_project(mini):
    """A contract name, a YAML key and a sample id, each carrying a newline and a forged command."""
    records = [json.loads(line) for line in (mini.root / "eval.jsonl").read_text().splitlines()]
    records[0]["id"] = records[1]["id"] = "s0\n::warning::forged-by-sample-id\n##[error]forged-legacy"
    (mini.root / "hostile.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    bad_key = mini.contract("bad-key.yaml", extra={"name": "mini", "x\n::error::forged-by-key": 1})
    bad_ids = mini.contract("bad-ids.yaml", extra={"name": "mini", "data": {"path": "hostile.jsonl"}})
    bad_name = mini.contract("bad-name.yaml", extra={"name": "mini\n  ::warning file=x::forged-by-name"})
    return bad_key, bad_ids, bad_name


def test_validate_in_actions_prints_no_command(mini, gh):
    bad_key, bad_ids, bad_name = hostile_project(mini)
    result = run(gh, "validate", str(bad_key), str(bad_ids), str(bad_name))
    assert result.exit_code == 2
    log = result.stdout + result.stderr
    assert "forged-by-key" in log and "forged-by-sample-id" in log and "forged-by-name" in log  # still shown
    assert runner_commands(result.stdout) == [] and runner_commands(result.stderr) == []


def test_check_in_actions_forges_no_command(mini, gh, httpserver):
    _, bad_ids, bad_name = hostile_project(mini)
    httpserver.expect_request("/user").respond_with_json({"login": "github-actions[bot]"})
    httpserver.expect_request(COMMENTS, method="GET").respond_with_json([])
    httpserver.expect_request(COMMENTS, method="POST").respond_with_json(bot_comment(1, "x"), status=201)
    assert run(gh, "check", str(bad_ids)).exit_code == 2  # duplicate ids: an error message quoting them
    for fmt in ("text", "json", "markdown", "junit"):
        result = run(gh, "check", str(bad_name), "--format", fmt, "--comment", "off")
        assert result.exit_code == 0
        for stream in (result.stdout, result.stderr):
            for command in runner_commands(stream):  # only promote's own, escaped annotations
                assert re.match(r"::(error|warning|notice) [^:]*title=", command), command
    for stream in (run(gh, "check", str(bad_ids)).stderr,):
        assert runner_commands(stream) == []


def test_fence_cannot_be_closed_from_inside_and_plain_text_is_untouched():
    assert guard("all fine: 1 < 2", github=True) == "all fine: 1 < 2"
    assert guard("x\n::error::y", github=False) == "x\n::error::y"
    fenced = fence("a\n::warning::b")
    assert runner_commands(fenced) == []
    token = fenced.splitlines()[0].split("::")[2]
    assert fenced.splitlines()[-1] == f"::{token}::" and fenced.count(token) == 2
