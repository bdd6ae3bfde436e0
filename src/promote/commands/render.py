"""`promote render`: re-render a JSON report in any format (e.g. the HTML report)."""

from __future__ import annotations

from pathlib import Path

import click

from promote import console
from promote.cli_emit import write_report
from promote.commands.options import EXIT_CODES_HELP
from promote.errors import PromoteError
from promote.report.formats import FORMATS


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("report_path", metavar="REPORT.json", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="html", show_default=True,
              help="Format to render the report in.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the rendering to this file (atomically) instead of stdout.")
def render(report_path: Path, fmt: str, output: Path | None) -> None:
    """Re-render a JSON report (`check --output json=...`) in any format, e.g. the HTML report.

    The report is validated against the report schema first. Exit 0 when written, 2 for an unreadable
    or invalid report or an unwritable output.
    """
    from promote.report.load import load_report
    from promote.report.render import render as render_report

    text = render_report(load_report(report_path), fmt)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        write_report(output, text)
    except OSError as exc:
        raise PromoteError(f"cannot write {output}: {exc.strerror or exc}") from None
    console.message(f"promote: wrote {fmt} report to {output}")
