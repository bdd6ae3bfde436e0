"""GitHub transport and sticky comment against a real local HTTP server (pytest-httpserver) through
GITHUB_API_URL — the same code path as GitHub Enterprise Server. Asserts the requests it received."""

from __future__ import annotations

import json

import pytest
from werkzeug import Request, Response

from promote.github.api import Forbidden, GitHubAPI, GitHubError, RateLimited, Unreachable, api_url_from_env
from promote.github.comment import BOT_LOGIN, Context, comment_author, pr_from_commit, pr_from_context, upsert_comment

TOKEN = "ghs_SUPERSECRETtoken0123456789XYZ"
MARKER = "<!-- promote:report key=mini-1234abcd -->"
BODY = f"{MARKER}\n### ✅ Promotion allowed — mini\n"
REPO = "octo/model"


class Sleeper:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeper():
    return Sleeper()


@pytest.fixture
def api(httpserver, monkeypatch, sleeper):
    monkeypatch.setenv("GITHUB_API_URL", httpserver.url_for("/api/v3"))
    return GitHubAPI(TOKEN, sleep=sleeper, clock=lambda: 1_000_000.0)


def comment(cid, body, login=BOT_LOGIN, created="2026-01-01T00:00:00Z"):
    return {"id": cid, "body": body, "user": {"login": login}, "created_at": created,
            "html_url": f"https://github.example/{REPO}/pull/7#issuecomment-{cid}"}


def requests_made(httpserver):
    return [(r.method, r.path, r.get_data(as_text=True)) for r, _ in httpserver.log]


def test_api_url_resolution(monkeypatch):
    monkeypatch.delenv("GITHUB_API_URL", raising=False)
    assert api_url_from_env() == "https://api.github.com"
    monkeypatch.setenv("GITHUB_API_URL", "https://ghe.example.com/api/v3/")
    assert api_url_from_env() == "https://ghe.example.com/api/v3"
    assert api_url_from_env("http://x/") == "http://x"


def test_create_when_no_comment_exists_with_headers(httpserver, api):
    httpserver.expect_oneshot_request("/api/v3/repos/octo/model/issues/7/comments", method="GET").respond_with_json(
        [comment(1, "unrelated", login="alice")])
    httpserver.expect_oneshot_request("/api/v3/repos/octo/model/issues/7/comments", method="POST",
                                      json={"body": BODY}).respond_with_json(comment(99, BODY), status=201)
    outcome = upsert_comment(api, REPO, 7, BODY, marker=MARKER, author=BOT_LOGIN)
    assert (outcome.action, outcome.comment_id) == ("created", 99)
    first = httpserver.log[0][0]
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert first.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert first.headers["Accept"] == "application/vnd.github+json"
    assert first.headers["User-Agent"].startswith("promote/")
    assert first.args["per_page"] == "100"
    httpserver.check_assertions()


def test_update_in_place_when_changed(httpserver, api):
    httpserver.expect_oneshot_request("/api/v3/repos/octo/model/issues/7/comments", method="GET").respond_with_json(
        [comment(5, MARKER + "\nold")])
    httpserver.expect_oneshot_request("/api/v3/repos/octo/model/issues/comments/5", method="PATCH",
                                      json={"body": BODY}).respond_with_json(comment(5, BODY))
    outcome = upsert_comment(api, REPO, 7, BODY, marker=MARKER, author=BOT_LOGIN)
    assert (outcome.action, outcome.comment_id) == ("updated", 5)
    httpserver.check_assertions()


def test_unchanged_body_is_not_rewritten(httpserver, api):
    httpserver.expect_request("/api/v3/repos/octo/model/issues/7/comments", method="GET").respond_with_json(
        [comment(5, BODY)])
    outcome = upsert_comment(api, REPO, 7, BODY, marker=MARKER, author=BOT_LOGIN)
    assert outcome.action == "unchanged"
    assert [m for m, _, _ in requests_made(httpserver)] == ["GET"]


def test_pagination_to_page_3_and_author_match(httpserver, api):
    path = "/api/v3/repos/octo/model/issues/7/comments"
    page = httpserver.url_for("/api/v3/repositories/1/issues/7/comments")

    def listing(request: Request) -> Response:
        number = int(request.args.get("page", "1"))
        items = {1: [comment(i, "noise") for i in range(1, 4)] + [comment(50, BODY + "x", login="mallory")],
                 2: [comment(i, "noise") for i in range(4, 7)],
                 3: [comment(77, MARKER + "\nold")]}[number]
        headers = {}
        if number < 3:
            headers["Link"] = (f'<{page}?per_page=100&page={number + 1}>; rel="next", '
                               f'<{page}?per_page=100&page=3>; rel="last"')
        return Response(json.dumps(items), headers=headers, content_type="application/json")

    httpserver.expect_request(path, method="GET").respond_with_handler(listing)
    httpserver.expect_request("/api/v3/repositories/1/issues/7/comments", method="GET").respond_with_handler(listing)
    httpserver.expect_oneshot_request("/api/v3/repos/octo/model/issues/comments/77", method="PATCH").respond_with_json(
        comment(77, BODY))
    outcome = upsert_comment(api, REPO, 7, BODY, marker=MARKER, author=BOT_LOGIN)
    assert (outcome.action, outcome.comment_id) == ("updated", 77)
    made = requests_made(httpserver)
    assert [m for m, _, _ in made] == ["GET", "GET", "GET", "PATCH"]
    assert [r.args.get("page") for r, _ in httpserver.log[:3]] == [None, "2", "3"]
    httpserver.check_assertions()  # mallory's comment carrying our marker was not touched


def test_duplicates_from_a_race_are_deleted_newest_kept(httpserver, api):
    httpserver.expect_request("/api/v3/repos/octo/model/issues/7/comments", method="GET").respond_with_json(
        [comment(3, BODY, created="2026-01-01T00:00:00Z"),
         comment(4, MARKER + " older", created="2026-01-02T00:00:00Z")])
    httpserver.expect_oneshot_request("/api/v3/repos/octo/model/issues/comments/3", method="DELETE").respond_with_data(
        "", status=204)
    httpserver.expect_oneshot_request("/api/v3/repos/octo/model/issues/comments/4", method="PATCH").respond_with_json(
        comment(4, BODY))
    outcome = upsert_comment(api, REPO, 7, BODY, marker=MARKER, author=BOT_LOGIN)
    assert (outcome.action, outcome.comment_id, outcome.deleted_duplicates) == ("updated", 4, 1)
    httpserver.check_assertions()


def test_permission_403_is_never_retried(httpserver, api, sleeper):
    httpserver.expect_request("/api/v3/repos/octo/model/issues/7/comments", method="GET").respond_with_json([])
    httpserver.expect_request("/api/v3/repos/octo/model/issues/7/comments", method="POST").respond_with_json(
        {"message": "Resource not accessible by integration"}, status=403)
    with pytest.raises(Forbidden) as info:
        upsert_comment(api, REPO, 7, BODY, marker=MARKER, author=BOT_LOGIN)
    assert "Resource not accessible by integration" in str(info.value)
    assert [m for m, _, _ in requests_made(httpserver)] == ["GET", "POST"]
    assert sleeper.waits == []
    assert TOKEN not in str(info.value) and TOKEN not in repr(api)


def test_422_too_long_posts_the_minimal_body(httpserver, api):
    httpserver.expect_request("/api/v3/repos/octo/model/issues/7/comments", method="GET").respond_with_json([])
    minimal = MARKER + "\nminimal"

    def post(request: Request) -> Response:
        if request.get_json()["body"] == BODY:
            return Response(json.dumps({"message": "Validation Failed", "errors": [
                {"message": "Body is too long (maximum is 65536 characters)"}]}), status=422)
        return Response(json.dumps(comment(9, minimal)), status=201, content_type="application/json")

    httpserver.expect_request("/api/v3/repos/octo/model/issues/7/comments", method="POST").respond_with_handler(post)
    outcome = upsert_comment(api, REPO, 7, BODY, marker=MARKER, author=BOT_LOGIN, minimal_body=minimal)
    assert (outcome.action, outcome.minimal) == ("created", True)
    posted = [json.loads(body)["body"] for method, _, body in requests_made(httpserver) if method == "POST"]
    assert posted == [BODY, minimal]


def test_429_then_success_honours_retry_after(httpserver, api, sleeper):
    path = "/api/v3/repos/octo/model/issues/7/comments"
    httpserver.expect_ordered_request(path, method="POST").respond_with_json(
        {"message": "secondary rate limit"}, status=429, headers={"Retry-After": "3"})
    httpserver.expect_ordered_request(path, method="POST").respond_with_json(comment(1, BODY), status=201)
    assert api.request("POST", f"repos/{REPO}/issues/7/comments", json={"body": BODY}).status_code == 201
    assert sleeper.waits == [3.0]
    httpserver.check_assertions()


def test_rate_limit_403_waits_until_reset(httpserver, api, sleeper):
    path = "/api/v3/repos/octo/model/issues/7/comments"
    httpserver.expect_ordered_request(path).respond_with_json(
        {"message": "API rate limit exceeded"}, status=403,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(1_000_000 + 42)})
    httpserver.expect_ordered_request(path).respond_with_json([])
    assert list(api.paginate(f"repos/{REPO}/issues/7/comments")) == []
    assert sleeper.waits == [42.0]


def test_total_wait_is_capped(httpserver, monkeypatch, sleeper):
    monkeypatch.setenv("GITHUB_API_URL", httpserver.url_for("/"))
    api = GitHubAPI(TOKEN, sleep=sleeper, max_total_wait_s=60)
    httpserver.expect_request("/user").respond_with_json({"message": "rate limit"}, status=429,
                                                         headers={"retry-after": "3600"})
    with pytest.raises(RateLimited, match="retry budget"):
        api.get_json("user")
    assert sleeper.waits == []


def test_5xx_retried_for_get_not_for_post(httpserver, api, sleeper):
    httpserver.expect_ordered_request("/api/v3/x").respond_with_data("oops", status=502)
    httpserver.expect_ordered_request("/api/v3/x").respond_with_json({"ok": 1})
    assert api.get_json("x") == {"ok": 1}
    assert sleeper.waits == [2.0]
    httpserver.expect_request("/api/v3/y", method="POST").respond_with_data("oops", status=502)
    with pytest.raises(GitHubError) as info:
        api.request("POST", "y", json={})
    assert info.value.status == 502
    assert sum(1 for r, _ in httpserver.log if r.path == "/api/v3/y") == 1


def test_unreachable_is_typed_and_names_no_token(sleeper):
    api = GitHubAPI(TOKEN, api_url="http://127.0.0.1:9", sleep=sleeper, max_attempts=2)
    with pytest.raises(Unreachable) as info:
        api.get_json("user")
    assert "unreachable" in str(info.value) and TOKEN not in str(info.value)


def test_author_falls_back_to_actions_bot_on_403(httpserver, api):
    httpserver.expect_request("/api/v3/user").respond_with_json(
        {"message": "Resource not accessible by integration"}, status=403)
    assert comment_author(api) == BOT_LOGIN


def test_pr_from_commit_prefers_open(httpserver, api):
    httpserver.expect_request("/api/v3/repos/octo/model/commits/abc/pulls").respond_with_json(
        [{"number": 3, "state": "closed"}, {"number": 8, "state": "open"}])
    assert pr_from_commit(api, REPO, "abc") == 8


def test_pr_and_fork_from_event_payloads(tmp_path):
    def ctx(event, **env):
        path = tmp_path / "event.json"
        path.write_text(json.dumps(event))
        return Context.from_env({"GITHUB_EVENT_PATH": str(path), "GITHUB_REPOSITORY": REPO, **env})

    same = ctx({"pull_request": {"number": 7, "head": {"sha": "h", "repo": {"full_name": REPO}},
                                 "base": {"repo": {"full_name": REPO}}}}, GITHUB_SHA="merge")
    assert (pr_from_context(same), same.is_fork(), same.head_sha) == (7, False, "h")
    fork = ctx({"pull_request": {"number": 9, "head": {"sha": "f", "repo": {"full_name": "evil/model"}},
                                 "base": {"repo": {"full_name": REPO}}}})
    assert (pr_from_context(fork), fork.is_fork()) == (9, True)
    issue = ctx({"issue": {"number": 4, "pull_request": {"url": "x"}}})
    assert pr_from_context(issue) == 4
    assert pr_from_context(ctx({"issue": {"number": 4}})) is None  # a plain issue is not a PR
    run = ctx({"workflow_run": {"head_sha": "wr", "pull_requests": []}})
    assert (pr_from_context(run), run.head_sha, run.is_fork()) == (None, "wr", False)
    assert pr_from_context(ctx({}, GITHUB_REF="refs/pull/12/merge")) == 12
    assert pr_from_context(ctx({}, GITHUB_REF="refs/heads/main")) is None
    assert Context.from_env({"GITHUB_EVENT_PATH": str(tmp_path / "missing.json")}).event == {}
