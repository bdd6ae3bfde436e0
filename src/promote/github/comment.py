"""The sticky PR comment: find this contract's comment by its hidden marker and author, across every
page; update it in place, leave it alone when unchanged, create it otherwise.

Receives rendered strings (body, minimal fallback body, marker) and never imports the report layer.
Also resolves the pull request (flag → event payload → ref → commits API) and recognises fork PRs,
whose read-only token cannot comment: those are skipped with a notice, never failed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promote.github.api import Forbidden, GitHubAPI, GitHubError, NotFound, Unauthorized, Unprocessable

BOT_LOGIN = "github-actions[bot]"
_REF_PR = re.compile(r"^refs/pull/(\d+)/(?:merge|head)$")


@dataclass
class Context:
    """What the workflow run says about where we are (all optional: a local run has none of it)."""

    repo: str | None = None
    event: dict[str, Any] = field(default_factory=dict)
    ref: str | None = None
    sha: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Context:
        """Read GITHUB_REPOSITORY, GITHUB_EVENT_PATH (JSON payload), GITHUB_REF, GITHUB_SHA."""
        env = os.environ if env is None else env
        event: dict[str, Any] = {}
        path = env.get("GITHUB_EVENT_PATH")
        if path:
            try:
                loaded = json.loads(Path(path).read_text(encoding="utf-8"))
                event = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                event = {}
        return cls(repo=env.get("GITHUB_REPOSITORY") or None, event=event, ref=env.get("GITHUB_REF") or None,
                   sha=env.get("GITHUB_SHA") or None)

    @property
    def head_sha(self) -> str | None:
        """The PR's head commit when known (GITHUB_SHA is a transient merge commit on pull_request)."""
        pr = self.event.get("pull_request") or {}
        run = self.event.get("workflow_run") or {}
        return (pr.get("head") or {}).get("sha") or run.get("head_sha") or self.sha

    def is_fork(self) -> bool:
        """A pull request from another repository: its GITHUB_TOKEN is read-only, so no comment."""
        pr = self.event.get("pull_request") or {}
        head_repo = ((pr.get("head") or {}).get("repo") or {}).get("full_name")
        base_repo = ((pr.get("base") or {}).get("repo") or {}).get("full_name") or self.repo
        return bool(head_repo and base_repo and head_repo != base_repo)


def pr_from_context(ctx: Context) -> int | None:
    """PR number without network: event ``pull_request.number`` (or an issue comment on a PR, or a
    same-repository ``workflow_run``), then ``refs/pull/N/merge``."""
    pr = ctx.event.get("pull_request")
    if isinstance(pr, dict) and isinstance(pr.get("number"), int):
        return pr["number"]
    issue = ctx.event.get("issue")
    if isinstance(issue, dict) and issue.get("pull_request") and isinstance(issue.get("number"), int):
        return issue["number"]
    run = ctx.event.get("workflow_run")
    if isinstance(run, dict) and run.get("pull_requests"):  # empty for fork PRs (actions/runner#3444)
        first = run["pull_requests"][0]
        if isinstance(first, dict) and isinstance(first.get("number"), int):
            return first["number"]
    match = _REF_PR.match(ctx.ref or "")
    return int(match.group(1)) if match else None


def pr_from_commit(api: GitHubAPI, repo: str, sha: str) -> int | None:
    """The open PR whose head is ``sha`` (how a ``workflow_run`` for a fork PR finds its PR)."""
    pulls = api.get_json(f"repos/{repo}/commits/{sha}/pulls", expect=list)
    pulls = [p for p in pulls if isinstance(p, dict) and _is_id(p.get("number"))]
    open_first = sorted(pulls, key=lambda p: p.get("state") != "open")
    return open_first[0]["number"] if open_first else None


def _is_id(value: object) -> bool:
    """A positive integer (bool is an int in Python, and not an id)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def head_label(ctx: Context) -> str | None:
    """``owner:branch`` of a ``workflow_run``'s head, for the pulls-by-head lookup on fork PRs."""
    run = ctx.event.get("workflow_run") or {}
    owner = ((run.get("head_repository") or {}).get("owner") or {}).get("login")
    branch = run.get("head_branch")
    return f"{owner}:{branch}" if owner and branch else None


def pr_from_head(api: GitHubAPI, repo: str, label: str) -> int | None:
    """The open PR whose head is ``owner:branch`` (the commit lookup can miss a fork's commit)."""
    pulls = api.get_json(f"repos/{repo}/pulls", params={"head": label, "state": "open"}, expect=list)
    numbers = [p["number"] for p in pulls if isinstance(p, dict) and _is_id(p.get("number"))]
    return numbers[0] if numbers else None


def comment_author(api: GitHubAPI) -> str:
    """Login of the token's user; GITHUB_TOKEN cannot read /user (403), so it is the Actions bot."""
    try:
        login = api.get_json("user", expect=dict).get("login")
    except (Forbidden, NotFound, Unauthorized):
        return BOT_LOGIN
    return login if isinstance(login, str) and login else BOT_LOGIN


@dataclass
class Outcome:
    """What happened to the comment: created, updated, unchanged (skipped) — plus its URL."""

    action: str
    url: str | None = None
    comment_id: int | None = None
    deleted_duplicates: int = 0
    minimal: bool = False


def _write(api: GitHubAPI, method: str, path: str, body: str, minimal_body: str | None) -> tuple[dict, bool]:
    try:
        return api.request_json(method, path, json={"body": body}, expect=dict), False
    except Unprocessable as exc:
        if not exc.too_long or minimal_body is None:
            raise
        return api.request_json(method, path, json={"body": minimal_body}, expect=dict), True


def upsert_comment(api: GitHubAPI, repo: str, pr: int, body: str, *, marker: str, author: str,
                   minimal_body: str | None = None) -> Outcome:
    """Create or update this contract's sticky comment on PR ``pr`` of ``repo`` (``owner/name``).

    Matches ``marker`` **and** ``author`` (editing someone else's comment is a 403, and a user could
    paste the marker). If several match (a race between two runs), the newest is updated and the
    others deleted. On 422 "too long", ``minimal_body`` is posted instead.
    """
    if marker not in body:
        raise ValueError("comment body lacks its marker; it could never be found and updated again")
    mine = [c for c in api.paginate(f"repos/{repo}/issues/{pr}/comments")
            if isinstance(c, dict) and _is_id(c.get("id")) and isinstance(c.get("body"), str)
            and marker in c["body"] and isinstance(c.get("user"), dict) and c["user"].get("login") == author]
    if not mine:
        created, minimal = _write(api, "POST", f"repos/{repo}/issues/{pr}/comments", body, minimal_body)
        return Outcome("created", _url(created), created.get("id"), minimal=minimal)
    mine.sort(key=lambda c: (str(c.get("created_at") or ""), c["id"]))
    keep, duplicates = mine[-1], mine[:-1]
    for old in duplicates:
        api.request("DELETE", f"repos/{repo}/issues/comments/{old['id']}")
    if keep["body"].strip() == body.strip():
        return Outcome("unchanged", _url(keep), keep["id"], len(duplicates))
    updated, minimal = _write(api, "PATCH", f"repos/{repo}/issues/comments/{keep['id']}", body, minimal_body)
    return Outcome("updated", _url(updated), keep["id"], len(duplicates), minimal)


def _url(comment: dict) -> str | None:
    url = comment.get("html_url")
    return url if isinstance(url, str) else None


def planned_requests(api_url: str, repo: str, pr: int | None, sha: str | None) -> list[str]:
    """The requests a real run would make, for ``--dry-run`` (no network)."""
    base = api_url.rstrip("/")
    plan = []
    if pr is None:
        plan.append(f"GET {base}/repos/{repo}/commits/{sha or '<sha>'}/pulls  (find the PR)")
    number = pr if pr is not None else "<pr>"
    plan += [
        f"GET {base}/user  (comment author; GITHUB_TOKEN falls back to {BOT_LOGIN})",
        f"GET {base}/repos/{repo}/issues/{number}/comments?per_page=100  (every page, via the Link header)",
        f"PATCH {base}/repos/{repo}/issues/comments/<id>  (if our comment exists and changed)",
        f"POST {base}/repos/{repo}/issues/{number}/comments  (if it does not exist)",
    ]
    return plan


__all__ = ["BOT_LOGIN", "Context", "GitHubError", "Outcome", "comment_author", "planned_requests", "pr_from_commit",
           "pr_from_context", "upsert_comment"]
