"""Publish a Report to GitHub: job summary, annotations, step outputs and the sticky PR comment.

The one module that imports both ``report`` and ``github`` (like the CLI, it sits above both): it
renders strings with the report layer and hands them to the github layer. Publishing never changes
the gate: a comment that cannot be posted (no PR, fork PR, no token, API down) is a notice or a
warning, and the exit code stays the one the policy decided.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from promote.atomic import write_text_atomic
from promote.console import guard
from promote.github import workflow
from promote.github.api import Forbidden, GitHubAPI, GitHubError, Unauthorized, api_url_from_env
from promote.github.comment import (
    Context,
    comment_author,
    head_label,
    planned_requests,
    pr_from_commit,
    pr_from_context,
    pr_from_head,
    upsert_comment,
)
from promote.redact import redact, redact_message
from promote.report.bidi import neutralise_data
from promote.report.filters import MARKER_PATTERN, marker, marker_key
from promote.report.model import Report
from promote.report.render import render_comment, render_minimal_comment, render_summary
from promote.report.view import annotation_items


class Log:
    """Notices and warnings on stderr: workflow commands in GitHub mode, plain lines elsewhere.

    Every message is masked (redact_message: the token, secret-like env values, interpolated values)
    before it is written; commands are escaped (workflow.command) and plain lines fenced when they
    could read as a command (console.guard).
    """

    def __init__(self, github: bool, stream: TextIO | None = None) -> None:
        self.github, self.stream = github, stream or sys.stderr

    def _say(self, level: str, message: str) -> None:
        message = redact_message(message)
        if self.github:
            workflow.emit([workflow.command(level, message, title="promote")], self.stream)
        else:
            self.stream.write(f"promote: {level}: {message}\n")
        self.stream.flush()

    def notice(self, message: str) -> None:
        self._say("notice", message)

    def warning(self, message: str) -> None:
        self._say("warning", message)

    def info(self, message: str) -> None:
        self.stream.write(guard(f"promote: {redact_message(message)}\n", github=self.github))


@dataclass
class CommentRequest:
    """Everything `promote comment` / `check --comment auto` needs, already rendered to strings."""

    body: str
    minimal_body: str | None
    marker: str
    token: str | None
    api_url: str | None = None
    repo: str | None = None
    pr: int | None = None
    dry_run: bool = False


@dataclass
class CommentResult:
    status: str  # posted | skipped | no-token | failed
    message: str


def comment_request_for(report: Report, *, token: str | None, artifact_url: str | None = None,
                        **kwargs: object) -> CommentRequest:
    """Render the comment (≤ 60 000 bytes) and its 422 fallback from a report, linking ``artifact_url``."""
    return CommentRequest(body=render_comment(report, artifact_url=artifact_url),
                          minimal_body=render_minimal_comment(report, artifact_url=artifact_url),
                          marker=marker(report.contract["name"]), token=token, **kwargs)  # type: ignore[arg-type]


def marker_in(body: str) -> str | None:
    """The promote marker a pre-rendered body carries (``promote comment --body``), if any."""
    found = MARKER_PATTERN.search(body)
    return found.group(0) if found else None


def publish_comment(req: CommentRequest, ctx: Context, log: Log, *, out: TextIO | None = None,
                    api: GitHubAPI | None = None) -> CommentResult:
    """Post or update the sticky comment, or explain (notice/warning) why not. Never raises for
    GitHub trouble: the gate result must survive a comment failure."""
    try:
        return _publish_comment(req, ctx, log, out=out or sys.stdout, api=api)
    except GitHubError as exc:
        log.warning(f"PR comment not posted: {exc}")
        return CommentResult("failed", str(exc))
    except Exception as exc:  # noqa: BLE001 - a bug or an odd reply here must never change the gate
        log.warning(f"PR comment not posted: {type(exc).__name__}: {exc}")
        return CommentResult("failed", f"{type(exc).__name__}: {exc}")


def _publish_comment(req: CommentRequest, ctx: Context, log: Log, *, out: TextIO,
                     api: GitHubAPI | None) -> CommentResult:
    repo = req.repo or ctx.repo
    if not repo:
        return _skip(log, "no repository known (set GITHUB_REPOSITORY or pass --repo); PR comment skipped")
    if ctx.is_fork() and not req.dry_run:
        return _skip(log, "pull request from a fork: its token is read-only, so the PR comment is skipped "
                          "(the job summary has the full report; see docs/github-action.md for the workflow_run "
                          "recipe)")
    pr = req.pr if req.pr is not None else pr_from_context(ctx)
    api_url = api_url_from_env(req.api_url)
    body = redact(req.body)  # a --body file is posted as given: mask it here, whatever rendered it
    minimal_body = redact(req.minimal_body) if req.minimal_body is not None else None
    if req.dry_run:
        out.write(guard(body if body.endswith("\n") else body + "\n", github=log.github))
        log.info(f"dry run: comment body is {len(body.encode('utf-8'))} bytes (UTF-8); no request sent")
        for line in planned_requests(api_url, repo, pr, ctx.head_sha):
            log.info(f"would send: {line}")
        return CommentResult("skipped", "dry run")
    if not req.token:
        log.warning("no GitHub token (set GITHUB_TOKEN or GH_TOKEN); PR comment skipped")
        return CommentResult("no-token", "no token")
    api = api or GitHubAPI(req.token, api_url=api_url)
    try:
        if pr is None and ctx.head_sha:
            pr = pr_from_commit(api, repo, ctx.head_sha)
        if pr is None and head_label(ctx):
            pr = pr_from_head(api, repo, head_label(ctx))
        if pr is None:
            return _skip(log, "no pull request for this run (not a pull_request event, no --pr, no open PR for "
                              "the commit); PR comment skipped")
        outcome = upsert_comment(api, repo, pr, body, marker=req.marker, author=comment_author(api),
                                 minimal_body=minimal_body)
    except (Forbidden, Unauthorized) as exc:
        log.warning(f"the token may not write PR comments ({exc}); give the job `permissions: pull-requests: "
                    "write`, or use the workflow_run recipe for fork PRs. PR comment skipped")
        return CommentResult("failed", str(exc))
    except GitHubError as exc:
        log.warning(f"PR comment not posted: {exc}")
        return CommentResult("failed", str(exc))
    extra = " (the full report was too long; posted the minimal body)" if outcome.minimal else ""
    log.info(f"PR comment {outcome.action}: {outcome.url or f'#{pr}'}{extra}")
    return CommentResult("posted", outcome.action)


def _skip(log: Log, message: str) -> CommentResult:
    log.notice(message)
    return CommentResult("skipped", message)


def _annotation_file(report: Report) -> str:
    """The contract path as the PR diff knows it: relative to GITHUB_WORKSPACE when inside it."""
    path = Path(report.contract["path"]).resolve()
    workspace = os.environ.get("GITHUB_WORKSPACE")
    if workspace:
        try:
            return path.relative_to(Path(workspace).resolve()).as_posix()
        except ValueError:
            pass
    return report.contract["path"]


def _json_path(report: Report, written: Path | None) -> Path:
    if written is not None:
        return written
    base = Path(os.environ.get("RUNNER_TEMP") or tempfile.gettempdir()) / "promote"
    base.mkdir(parents=True, exist_ok=True)
    path = base / f"{marker_key(report.contract['name'])}.json"
    write_text_atomic(path, report.to_json())
    return path


def publish_github(report: Report, *, json_written: Path | None, log: Log) -> None:
    """GitHub mode: annotations (stderr), job summary, step outputs. Comment handled separately."""
    items = annotation_items(neutralise_data(report))  # bidi controls shown, as in every rendering
    workflow.emit(workflow.annotations(items, file=_annotation_file(report)), log.stream)
    budget = workflow.summary_budget()
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        try:
            written = workflow.write_summary(render_summary(report, budget=budget))
        except Exception as exc:  # noqa: BLE001 - RenderError over budget or an unwritable file: never the gate
            log.warning(f"job summary not written: {exc}")
        else:
            if not written:
                log.warning("job summary not written: the step summary is full (1 MiB)")
    try:
        json_path = _json_path(report, json_written)
        workflow.set_outputs({"verdict": report.verdict, "exit-code": report.exit_code, "report-json": json_path})
    except OSError as exc:
        log.warning(f"step outputs not written: {exc.strerror}")


def publish_after_check(report: Report, *, json_written: Path | None, comment: bool, token: str | None) -> None:
    """Everything GitHub mode publishes after `check`/`merge`: outputs, summary, annotations and (with
    ``comment``) the sticky PR comment. Nothing here raises or changes the gate's exit code."""
    log = Log(github=True)
    try:
        publish_github(report, json_written=json_written, log=log)
    except Exception as exc:  # noqa: BLE001 - publishing never changes the gate's exit code
        log.warning(f"GitHub outputs not fully written: {type(exc).__name__}: {exc}")
    if not comment:
        return
    try:
        request = comment_request_for(report, token=token)
    except Exception as exc:  # noqa: BLE001 - a rendering bug must not change the gate
        log.warning(f"PR comment not rendered: {exc}")
        return
    try:
        publish_comment(request, Context.from_env(), log)
    except Exception as exc:  # noqa: BLE001 - publishing never changes the gate's exit code (or its outputs)
        log.warning(f"PR comment not posted: {type(exc).__name__}: {exc}")
