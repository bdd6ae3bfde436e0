"""The `promote calibrate` command (kept out of cli.py; heavy imports happen when it runs).

Exit codes: 0 every legitimate variant passes and every covered fault is caught (and, with
``--derive``, every derived bound holds on the held-out split); 1 a legitimate variant fails or is
inconclusive, a covered fault is not caught, a derived bound fails held out; 2 usage or contract
error (also a clause --derive cannot bound); 3 a kernel could not be evaluated or a row is an error.
The summary under the table is built from the same fields (``table.judge``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from promote import console
from promote.atomic import writable_problem, write_text_atomic
from promote.errors import EXIT_COULD_NOT_EVALUATE, EvaluationError, PromoteError
from promote.output_spec import OutputSpec

CALIBRATE_EXIT_CODES = """\b
Exit codes:
  0  legitimate variants pass, covered faults are caught (--derive: bounds hold out of sample)
  1  a legitimate variant fails or is inconclusive, a covered fault is not caught, or a derived
     bound fails held out
  2  usage or contract error (unknown fault, bad contract, a clause --derive cannot bound)
  3  could not evaluate (a kernel crashed, a variant's row is an error)"""
FORMATS = ("markdown", "json", "html")


@click.command("calibrate", epilog=CALIBRATE_EXIT_CODES)
@click.argument("contract", type=click.Path(dir_okay=False, path_type=str))
@click.option("--faults", "faults", multiple=True, metavar="NAME[,NAME...]|none",
              help="Faults to plant (built-in or under `calibration.faults`); `none`: no fault (with --derive: derive "
                   "and check the bounds only, no table). Default: every covered fault and every built-in one.")
@click.option("--batch-one", is_flag=True, help="Also run each sample alone through each kernel (slow).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="markdown",
              show_default=True, help="What to print on stdout (html: the heatmap page).")
@click.option("--output", "outputs", multiple=True, type=OutputSpec(FORMATS, example="json=calibration.json"),
              help="Also write the result as FMT to PATH (repeatable), e.g. --output json=calibration.json; json is "
                   "the calibration document (schemas/calibration.schema.json), html the heatmap page.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Same as --output json=PATH.")
@click.option("--markdown", "md_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Same as --output markdown=PATH.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Same as --output html=PATH.")
@click.option("--derive", "derive_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Derive every bound from honest runs on a calibration split, check it on the held-out rest, "
                   "and write the contract with the derived bounds here (docs/calibration.md). The fault table is "
                   "then computed against the derived bounds (none with --faults none).")
@click.pass_context
def calibrate_command(ctx: click.Context, contract: str, faults: tuple[str, ...], batch_one: bool, fmt: str,
                      outputs: tuple[tuple[str, Path], ...], json_path: Path | None, md_path: Path | None,
                      html_path: Path | None, derive_path: Path | None) -> None:
    """Check the contract against the honest candidate, legitimate-noise variants and planted faults."""
    from promote.contract.model import load_contract

    loaded, _ = load_contract(contract)
    flags = [(f"--output {f}={p}", f, p) for f, p in outputs]
    flags += [(f"--{f} {p}", f, p) for f, p in (("json", json_path), ("markdown", md_path), ("html", html_path)) if p]
    _check_paths(loaded, flags, derive_path)
    writes = [(f, p) for _, f, p in flags]
    names = [n for item in faults for n in item.split(",") if n]
    if "none" in names and len(names) > 1:
        raise PromoteError("--faults none plants no fault; it cannot be combined with fault names")
    try:
        doc = _run(loaded, None if not faults else [] if names == ["none"] else names, batch_one, derive_path)
    except EvaluationError as exc:
        console.message(f"promote: error: {exc.format_message()}")
        ctx.exit(EXIT_COULD_NOT_EVALUATE)
        return
    rendered = _render(doc, {fmt, *(f for f, _ in writes)})
    for out_fmt, path in writes:
        path.parent.mkdir(parents=True, exist_ok=True)  # as `check --output` does
        write_text_atomic(path, rendered[out_fmt])
    click.echo(rendered[fmt], nl=False)
    ctx.exit(doc["exit_code"])


def _check_paths(loaded: Any, flags: list[tuple[str, str, Path]], derive_path: Path | None) -> None:
    """Every output path is checked before any kernel runs, so a typo costs nothing (exit 2)."""
    if derive_path is not None:
        from promote.calibrate.derive import derive_path_problem

        if problem := derive_path_problem(loaded, derive_path):
            raise PromoteError(problem)
        flags = [*flags, (f"--derive {derive_path}", "yaml", derive_path)]
    for flag, _, path in flags:
        if problem := writable_problem(path):
            raise PromoteError(f"{flag}: cannot write there: {problem}")


def _run(loaded: Any, names: list[str] | None, batch_one: bool, derive_path: Path | None) -> dict[str, Any]:
    """Derive (when asked) and build the table with the same two recorded honest kernels."""
    from promote.calibrate.table import SCHEMA_ID, calibrate, judge, resolve_faults

    if derive_path is None:
        return calibrate(loaded, faults=names, batch_one=batch_one, progress=console.message)
    from promote.calibrate.derive import derive, honest_kernels, write_derived

    resolve_faults(loaded, names)  # an unknown fault is exit 2 before anything runs
    kernels = honest_kernels(loaded)
    try:
        console.message("calibrate: deriving bounds (both kernels over the eval set once)")
        derived = derive(loaded, kernels=kernels)
        for warning in derived["warnings"]:
            console.message(f"promote: warning: not derivable: {warning}")
        loaded = write_derived(loaded, derived, derive_path)
        if names == []:  # --faults none: derive alone
            doc = {"schema": SCHEMA_ID, "contract": {"name": loaded.name, "path": loaded.source.display_path,
                                                     "sha256": loaded.sha256},
                   "samples": derived["split"]["calibration_samples"] + derived["split"]["held_out_samples"],
                   "clauses": [], "variants": [], "skipped": []}
        else:
            doc = calibrate(loaded, faults=names, batch_one=batch_one, progress=console.message, kernels=kernels)
    finally:
        for kernel in kernels.values():
            kernel.close()
    doc["derived"] = derived
    return judge(doc, derived["problems"])


def _render(doc: dict[str, Any], formats: set[str]) -> dict[str, str]:
    from promote.calibrate.table import to_markdown

    out = {}
    if "json" in formats:
        out["json"] = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if "markdown" in formats:
        out["markdown"] = to_markdown(doc)
    if "html" in formats:
        from promote.report.calibration_html import render_calibration_html

        out["html"] = render_calibration_html(doc)
    return out
