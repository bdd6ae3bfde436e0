"""The `promote calibrate` command (kept out of cli.py; heavy imports happen when it runs).

Exit codes: 0 every legitimate variant passes and every covered fault is caught (and, with
``--derive``, every derived bound holds on the held-out split); 1 otherwise; 2 usage or contract
error; 3 a kernel could not be evaluated.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from promote.errors import EXIT_COULD_NOT_EVALUATE, EvaluationError, PromoteError

CALIBRATE_EXIT_CODES = """\b
Exit codes:
  0  legitimate variants pass, covered faults are caught (--derive: bounds hold out of sample)
  1  a legitimate variant fails, a covered fault is missed, or a derived bound fails held out
  2  usage or contract error (unknown fault, bad contract)
  3  could not evaluate (a kernel crashed)"""


@click.command("calibrate", epilog=CALIBRATE_EXIT_CODES)
@click.argument("contract", type=click.Path(dir_okay=False, path_type=str))
@click.option("--faults", "faults", multiple=True, metavar="NAME[,NAME...]",
              help="Faults to plant (built-in or under `calibration.faults`). Default: every covered fault and "
                   "every built-in one.")
@click.option("--batch-one", is_flag=True, help="Also run each sample alone through each kernel (slow).")
@click.option("--format", "fmt", type=click.Choice(["markdown", "json", "html"]), default="markdown",
              show_default=True, help="What to print on stdout (html: the page --html writes).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the calibration document (schemas/calibration.schema.json) here.")
@click.option("--markdown", "md_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the markdown table here.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a self-contained HTML page with the variant × clause heatmap here "
                   "(docs/report.md).")
@click.option("--derive", "derive_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Derive every bound from honest runs on a calibration split, check it on the held-out rest, "
                   "and write the contract with the derived bounds here (docs/calibration.md). The fault table is "
                   "then computed against the derived bounds.")
@click.pass_context
def calibrate_command(ctx: click.Context, contract: str, faults: tuple[str, ...], batch_one: bool, fmt: str,
                      json_path: Path | None, md_path: Path | None, html_path: Path | None,
                      derive_path: Path | None) -> None:
    """Check the contract against the honest candidate, legitimate-noise variants and planted faults."""
    from promote import console
    from promote.atomic import writable_problem, write_text_atomic
    from promote.calibrate.table import calibrate, to_markdown
    from promote.contract.model import load_contract

    loaded, _ = load_contract(contract)
    if derive_path is not None:
        from promote.calibrate.derive import derive_path_problem

        if problem := derive_path_problem(loaded, derive_path):
            raise PromoteError(problem)
    for flag, path in (("--json", json_path), ("--markdown", md_path), ("--html", html_path),
                       ("--derive", derive_path)):
        problem = writable_problem(path) if path is not None else None
        if problem:  # before any kernel runs, so a typo costs nothing
            raise PromoteError(f"{flag} {path}: cannot write there: {problem}")
    names = [n for item in faults for n in item.split(",") if n]
    derived = None
    try:
        if derive_path is not None:
            from promote.calibrate.derive import derive, write_derived

            derived = derive(loaded)
            loaded = write_derived(loaded, derived, derive_path)
        doc = calibrate(loaded, faults=names or None, batch_one=batch_one, progress=console.message)
    except EvaluationError as exc:
        console.message(f"promote: error: {exc.format_message()}")
        ctx.exit(EXIT_COULD_NOT_EVALUATE)
        return
    if derived is not None:
        doc["derived"] = derived
        if derived["problems"]:
            doc["problems"] += derived["problems"]
            doc["exit_code"] = 1
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    markdown = to_markdown(doc)
    page = None
    if html_path or fmt == "html":
        from promote.report.calibration_html import render_calibration_html

        page = render_calibration_html(doc)
    for path, content in ((json_path, text), (md_path, markdown), (html_path, page)):
        if path is not None:
            write_text_atomic(path, content)
    click.echo({"json": text, "html": page}.get(fmt, markdown), nl=False)
    ctx.exit(doc["exit_code"])
