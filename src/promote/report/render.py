"""Renderings of a Report: json, text (terminal) and markdown, through one jinja2 environment.

StrictUndefined turns a template typo into an error instead of an empty cell; filters are plain
functions (tested on their own). Markdown cells are escaped so a clause message or contract name
cannot break a table or inject HTML.
"""

from __future__ import annotations

import html
from collections.abc import Callable

import jinja2

from promote.report.model import Report
from promote.resources import data_dir
from promote.results import format_value

STATUS_MARKS = {"pass": "✅", "warn": "⚠️", "fail": "❌", "inconclusive": "❔", "vacuous": "⭕", "error": "💥",
                "skipped": "⏭️"}
VERDICT_TITLES = {
    "pass": "Promotion allowed", "warn": "Promotion allowed with warnings", "block": "Promotion blocked",
    "route-to-reference": "Promotion blocked: route to reference", "shadow-only": "Shadow only",
    "rollback": "Rollback", "error": "Could not evaluate",
}
_TEXT_COLOURS = {"pass": "green", "warn": "yellow", "fail": "red", "inconclusive": "magenta", "vacuous": "magenta",
                 "error": "red", "skipped": "bright_black"}


class RenderError(Exception):
    """A template failed to render (a bug in promote or a custom template), not a user error."""


def md_cell(value: object) -> str:
    """Escape text for one markdown table cell: pipes, HTML, backticks and newlines."""
    text = html.escape(str(value), quote=False)
    return text.replace("|", "\\|").replace("`", "\\`").replace("\r", " ").replace("\n", " ")


def bound_text(bounds: list) -> str:
    return ", ".join(f"{'≤' if b.op == 'max' else '≥'} {format_value(b.value)}" for b in bounds) or "—"


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

        return click.style(text, fg=_TEXT_COLOURS.get(status), bold=status in ("fail", "error"))

    env.filters.update(md_cell=md_cell, value=format_value, bounds=bound_text, paint=paint)
    env.globals.update(marks=STATUS_MARKS, titles=VERDICT_TITLES)
    return env


def _render(template: str, report: Report, *, colour: bool = False) -> str:
    try:
        return _environment(colour).get_template(template).render(report=report, counts=report.counts())
    except jinja2.TemplateError as exc:
        raise RenderError(f"{template}: {exc}") from exc


def render_text(report: Report, *, colour: bool = False) -> str:
    return _render("report.txt.j2", report, colour=colour)


def render_markdown(report: Report, *, colour: bool = False) -> str:
    return _render("report.md.j2", report)


def render_json(report: Report, *, colour: bool = False) -> str:
    return report.to_json()


RENDERERS: dict[str, Callable[..., str]] = {"text": render_text, "json": render_json, "markdown": render_markdown}
