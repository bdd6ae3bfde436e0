"""Orchestrate `promote check`: contract → data → kernels → stages → policy → Report.

The CLI parses flags and renders; this module decides which stages run, in which order, and turns
failures to evaluate (a kernel that crashes) into ``error`` clauses so the report is still written
and the run exits 3 — a crash is never a pass and never a silent gap.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from promote import __version__, console
from promote.contract.interpolate import assignments
from promote.contract.model import Contract, load_contract
from promote.data import EvalSet, load_evalset
from promote.errors import EvaluationError
from promote.policy import decide
from promote.progress import progress_printer
from promote.redact import redact_message
from promote.report.implied import implied_bounds
from promote.report.merge import merge_into, read_stages
from promote.report.model import Report
from promote.results import STAGE_NAMES, STAGE_SECTIONS, ClauseResult, StageResult


@dataclass(frozen=True)
class CheckOptions:
    stages: tuple[str, ...] = ()
    fail_on: str = "fail"
    all_stages: bool = False
    progress: str | bool | None = None  # progress.py mode: "tty", "lines" or None (True: tty)
    command: str = ""
    merge: Path | None = None  # an earlier JSON report whose stages fill the ones not selected here


def _commit(contract_dir: str) -> str | None:
    """The commit checked, for the report's provenance: GITHUB_SHA, else `git rev-parse HEAD` (or None)."""
    if os.environ.get("GITHUB_SHA"):
        return os.environ["GITHUB_SHA"]
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=contract_dir or ".", capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _with_environment(contract: Contract, command: str) -> str:
    """The reproduce command with the variables the contract's ``${...}`` used in front of it
    (``CAND=faults.py:build promote check ...``), secret-like values masked."""
    prefix = assignments(contract.variables)
    return f"{prefix} {command}" if prefix else command


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
                   wanted: set[str]) -> dict[str, Callable[[], StageResult]]:
    """Run both kernels once and feed numerics and slices from the same pass (DESIGN.md §6).

    Returns a callable per wanted stage that yields its result; slices are judged lazily, so a
    numerics stage that blocks still stops them (they are then reported as skipped). Bad slice/task
    input is a usage error raised before any kernel runs; a kernel that crashes makes every wanted
    stage an ``error`` (exit 3), never a silent gap.
    """
    from promote.kernels import build_kernel

    tensor_task = contract.data.task == "tensor"
    collector = None
    if "slices" in wanted and not tensor_task:
        from promote.stages.slices import prepare

        collector = prepare(contract, evalset)
    reference = build_kernel(contract.reference, role="reference")
    candidate = build_kernel(contract.candidate, role="candidate")
    progress = progress_printer(options.progress)
    out: dict[str, Callable[[], StageResult]] = {}
    start = time.perf_counter()
    try:
        with reference, candidate:
            fingerprints["reference"] = reference.fingerprint()
            fingerprints["candidate"] = candidate.fingerprint()
            if tensor_task:  # non-LM outputs compared by key path (stages/tensors.py)
                from promote.stages.tensors import run_tensors

                if "numerics" in wanted:
                    numerics = run_tensors(contract.numerical, evalset, reference, candidate, progress=progress)
                    out["numerics"] = lambda: numerics
            elif "numerics" in wanted:
                from promote.stages.numerics import run_numerics

                result = run_numerics(contract.numerical, evalset, reference, candidate,
                                      consumers=[collector] if collector is not None else [], progress=progress)
                out["numerics"] = lambda: result
            elif collector is not None:
                from promote.engine.passes import kernel_pass

                tie_margin = contract.numerical.tie_margin if contract.numerical else 1e-3
                kernel_pass(evalset, reference, candidate, [collector], tie_margin=tie_margin, progress=progress)
    except EvaluationError as exc:
        message = redact_message(exc.format_message())  # the report quotes it too: mask before both
        console.message(f"promote: error: {message}")
        return {stage: (lambda stage=stage: _blanket(contract, stage, "error", message)) for stage in wanted}
    seconds = time.perf_counter() - start
    if collector is not None:
        from promote.stages.slices import run_slices

        kernel_s = 0.0 if "numerics" in wanted else seconds
        out["slices"] = lambda: run_slices(contract, collector, duration_s=kernel_s)
    elif "slices" in wanted:
        out["slices"] = lambda: _blanket(contract, "slices", "error", "the statistical slice stage supports "
                                         "`data.task: causal-lm` only in this version")
    return out


def run_check(contract_path: str, options: CheckOptions) -> Report:
    """Evaluate a contract; raises UsageError/ContractError (exit 2) for bad input."""
    started, t0 = _now(), time.perf_counter()
    contract, problems = load_contract(contract_path)
    for problem in problems:  # once, on stderr, as `file:line:col: warning: ...` (the report keeps them too)
        print(problem, file=sys.stderr)
    evalset = load_evalset(contract.data)
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
    if options.merge is not None:
        earlier, finished_at = read_stages(options.merge, contract_sha256=contract.sha256,
                                           raw_sha256=contract.raw_sha256)
        results = merge_into(results, earlier, str(options.merge), finished_at)
    decision = decide(results, contract.escalation, fail_on=options.fail_on)
    return Report(
        tool_version=__version__,
        contract={"name": contract.name, "path": contract.source.display_path, "sha256": contract.sha256,
                  "raw_sha256": contract.raw_sha256, "description": contract.description},
        kernels={"reference": {"spec": contract.reference.summary(), "fingerprint": fingerprints["reference"]},
                 "candidate": {"spec": contract.candidate.summary(), "fingerprint": fingerprints["candidate"]}},
        data={"path": contract.data.display_path, "samples": len(evalset.samples), "positions": evalset.positions},
        stages=results,
        decision=decision,
        command=_with_environment(contract, options.command or f"promote check {contract.source.display_path}"),
        started_at=started,
        finished_at=_now(),
        duration_s=time.perf_counter() - t0,
        warnings=[p.message for p in problems],
        commit=_commit(str(contract.path.parent)),
        implied=implied_bounds(results),
    )
