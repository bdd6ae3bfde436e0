"""`promote comment`: post or update the sticky PR comment for a JSON report or a rendered body."""

from __future__ import annotations

from pathlib import Path

import click

from promote.cli_emit import token as github_token
from promote.commands.options import EXIT_CODES_HELP
from promote.errors import EXIT_COULD_NOT_EVALUATE, PromoteError


@click.command(epilog=EXIT_CODES_HELP)
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="A JSON report (`check --output json=...`) to render as the comment.")
@click.option("--body", "body_path", type=click.Path(dir_okay=False, path_type=Path),
              help="A pre-rendered comment body (must carry promote's marker); prefer --report for untrusted input.")
@click.option("--pr", type=click.IntRange(min=1), help="Pull request number. Default: from the event payload, "
              "GITHUB_REF, or the PR whose head is the commit.")
@click.option("--repo", help="owner/name. Default: $GITHUB_REPOSITORY.")
@click.option("--api-url", help="REST API base. Default: $GITHUB_API_URL, else https://api.github.com.")
@click.option("--dry-run", is_flag=True, help="Print the body, its byte size and the planned requests; send nothing.")
@click.option("--artifact-url", help="With --report: link this URL (the uploaded HTML and JSON report, an https "
              "URL) under the verdict.")
@click.pass_context
def comment(ctx: click.Context, report_path: Path | None, body_path: Path | None, pr: int | None, repo: str | None,
            api_url: str | None, dry_run: bool, artifact_url: str | None) -> None:
    """Post or update the sticky PR comment for a report (token from GITHUB_TOKEN or GH_TOKEN).

    Exit 0 when the comment was posted, was unchanged, or there is nothing to comment on (no PR, a
    fork PR); 2 for bad input or a missing token; 3 when GitHub refused or could not be reached.
    """
    from promote.github.comment import Context
    from promote.github.workflow import in_actions
    from promote.publish import CommentRequest, Log, comment_request_for, marker_in, publish_comment

    if (report_path is None) == (body_path is None):
        raise click.UsageError("give exactly one of --report REPORT.json or --body COMMENT.md")
    token = github_token()
    extra = {"api_url": api_url, "repo": repo, "pr": pr, "dry_run": dry_run}
    if artifact_url is not None:
        from promote.report.filters import artifact_url as safe_url

        if report_path is None or safe_url(artifact_url) is None:
            raise click.BadParameter("needs --report and a plain https URL (no spaces, quotes or brackets)",
                                     param_hint="--artifact-url")
    if report_path is not None:
        request = comment_request_for(_load_report(report_path), token=token, artifact_url=artifact_url, **extra)
    else:
        body = _read(body_path)
        found = marker_in(body)
        if found is None:
            raise PromoteError(f"{body_path} has no promote marker (<!-- promote:report key=... -->); render it "
                               "with `promote check --output markdown=...` or use --report")
        request = CommentRequest(body=body, minimal_body=None, marker=found, token=token, **extra)
    result = publish_comment(request, Context.from_env(), Log(github=in_actions()))
    if result.status == "no-token":
        raise PromoteError("no GitHub token: set GITHUB_TOKEN or GH_TOKEN (or use --dry-run)")
    ctx.exit(EXIT_COULD_NOT_EVALUATE if result.status == "failed" else 0)


def _read(path: Path) -> str:
    from promote.report.load import read_text

    return read_text(path)


def _load_report(path: Path):  # noqa: ANN202 - a Report
    from promote.report.load import load_report

    return load_report(path)
