"""`promote calibrate`: is the contract shown to pass conforming kernels and fail violating ones?

The contract is checked (numerics and slices, the stages that judge outputs) against the honest
candidate, the legitimate-noise variants on **both** kernels (rerun, odd batches, and with
``batch_one`` each sample alone), and every fault; each run reuses the reference's outputs
(``replay.py``) instead of recomputing them. The result is a table variant × clause →
caught / missed / inconclusive (faults) or pass / fail (honest and legitimate variants) with the
observed value and bound, as JSON (schemas/calibration.schema.json) and markdown. The exit code is
1 when a legitimate variant fails or a fault the contract ``covers:`` is missed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from promote.calibrate.outcomes import VariantKind
from promote.calibrate.replay import RebatchKernel, ReplayKernel
from promote.contract.fault_specs import fault_from_dict, fault_problem
from promote.contract.kinds import MODULES, capabilities_of
from promote.contract.model import Contract
from promote.data import EvalSet, load_evalset
from promote.errors import UsageError
from promote.kernels import build_kernel
from promote.kernels.base import Kernel
from promote.kernels.inject import InjectedKernel
from promote.report.calibration_html import cell_value
from promote.results import ClauseResult, finite_or_none
from promote.run import CheckOptions, run_check

SCHEMA_ID = "promote-calibration/1"
JUDGED_STAGES = ("numerics", "slices")
_RANK = {"invalid": 6, "error": 5, "fail": 4, "warn": 4, "vacuous": 3, "inconclusive": 2, "pass": 1, "skipped": 0}


@dataclass
class Variant:
    """One row of the table: which kernels, and what the contract should do with them."""

    name: str
    kind: VariantKind
    description: str
    kernels: Callable[[], dict[str, Kernel]]
    covered: bool | None = None
    owned: list[Kernel] = field(default_factory=list)  # kernels built for this row, closed after it


def _cell(results: list[ClauseResult], kind: str) -> dict[str, Any]:
    """One clause (all its slices) in one variant: the worst result, read as caught/missed for faults."""
    worst = max(results, key=lambda r: (_RANK.get(r.status, 0), r.slice or ""))
    status = worst.status
    if kind == "fault":
        verdict = {"fail": "caught", "warn": "caught", "pass": "missed"}.get(status, "inconclusive")
        if status in ("error", "invalid"):
            verdict = status
    else:
        judged = ("pass", "fail", "error", "invalid")
        verdict = status if status in judged else ("fail" if status == "warn" else "inconclusive")
    bounds = [{"op": b.op, "value": finite_or_none(b.value)} for b in worst.bounds]
    observed = worst.observed
    return {"status": status, "result": verdict, "slice": worst.slice,
            "observed": finite_or_none(observed) if isinstance(observed, float) else observed,
            "bounds": bounds, "message": worst.message,
            "slices_failing": sum(r.status in ("fail", "warn") for r in results), "slices": len(results)}


def _row_outcome(kind: str, cells: dict[str, dict[str, Any]]) -> str:
    results = [c["result"] for c in cells.values()]
    if "invalid" in results:  # not judged: neither a catch nor a pass
        return "invalid"
    if "error" in results:
        return "error"
    if kind == "fault":
        return "caught" if "caught" in results else ("inconclusive" if "inconclusive" in results else "missed")
    return "fail" if "fail" in results else ("inconclusive" if "inconclusive" in results else "pass")


def resolve_faults(contract: Contract, names: Sequence[str] | None) -> tuple[dict[str, dict[str, Any]], list[dict]]:
    """The faults to plant and the ones left out: ``names`` (built-in or `calibration.faults`), default
    every covered one plus the built-ins. By default a built-in fault that changes the model is left
    out (and listed, with why) when the candidate is not `kind: torch`, so `promote calibrate` runs on
    any contract; such a fault asked for with ``--faults``, and an unknown name, are usage errors
    (exit 2) before any kernel runs."""
    cal = contract.calibration
    known = cal.all_faults()
    chosen = list(names) if names is not None else list(dict.fromkeys([*cal.covers, *known]))
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise UsageError(f"--faults: unknown fault {', '.join(f'`{n}`' for n in unknown)}; known: {', '.join(known)} "
                         f"(add more under `calibration.faults` in {contract.source.display_path})")
    skipped = []
    for name in list(chosen):
        problem = fault_problem(known[name])
        if problem:
            raise UsageError(f"fault `{name}`: {problem}")
        if MODULES not in capabilities_of(contract.candidate.kind) and fault_from_dict(known[name]).needs_module:
            why = f"changes the model, which needs a `kind: torch` candidate (this one is `{contract.candidate.kind}`)"
            if names is not None:  # (`covers` and `calibration.faults` cannot hold one: the contract check rejects it)
                raise UsageError(f"--faults: fault `{name}` {why}; output faults (cast logits, temperature, noise) "
                                 "work on any kernel")
            chosen.remove(name)
            skipped.append({"name": name, "reason": why})
    return {n: known[n] for n in chosen}, skipped


def variants(contract: Contract, faults: dict[str, dict[str, Any]], *, batch_one: bool = False,
             odd_batch_size: int = 3, kernels: dict[str, ReplayKernel] | None = None
             ) -> tuple[list[Variant], Callable[[], None]]:
    """The rows, built lazily around one replayed reference and one replayed honest candidate
    (``kernels``: those --derive already ran, so their recorded outputs are replayed here too)."""
    if kernels is None:
        kernels = {"reference": ReplayKernel(build_kernel(contract.reference, role="reference")),
                   "candidate": ReplayKernel(build_kernel(contract.candidate, role="candidate"))}
    ref, cand = kernels["reference"], kernels["candidate"]
    honest = {"reference": ref, "candidate": cand}
    rows = [Variant("honest", "honest", "the candidate as declared", lambda: honest),
            Variant("candidate-rerun", "legit", "the candidate run again (nondeterminism)",
                    lambda: {"reference": ref, "candidate": cand.inner}),
            Variant("candidate-odd-batch", "legit", f"the candidate in batches of {odd_batch_size}",
                    lambda: {"reference": ref, "candidate": RebatchKernel(cand.inner, odd_batch_size)}),
            Variant("reference-rerun", "legit", "the reference run again",
                    lambda: {"reference": ref.inner, "candidate": cand}),
            Variant("reference-odd-batch", "legit", f"the reference in batches of {odd_batch_size}",
                    lambda: {"reference": RebatchKernel(ref.inner, odd_batch_size), "candidate": cand})]
    if batch_one:
        rows += [Variant("candidate-batch-1", "legit", "each sample alone through the candidate",
                         lambda: {"reference": ref, "candidate": RebatchKernel(cand.inner, 1)}),
                 Variant("reference-batch-1", "legit", "each sample alone through the reference",
                         lambda: {"reference": RebatchKernel(ref.inner, 1), "candidate": cand})]
    covers = set(contract.calibration.covers)
    for name, raw in faults.items():
        spec = fault_from_dict(raw)
        row = Variant(name, "fault", spec.describe(), lambda: {}, covered=name in covers)

        def build(spec=spec, row=row) -> dict[str, Kernel]:
            if spec.needs_module:  # the model changes: a fresh candidate
                inner = build_kernel(dataclasses.replace(contract.candidate, inject=()), role="candidate")
                kernel = InjectedKernel(inner, (spec,))
                row.owned.append(kernel)
            else:  # output faults act on the honest candidate's replayed outputs
                kernel = InjectedKernel(cand, (spec,))
            return {"reference": ref, "candidate": kernel}

        row.kernels = build
        rows.append(row)

    def close() -> None:
        for kernel in (ref, cand):
            kernel.close()

    return rows, close


def calibrate(contract: Contract, *, faults: Sequence[str] | None = None, batch_one: bool = False,
              evalset: EvalSet | None = None, progress: Callable[[str], None] | None = None,
              kernels: dict[str, ReplayKernel] | None = None) -> dict[str, Any]:
    """Run every variant and return the calibration document (schemas/calibration.schema.json).
    ``faults=[]`` plants none (the honest and legitimate rows only); None: the default set."""
    stages = tuple(s for s in JUDGED_STAGES if s in _present(contract))
    if not stages:  # first: a contract without them may have no kernels or data either (observability only)
        raise UsageError(f"{contract.source.display_path}: calibrate judges `numerical` and `statistical` clauses; "
                         "this contract has neither")
    chosen, skipped = resolve_faults(contract, faults)
    evalset = evalset or load_evalset(contract.data)
    rows, close = variants(contract, chosen, batch_one=batch_one, kernels=kernels)
    out_rows = []
    clauses: dict[str, dict[str, Any]] = {}
    try:
        for row in rows:
            if progress:
                progress(f"calibrate: {row.name} ({row.description})")
            try:
                report = run_check(contract, CheckOptions(stages=stages, all_stages=True),
                                   kernels=row.kernels(), evalset=evalset)
            finally:
                for kernel in row.owned:
                    kernel.close()
                row.owned.clear()  # this row's fresh model is done: free it before the next row builds one
            by_id: dict[str, list[ClauseResult]] = {}
            for stage in report.stages:
                if stage.name not in stages:
                    continue
                for r in stage.clauses:
                    by_id.setdefault(r.id, []).append(r)
                    clauses.setdefault(r.id, {"id": r.id, "stage": stage.name, "metric": r.metric, "stat": r.stat,
                                              "bounds": [{"op": b.op, "value": finite_or_none(b.value)}
                                                         for b in r.bounds]})
            cells = {cid: _cell(results, row.kind) for cid, results in by_id.items()}
            out_rows.append({"name": row.name, "kind": row.kind, "description": row.description,
                             "covered": row.covered, "outcome": _row_outcome(row.kind, cells), "cells": cells})
    finally:
        close()
    doc = {"schema": SCHEMA_ID, "contract": {"name": contract.name, "path": contract.source.display_path,
                                             "sha256": contract.sha256},
           "samples": len(evalset.samples), "clauses": list(clauses.values()), "variants": out_rows,
           "skipped": skipped}
    return judge(doc)


def judge(doc: dict[str, Any], derived_problems: Sequence[str] = ()) -> dict[str, Any]:
    """The document's `errors`, `problems` and exit code, from its rows (and --derive's held-out
    problems): a row that could not be evaluated or is ``invalid`` (the identity check: neither a catch
    nor a pass) is exit 3; a legitimate row that fails or is
    inconclusive (the contract is not shown to pass conforming kernels), a covered fault not caught,
    or a derived bound failing held out is exit 1; else 0."""
    problems, errors = [], []
    for row in doc["variants"]:
        cells = row["cells"]
        name, kind, outcome = row["name"], row["kind"], row["outcome"]
        if outcome == "invalid":
            why = next((cell["message"] for cell in cells.values() if cell["result"] == "invalid"), "")
            errors.append(f"{kind} variant `{name}` is invalid, neither a catch nor a pass (the identity check found "
                          f"the two sides do not compute on the same thing)" + (f": {why}" if why else ""))
        elif outcome == "error":
            bad = [c for c, cell in cells.items() if cell["result"] == "error"]
            why = next((cells[c]["message"] for c in bad if cells[c].get("message")), "")
            errors.append(f"{kind} variant `{name}` could not be evaluated ({', '.join(bad)})" + (f": {why}" if why
                                                                                                 else ""))
        elif kind in ("honest", "legit") and outcome == "fail":
            failing = [c for c, cell in cells.items() if cell["result"] == "fail"]
            problems.append(f"{kind} variant `{name}` fails {', '.join(failing)}: the contract rejects a conforming "
                            "kernel")
        elif kind in ("honest", "legit") and outcome == "inconclusive":
            open_ = [c for c, cell in cells.items() if cell["result"] == "inconclusive"]
            problems.append(f"{kind} variant `{name}` is inconclusive on {', '.join(open_)}: the contract is not "
                            "shown to pass a conforming kernel (too few samples to decide?)")
        elif kind == "fault" and row["covered"] and outcome != "caught":
            problems.append(f"fault `{name}` ({row['description']}) is covered but {outcome}")
    problems += derived_problems
    doc.update(problems=problems, errors=errors, exit_code=3 if errors else 1 if problems else 0)
    return doc


def _present(contract: Contract) -> list[str]:
    return [s for s, present in (("numerics", contract.numerical), ("slices", contract.statistical)) if present]


NOT_CLAIMED = "➖ not claimed"
LEGEND_NOT_CLAIMED = ("➖ not claimed: a fault the contract does not list under `calibration.covers`; missing it is "
                      "no problem (it may be no fault for this candidate).")


def to_markdown(doc: dict[str, Any]) -> str:
    """The table: one row per variant, one column per clause, each cell `result observed / bound`;
    then the derived bounds and the summary (``summary_lines``)."""
    ids = [c["id"] for c in doc["clauses"]]
    mark = {"caught": "✅ caught", "missed": "❌ missed", "pass": "✅ pass", "fail": "❌ fail",
            "inconclusive": "❔ inconclusive", "error": "💥 error", "invalid": "🚫 invalid"}
    lines = [f"# Calibration of `{_escape(doc['contract']['name'])}`", ""]
    if doc["variants"]:
        lines += [f"{doc['samples']} samples; faults must be caught, honest and legitimate variants must pass.", "",
                  "| variant | kind | outcome | " + " | ".join(f"`{_escape(i)}`" for i in ids) + " |",
                  "|---|---|---|" + "---|" * len(ids)]
    else:
        lines.append(f"{doc['samples']} samples; no variant run (`--faults none` with `--derive`: the bounds only).")
    unclaimed = False
    for row in doc["variants"]:
        cells = []
        for cid in ids:
            cell = row["cells"].get(cid)
            if cell is None:
                cells.append("–")
                continue
            bound = ", ".join(f"{b['op']} {cell_value(b['value'])}" for b in cell["bounds"])
            where = f" [{_escape(cell['slice'])}]" if cell["slice"] else ""
            cells.append(f"{cell['result']} {cell_value(cell['observed'])}{where} ({bound})")
        covered = " (covered)" if row["covered"] else ""
        outcome = mark.get(row["outcome"], row["outcome"])
        if row["kind"] == "fault" and not row["covered"] and row["outcome"] == "missed":
            outcome, unclaimed = NOT_CLAIMED, True
        lines.append(f"| {_escape(row['name'])}{covered} | {row['kind']} | {outcome} | " + " | ".join(cells) + " |")
    if unclaimed:
        lines += ["", LEGEND_NOT_CLAIMED]
    if doc.get("skipped"):
        lines += ["", "Not planted: " + "; ".join(f"`{_escape(s['name'])}` ({_escape(s['reason'])})"
                                                 for s in doc["skipped"]) + "."]
    if doc.get("derived"):
        lines += _derived_markdown(doc["derived"])
    return "\n".join([*lines, "", *summary_lines(doc), ""])


def summary_lines(doc: dict[str, Any]) -> list[str]:
    """The verdict under the table, from the same fields as the exit code: errors (exit 3), problems
    (exit 1), else "No problems", then the clauses --derive could not bound (their written bound kept)."""
    lines = []
    if doc.get("errors"):
        lines += ["Could not evaluate (exit 3):", *[f"- {_escape(e)}" for e in doc["errors"]]]
    if doc["problems"]:
        lines += ["Problems:", *[f"- {_escape(p)}" for p in doc["problems"]]]
    if not lines:
        lines.append("No problems: every legitimate variant passes and every covered fault is caught."
                     if doc["variants"] else "No problems: every derived bound holds on the held-out split.")
    warnings = (doc.get("derived") or {}).get("warnings") or []
    if warnings:
        lines += [f"Not derivable ({len(warnings)}; the written bound is kept):",
                  *[f"- {_escape(w)}" for w in warnings]]
    return lines


def _derived_markdown(derived: dict[str, Any]) -> list[str]:
    """`--derive`'s bounds, one row per clause and per slice bound: rule, calibration value, bound and
    the held-out check, the same fields as the JSON's ``derived.bounds``."""
    split = derived["split"]
    lines = ["", "## Derived bounds", "",
             f"Calibration split: {split['calibration_samples']} samples, held out: {split['held_out_samples']} "
             f"(seed {split['seed']}); margin {derived['margin']:g}.", "",
             "| clause | rule | calibration | confidence bound | bound | held out |", "|---|---|---|---|---|---|"]

    def row(name: str, entry: dict[str, Any], op: str) -> str:
        held = entry.get("held_out") or {}
        check = f"{held['status']} {cell_value(held.get('observed'))}" if held else "–"
        bound = f"{op} {cell_value(entry.get('bound'))}" if entry.get("bound") is not None else "–"
        return (f"| {name} | {_escape(entry.get('rule', ''))} | {cell_value(entry.get('calibration'))} | "
                f"{cell_value(entry.get('confidence_bound'))} | {bound} | {check} |")

    for entry in derived["bounds"]:
        lines.append(row(f"`{_escape(entry['clause'])}`", entry, entry["op"]))
        for own in entry.get("slice_bounds") or ():
            lines.append(row(f"`{_escape(entry['clause'])}` [{_escape(own['slice'])}]", own, entry["op"]))
    return lines


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
