"""Orchestrate `promote check`: contract → data → kernels → stages → policy → Report.

The CLI parses flags and renders; this module decides which stages run, in which order, and turns
failures to evaluate (a kernel that crashes) into ``error`` clauses so the report is still written
and the run exits 3 — a crash is never a pass and never a silent gap.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from promote import __version__
from promote.contract.interpolate import assignments
from promote.contract.model import Contract, load_contract
from promote.data import EvalSet
from promote.kernels.base import Kernel
from promote.policy import decide
from promote.progress import ProgressPrinter, progress_printer
from promote.report.implied import implied_bounds
from promote.report.merge import merge_into, read_stages
from promote.report.model import Report
from promote.results import NOT_SELECTED, StageResult
from promote.sections import by_name, section_of, stage_names
from promote.stages import identity_gate
from promote.stages.context import StageContext
from promote.stages.registry import stages as registered_stages


@dataclass(frozen=True)
class CheckOptions:
    stages: tuple[str, ...] = ()
    fail_on: str = "fail"
    all_stages: bool = False
    progress: str | bool | None = None  # progress.py mode: "tty", "lines" or None (True: tty)
    command: str = ""
    merge: Path | None = None  # an earlier JSON report whose stages fill the ones not selected here
    engine: str = "local"  # local | ray: where the offline pass runs (scale/ray_engine.py)
    address: str | None = None  # Ray cluster address (None: $RAY_ADDRESS, else a local Ray started here)
    workers: int = 2  # Ray actors, one shard each
    # Why kernels may not be built in this run (``promote merge`` without --contract: the partials name
    # the contract, and a partial only ever yields data); also the note on the stages it skips.
    no_kernels: str | None = None


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


def _offline_engine(options: CheckOptions, offline: Callable[[StageContext, set[str]], dict[str, Any]] | None
                    ) -> Callable[[StageContext, set[str]], dict[str, Any]] | None:
    """What runs the offline pass: ``offline`` (merge's partials), Ray actors, or None (this process)."""
    if offline is not None or options.engine != "ray":
        return offline
    from promote.stages.shards import ray_offline

    return lambda ctx, stages: ray_offline(ctx, stages, address=options.address, workers=options.workers)


def run_check(contract: Contract | str, options: CheckOptions | None = None, *,
              kernels: Mapping[str, Kernel] | None = None, evalset: EvalSet | None = None,
              earlier: Sequence[StageResult] = (),
              offline: Callable[[StageContext, set[str]], dict[str, Any]] | None = None) -> Report:
    """Evaluate a contract (a path, or an already typed ``Contract``) into a Report.

    ``kernels`` (``{"reference": ..., "candidate": ...}``) and ``evalset`` replace what the contract
    would build — a fault-wrapped candidate, kernels kept open across runs, an in-memory eval set;
    injected kernels are not closed. ``earlier`` results fill stages not selected (as ``--merge``).
    ``offline`` replaces the in-process offline pass (``promote merge``'s partials); ``options.engine``
    ``ray`` runs it as Ray actors (``stages/shards.py``, ``scale/ray_engine.py``).
    Raises UsageError/ContractError (exit 2) for bad input.
    """
    options = options or CheckOptions()
    started, t0 = _now(), time.perf_counter()
    problems: list = []
    if not isinstance(contract, Contract):
        contract, problems = load_contract(contract)
        for problem in problems:  # once, on stderr, as `file:line:col: warning: ...` (the report keeps them too)
            print(problem, file=sys.stderr)
    present = {stage for stage in stage_names() if section_of(stage) in contract.sections}
    wanted = frozenset(set(options.stages) & present if options.stages else present)
    printer = progress_printer(options.progress)
    ctx = StageContext(contract, wanted, progress=printer, evalset_given=evalset, kernels_given=kernels,
                       offline_engine=_offline_engine(options, offline), no_kernels=options.no_kernels)
    try:
        _run_stages(ctx, present, options, printer)
    finally:
        if printer:
            printer.end()
        ctx.close()
    results = list(ctx.results)
    if earlier:
        results = merge_into(results, {s.name: s for s in earlier}, "results passed to run_check", "earlier")
    if options.merge is not None:
        earlier, finished_at = read_stages(options.merge, contract_sha256=contract.sha256,
                                           raw_sha256=contract.raw_sha256)
        results = merge_into(results, earlier, str(options.merge), finished_at)
    decision = decide(results, contract.escalation, fail_on=options.fail_on,
                      findings=ctx.identity.findings if ctx.identity else ())
    return Report(
        tool_version=__version__,
        contract={"name": contract.name, "path": contract.source.display_path, "sha256": contract.sha256,
                  "raw_sha256": contract.raw_sha256, "description": contract.description},
        kernels=_kernel_facts(contract, ctx.fingerprints),
        data=_data_facts(contract, ctx.evalset_loaded),
        stages=results,
        decision=decision,
        command=_with_environment(contract, options.command or f"promote check {contract.source.display_path}"),
        started_at=started,
        finished_at=_now(),
        duration_s=time.perf_counter() - t0,
        warnings=[p.message for p in problems],
        commit=_commit(str(contract.path.parent)),
        implied=implied_bounds(results),
        identity=ctx.identity,
    )


def _run_stages(ctx: StageContext, present: set[str], options: CheckOptions, printer: ProgressPrinter | None) -> None:
    """Every stage the contract has, in order, into ``ctx.results``: selected ones run (a stage that costs
    new work is skipped after a blocking one, unless ``--all-stages``), the others are recorded as skipped."""
    contract, wanted, results = ctx.contract, ctx.wanted, ctx.results
    if any(by_name(s).needs_evalset for s in wanted):
        ctx.evalset  # noqa: B018 - read (and check) the eval set before any kernel runs (a bad file: exit 2)
    if printer:
        printer.begin(f"checking stages {', '.join(s for s in stage_names() if s in wanted) or '(none)'}")
    stopped_by: str | None = None
    for stage in registered_stages().values():
        if stage.name not in present:
            continue
        if stage.name not in wanted:
            results.append(ctx.blanket(stage.name, "skipped", options.no_kernels
                                       or f"stage `{stage.name}` {NOT_SELECTED}"))
        elif stopped_by and not stage.decl.offline:  # costs new work: stop after a blocking stage
            results.append(ctx.blanket(stage.name, "skipped", f"not run: stage `{stopped_by}` blocked "
                                       "promotion (use --all-stages to run it anyway)"))
        elif stage.decl.needs_kernels and not stage.decl.offline and (gated := identity_gate.live(ctx, stage.name)):
            results.append(gated)  # the identity check found a mismatch: not judged
        else:
            if printer:
                printer.phase(stage.name)
            results.append(stage.run(ctx))
        blocked = decide([results[-1]], contract.escalation).verdict == "block"
        if blocked and not stopped_by and not options.all_stages:
            stopped_by = stage.name


def _kernel_facts(contract: Contract, fingerprints: dict[str, Any]) -> dict[str, Any] | None:
    """The report's `kernels` block; None for a contract without kernels (observability only)."""
    if contract.reference is None or contract.candidate is None:
        return None
    return {role: {"spec": getattr(contract, role).summary(), "fingerprint": fingerprints[role]}
            for role in ("reference", "candidate")}


def _data_facts(contract: Contract, evalset: EvalSet | None) -> dict[str, Any] | None:
    """The report's `data` block; ``read: false`` when no selected stage needed the eval set, None when
    the contract has no eval set (observability only)."""
    if contract.data is None:
        return None
    if evalset is None:
        return {"path": contract.data.display_path, "samples": 0, "positions": 0, "read": False}
    return {"path": contract.data.display_path, "samples": len(evalset.samples), "positions": evalset.positions}


def write_shard(contract_path: str, index: int, count: int, out: Path, options: CheckOptions | None = None) -> int:
    """`promote check --shard I/N --partial OUT`: compute shard ``index`` of ``count``, write its partial.

    Returns the exit code: 0 when written, 3 when a kernel crashed (the partial records the error,
    so ``promote merge`` reports it as a single run would).
    """
    from promote.atomic import write_text_atomic
    from promote.stages.shards import compute_partial, shard_stages

    options = options or CheckOptions()
    contract, problems = load_contract(contract_path)
    for problem in problems:
        print(problem, file=sys.stderr)
    present = {stage for stage in stage_names() if section_of(stage) in contract.sections}
    wanted = frozenset(set(options.stages) & present if options.stages else present)
    if not shard_stages(wanted):
        from promote.errors import UsageError

        raise UsageError(f"{contract.source.display_path}: --shard computes the shared offline pass (numerics, "
                         "slices), and no such stage is selected or present")
    printer = progress_printer(options.progress)
    ctx = StageContext(contract, wanted, progress=printer)
    ctx.evalset  # noqa: B018 - a bad data file is exit 2 before any kernel runs
    try:
        if printer:
            printer.begin(f"computing shard {index} of {count}")
            printer.phase(f"shard {index}/{count}")
        partial = compute_partial(ctx, index, count)
    finally:
        if printer:
            printer.end()
        ctx.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, partial.to_bytes().decode("ascii"))  # JSON with ensure_ascii: plain ASCII
    return 3 if partial.error else 0


def run_merge(paths: Sequence[Path], options: CheckOptions | None = None, *, contract: str | None = None) -> Report:
    """`promote merge`: the report of the run the partials at ``paths`` make up (see scale/merge.py).

    The contract is the one the partials name (``contract`` overrides the path, e.g. on another
    machine); it must still have the partials' interpolated sha256. A partial may come from anywhere
    and only ever yields data: without ``contract`` no kernel is built, no user code imported and no
    server asked, so the stages beyond the partials' offline ones are skipped; naming the contract
    runs them.
    """
    from promote.scale.merge import check_partials
    from promote.scale.partial import Partial
    from promote.stages.shards import from_partials

    partials = [(str(p), Partial.read(p)) for p in paths]
    check_partials(partials)
    first = partials[0][1]
    path = contract or first.contract["path"]
    if not Path(path).is_file():
        from promote.errors import UsageError

        raise UsageError(f"{partials[0][0]}: the contract it was computed from, {path}, does not exist here; "
                         "pass it with --contract PATH")
    stages = (*first.stages, *(s for s in stage_names() if not by_name(s).offline and contract))
    options = options or CheckOptions()
    command = options.command or shlex.join(["promote", "merge", *map(str, paths)])
    no_kernels = None if contract else (f"not run: without --contract, `promote merge` computes only the partials' "
                                        f"offline stages, building no kernel and importing no code from the "
                                        f"contract a partial names ({path}); pass --contract PATH to run this stage")
    options = replace(options, stages=stages, command=command, no_kernels=no_kernels)
    return run_check(path, options, offline=lambda ctx, _stages: from_partials(ctx, partials))
