"""How a command ends: the one place that hands a finished report to its readers (the --output
files, stdout, GitHub) and exits with the gate's code. What GitHub gets (summary, annotations,
outputs, the sticky PR comment) is publish.py's; when and in which order is decided here.

Why a module of its own: `check` and `merge` (and any later command that produces a report) end the
same way, and each rule here is part of the gate's contract with its user — every output path is
checked before anything runs, a write that still fails never changes the exit code, publishing
never changes it either, and in GitHub mode nothing printed can act as a workflow command.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from promote import console
from promote.errors import PromoteError

__all__ = ["check_output_paths", "emit", "github_mode", "token", "use_colour", "write_report"]


def use_colour(flag: bool | None) -> bool:
    """--color/--no-color wins; then NO_COLOR (off) and FORCE_COLOR (on); else only on a terminal."""
    if flag is not None:
        return flag
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return sys.stdout.isatty()


def emit(ctx: click.Context, report, fmt: str, outputs: tuple[tuple[str, Path], ...],  # noqa: ANN001 - a Report
          colour: bool | None, github: bool, comment_mode: str, *, metrics_out: Path | None = None) -> None:
    """Write the --output files, print the report, publish in GitHub mode, exit with the gate's code."""
    json_written = _write_outputs(report, outputs)
    if metrics_out is not None:
        _write_metrics(report, metrics_out)
    from promote.report.render import render

    colour_on = fmt == "text" and use_colour(colour)
    rendered = render(report, fmt, colour=colour_on)
    if github and fmt == "text":  # nothing in the report can act as a workflow command in the log
        from promote.github.workflow import stop_commands

        start, end = stop_commands()
        rendered = start + rendered + end
    elif github:  # JSON, markdown, JUnit: fenced when any line could read as a workflow command
        rendered = console.guard(rendered, github=True)
    click.echo(rendered, nl=False, color=colour_on)  # click would strip ANSI on a non-terminal otherwise
    if github:
        from promote.publish import publish_after_check

        publish_after_check(report, json_written=json_written, comment=comment_mode == "auto", token=token())
    ctx.exit(report.exit_code)


def _write_metrics(report, path: Path) -> None:  # noqa: ANN001 - a Report
    """--metrics-out: never changes the exit code; says when there was nothing to write or it failed."""
    from promote.report.prometheus import write_metrics

    try:
        written = write_metrics(report, path)
    except OSError as exc:
        console.message(f"promote: error: cannot write --metrics-out {path}: {exc.strerror or exc}")
        return
    console.message(f"promote: wrote runtime metrics to {path}" if written else
                    f"promote: --metrics-out {path}: no runtime stage ran, nothing written")


def check_output_paths(outputs: tuple[tuple[str, Path], ...], *, metrics_out: Path | None = None) -> None:
    """Every --output (and --metrics-out) path must be writable before any kernel runs (exit 2), so a
    typo costs nothing."""
    from promote.atomic import writable_problem

    for out_fmt, path in outputs:
        problem = writable_problem(path)
        if problem:
            raise PromoteError(f"--output {out_fmt}={path}: cannot write the report there: {problem}")
    problem = writable_problem(metrics_out) if metrics_out is not None else None
    if problem:
        raise PromoteError(f"--metrics-out {metrics_out}: cannot write the metrics there: {problem}")


def _write_outputs(report, outputs: tuple[tuple[str, Path], ...]) -> Path | None:  # noqa: ANN001 - a Report
    """Write each --output atomically; return the JSON path written. A write that still fails (disk
    full, the directory removed meanwhile) is an error line: the verdict is printed and the gate's
    exit code stands, since the evaluation itself succeeded."""
    from promote.report.render import render

    json_written: Path | None = None
    for out_fmt, path in outputs:
        try:
            write_report(path, render(report, out_fmt))
        except OSError as exc:
            console.message(f"promote: error: cannot write {out_fmt} report to {path}: {exc.strerror or exc}; the "
                            f"verdict below stands (exit {report.exit_code})")
            continue
        json_written = path if out_fmt == "json" else json_written
        console.message(f"promote: wrote {out_fmt} report to {path}")
    return json_written


def write_report(path: Path, text: str) -> None:
    """The one way a command writes a rendering to a file: parent directories made, written atomically
    (a reader never sees half a report). OSError is the caller's to word: `check` keeps its verdict,
    `render` fails with exit 2."""
    from promote.atomic import write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)


def github_mode(flag: bool | None) -> bool:
    """--github/--no-github wins; else on inside GitHub Actions."""
    if flag is not None:
        return flag
    from promote.github.workflow import in_actions

    return in_actions()


def token() -> str | None:
    """GITHUB_TOKEN, else GH_TOKEN. Read here and passed on; never printed."""
    return os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN") or None
