"""Renderings of a Report through one jinja2 environment: text, markdown, PR comment, job summary,
JSON and JUnit (the last in junit.py).

StrictUndefined turns a template typo into an error instead of an empty cell; filters are plain
functions (filters.py). Size budgets are met by leaving out whole sections, lowest value first, and
re-rendering — never by cutting the rendered text, which could split a table or a code fence.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import jinja2

from promote.redact import redact, redact_data
from promote.report import filters
from promote.report.bidi import neutralise_data
from promote.report.formats import FORMATS
from promote.report.model import Report
from promote.report.view import build_view
from promote.resources import data_dir
from promote.results import format_value

STATUS_MARKS = {"pass": "✅", "warn": "⚠️", "fail": "❌", "inconclusive": "❔", "vacuous": "⭕", "error": "💥",
                "skipped": "⏭️", "invalid": "🚫"}
VERDICT_MARKS = {"pass": "✅", "warn": "⚠️", "error": "💥", "invalid": "🚫"}
VERDICT_TITLES = {
    "pass": "Promotion allowed", "warn": "Promotion allowed with warnings", "block": "Promotion blocked",
    "route-to-reference": "Route to reference: listed slices must stay on the reference kernel",
    "shadow-only": "Shadow only: the candidate may not serve traffic", "rollback": "Rollback",
    "error": "Could not evaluate",
    "invalid": "Invalid: the two kernels do not compute on the same thing (not judged)",
}
_TEXT_COLOURS = {"pass": "green", "warn": "yellow", "fail": "red", "inconclusive": "magenta", "vacuous": "magenta",
                 "error": "red", "skipped": "bright_black", "invalid": "red"}
# Leave-out order when a rendering is over budget: least useful to a reviewer first.
DROP_ORDER = ("chart", "implied", "environment", "passing", "actions", "attention", "routes")
COMMENT_BUDGET = 60_000  # UTF-8 bytes; GitHub rejects bodies over 65 536 characters
SUMMARY_BUDGET = 1024 * 1024  # bytes per step ($GITHUB_STEP_SUMMARY)
LIMITS = {  # rows and cell lengths per mode
    "full": {"row_cap": 10**9, "pass_cap": 10**9, "cell_limit": 2000, "route_cap": 10**9},
    "summary": {"row_cap": 500, "pass_cap": 500, "cell_limit": 1000, "route_cap": 200},
    "comment": {"row_cap": 25, "pass_cap": 50, "cell_limit": 300, "route_cap": 30},
    "minimal": {"row_cap": 0, "pass_cap": 0, "cell_limit": 120, "route_cap": 5},
}

#: What a report says in place of the kernels and eval set of a contract that declares none.
NO_KERNELS = "no kernels (observability only: the contract declares no reference or candidate)"
NO_DATA = "no eval set (observability only: the contract declares no data)"


class RenderError(Exception):
    """A template failed to render or broke an invariant (a bug in promote or a custom template)."""


def _environment(colour: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def paint(text: str, status: str) -> str:
        if not colour:
            return text
        import click

        return click.style(text, fg=_TEXT_COLOURS.get(status), bold=status in ("fail", "error", "invalid"))

    env.filters.update(md_cell=filters.md_cell, md_text=filters.md_text, md_code=filters.md_code, value=format_value,
                       bounds=filters.bound_text, paint=paint, truncate=filters.truncate, one_line=filters.one_line,
                       mermaid_label=filters.mermaid_label, mermaid_number=filters.mermaid_number)
    env.globals.update(marks=STATUS_MARKS, titles=VERDICT_TITLES, fence=filters.fence,
                       margin_text=filters.margin_text, compared=filters.compared_cells,
                       kernel_label=filters.kernel_label, no_kernels=NO_KERNELS, no_data=NO_DATA)
    return env


def _provenance_json(provenance: dict) -> str:
    """Provenance for machines, inert inside an HTML comment: no ``--``, ``<``, ``>``, ``&`` or ``@``
    (a mention) appear; each is a JSON ``\\uXXXX`` escape, so the JSON reads back the same."""
    text = json.dumps(provenance, ensure_ascii=True, sort_keys=True)
    for char in "-<>&@":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def _render(template: str, report: Report, *, colour: bool = False, mode: str = "full",
            drop: tuple[str, ...] = (), commit: str | None = None, artifact_url: str | None = None) -> str:
    # Mask secrets before any filter escapes them out of recognition; bidi controls shown, not obeyed.
    redacted = redact_data(report)
    report = neutralise_data(redacted)
    view = build_view(report, commit=commit)
    context = {
        "report": report, "view": view, "counts": view.counts, "mode": mode, "drop": drop,
        "verdict_mark": VERDICT_MARKS.get(report.verdict, "❌"),
        "marker": filters.marker(redacted.contract["name"]),  # the key publish.py finds the comment by
        "provenance_json": _provenance_json(view.provenance), **LIMITS[mode],
        "artifact_url": filters.artifact_url(artifact_url),
    }
    try:
        text = _environment(colour).get_template(template).render(**context)
    except jinja2.TemplateError as exc:
        raise RenderError(f"{template}: {exc}") from exc
    return redact(text)  # every text/markdown rendering (report, summary, comment) leaves masked


def fit(render: Callable[[tuple[str, ...]], str], budget: int) -> tuple[str, tuple[str, ...]]:
    """Render, leaving out whole sections in DROP_ORDER until the UTF-8 size fits ``budget``.

    Returns the text and the sections left out. Raises RenderError if even the skeleton is too big.
    """
    dropped: tuple[str, ...] = ()
    text = render(dropped)
    for section in DROP_ORDER:
        if len(text.encode("utf-8")) <= budget:
            break
        dropped += (section,)
        text = render(dropped)
    if len(text.encode("utf-8")) > budget:
        raise RenderError(f"report does not fit {budget} bytes even without its optional sections")
    return text, dropped


def render_text(report: Report, *, colour: bool = False) -> str:
    """The terminal report; colour only when asked (the CLI resolves NO_COLOR/FORCE_COLOR/--color)."""
    return _render("report.txt.j2", report, colour=colour)


def render_markdown(report: Report) -> str:
    """The full markdown report (``--format markdown``): every clause, no size budget."""
    return _render("report.md.j2", report)


def render_summary(report: Report, *, budget: int = SUMMARY_BUDGET) -> str:
    """The job summary: the full report capped to ``budget`` bytes ($GITHUB_STEP_SUMMARY holds 1 MiB)."""
    return fit(lambda drop: _render("report.md.j2", report, mode="summary", drop=drop), budget)[0]


def render_comment(report: Report, *, budget: int = COMMENT_BUDGET, artifact_url: str | None = None) -> str:
    """The compact PR comment, ≤ ``budget`` UTF-8 bytes, always carrying the contract's marker;
    ``artifact_url`` (the uploaded HTML + JSON report) is linked under the verdict."""
    text, _ = fit(lambda drop: _render("comment.md.j2", report, mode="comment", drop=drop,
                                       artifact_url=artifact_url), budget)
    if filters.marker(report.contract["name"]) not in text:
        raise RenderError("comment.md.j2 lost the promote marker; the comment could not be updated in place")
    return text


def render_minimal_comment(report: Report, *, artifact_url: str | None = None) -> str:
    """The fallback body when GitHub refuses the comment as too long: marker, verdict, footer."""
    return _render("comment.md.j2", report, mode="minimal", drop=DROP_ORDER, artifact_url=artifact_url)


def render_html(report: Report) -> str:
    """The self-contained HTML report (``--format html``): inline SVG figures (report/figures.py),
    light and dark themes, printable; autoescaped, with secrets masked like every other rendering."""
    from promote.report.figures import sections

    report = neutralise_data(redact_data(report))
    view = build_view(report)
    env = _environment(False)
    env.autoescape = True  # every report string lands in HTML text or attributes
    bad = report.verdict not in ("pass", "warn")
    context = {"report": report, "view": view, "counts": view.counts, "sections": sections(report),
               "verdict_mark": VERDICT_MARKS.get(report.verdict, "❌"),
               "verdict_class": "verdict-bad" if bad else f"verdict-{report.verdict}"}
    try:
        text = env.get_template("report.html.j2").render(**context)
    except jinja2.TemplateError as exc:
        raise RenderError(f"report.html.j2: {exc}") from exc
    return redact(text)


def render_json(report: Report) -> str:
    return report.to_json()


def render_junit(report: Report) -> str:
    from promote.report.junit import to_junit

    return redact(to_junit(neutralise_data(redact_data(report))))


RENDERERS: dict[str, Callable[[Report], str]] = {fmt: globals()[f"render_{fmt}"] for fmt in FORMATS}


def render(report: Report, fmt: str, *, colour: bool = False) -> str:
    """The report in ``fmt`` (one of FORMATS); only the text report has colour."""
    return render_text(report, colour=colour) if fmt == "text" else RENDERERS[fmt](report)
