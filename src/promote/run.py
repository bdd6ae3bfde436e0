"""Orchestrate `promote check`: contract → data → kernels → stages → policy → Report.

The CLI parses flags and renders; this module decides which stages run, in which order, and turns
failures to evaluate (a kernel that crashes) into ``error`` clauses so the report is still written
and the run exits 3 — a crash is never a pass and never a silent gap.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from promote import __version__
from promote.contract.model import Contract, load_contract
from promote.data import EvalSet, read_jsonl
from promote.errors import EvaluationError
from promote.policy import decide
from promote.report.model import Report
from promote.results import STAGE_NAMES, STAGE_SECTIONS, ClauseResult, StageResult


@dataclass(frozen=True)
class CheckOptions:
    stages: tuple[str, ...] = ()
    fail_on: str = "fail"
    all_stages: bool = False
    progress: bool = False
    command: str = ""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _progress_printer(enabled: bool):  # noqa: ANN202
    if not enabled:
        return None

    def show(done: int, total: int) -> None:
        sys.stderr.write(f"\rpromote: numerics {done}/{total} samples")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def _clause_ids(contract: Contract, stage: str) -> list[tuple[str, int | None]]:
    section = STAGE_SECTIONS[stage]
    if section == "numerical":
        return [(c.id, c.line) for c in contract.numerical.clauses] if contract.numerical else []
    if section == "statistical":
        return [(c.id, c.line) for c in contract.statistical.clauses] if contract.statistical else []
    spec = contract.other_stages.get(section)
    return list(spec.clause_lines.items()) if spec else []


def _blanket(contract: Contract, stage: str, status: str, message: str) -> StageResult:
    """A stage whose every clause gets one status (skipped, or error when it cannot run)."""
    clauses = [ClauseResult(id=cid, stage=stage, status=status, message=message, line=line)
               for cid, line in _clause_ids(contract, stage)]
    return StageResult(name=stage, status=status if clauses else "skipped", clauses=clauses, notes=[message])


def _kernel_stages(contract: Contract, evalset: EvalSet, options: CheckOptions, fingerprints: dict,
                   wanted: set[str]) -> dict[str, Any]:
    """Run both kernels once and feed numerics and slices from the same pass (DESIGN.md §6).

    Returns a callable per wanted stage that judges it; slices are judged lazily, so a numerics
    stage that blocks still stops them (they are then reported as skipped). Bad slice/task input
    is a usage error raised before any kernel runs.
    """
    from promote.kernels import build_kernel
    from promote.stages.numerics import NumericsAccumulator, compare_kernels, stage_result

    collector = None
    if "slices" in wanted:
        from promote.stages.slices import prepare

        collector = prepare(contract, evalset)
    reference = build_kernel(contract.reference, role="reference")
    candidate = build_kernel(contract.candidate, role="candidate")
    acc = NumericsAccumulator()
    consumers = ([acc] if "numerics" in wanted else []) + ([collector] if collector is not None else [])
    tie_margin = contract.numerical.tie_margin if contract.numerical else 1e-3
    start = time.perf_counter()
    try:
        with reference, candidate:
            fingerprints["reference"] = reference.fingerprint()
            fingerprints["candidate"] = candidate.fingerprint()
            compare_kernels(evalset, reference, candidate, consumers, tie_margin=tie_margin,
                            progress=_progress_printer(options.progress))
    except EvaluationError as exc:
        message = exc.format_message()
        print(f"promote: error: {message}", file=sys.stderr)
        return {stage: (lambda stage=stage: _blanket(contract, stage, "error", message)) for stage in wanted}
    seconds = time.perf_counter() - start
    out: dict[str, Any] = {}
    if "numerics" in wanted:
        out["numerics"] = lambda: stage_result(contract.numerical, acc, reference, candidate, seconds)
    if collector is not None:
        from promote.stages.slices import run_slices

        kernel_s = 0.0 if "numerics" in wanted else seconds
        out["slices"] = lambda: run_slices(contract, collector, duration_s=kernel_s)
    return out


def run_check(contract_path: str, options: CheckOptions) -> Report:
    """Evaluate a contract; raises UsageError/ContractError (exit 2) for bad input."""
    started, t0 = _now(), time.perf_counter()
    contract, problems = load_contract(contract_path)
    evalset = read_jsonl(contract.data.path, display_path=contract.data.display_path, limit=contract.data.limit)
    present = {stage for stage in STAGE_NAMES if STAGE_SECTIONS[stage] in contract.sections()}
    wanted = set(options.stages) or present
    fingerprints: dict[str, Any] = {"reference": None, "candidate": None}
    results: list[StageResult] = []
    stopped_by: str | None = None
    kernel_stages: dict[str, Any] | None = None
    for stage in STAGE_NAMES:
        if stage not in present:
            continue
        if stage not in wanted:
            results.append(_blanket(contract, stage, "skipped", f"stage `{stage}` not selected (--stage)"))
        elif stopped_by:
            results.append(_blanket(contract, stage, "skipped", f"not run: stage `{stopped_by}` blocked promotion "
                                    "(use --all-stages to run it anyway)"))
        elif stage in ("numerics", "slices"):
            if kernel_stages is None:
                kernel_stages = _kernel_stages(contract, evalset, options, fingerprints,
                                               {s for s in ("numerics", "slices") if s in wanted and s in present})
            results.append(kernel_stages[stage]())
        else:
            results.append(_blanket(contract, stage, "error", f"stage `{stage}` is not implemented in promote "
                                    f"{__version__}; its clauses cannot be evaluated"))
        blocked = decide([results[-1]], contract.escalation).verdict == "block"
        if blocked and not stopped_by and not options.all_stages:
            stopped_by = stage
    decision = decide(results, contract.escalation, fail_on=options.fail_on)
    return Report(
        tool_version=__version__,
        contract={"name": contract.name, "path": contract.source.display_path, "sha256": contract.sha256,
                  "description": contract.description},
        kernels={"reference": {"spec": contract.reference.summary(), "fingerprint": fingerprints["reference"]},
                 "candidate": {"spec": contract.candidate.summary(), "fingerprint": fingerprints["candidate"]}},
        data={"path": contract.data.display_path, "samples": len(evalset.samples), "positions": evalset.positions},
        stages=results,
        decision=decision,
        command=options.command or f"promote check {contract.source.display_path}",
        started_at=started,
        finished_at=_now(),
        duration_s=time.perf_counter() - t0,
        warnings=[p.message for p in problems],
    )
