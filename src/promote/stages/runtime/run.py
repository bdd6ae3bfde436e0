"""Stage 3, canary runtime (R): latency, throughput, errors, memory and determinism of the candidate,
against a baseline measured paired with it (docs/runtime.md).

The baseline is ``runtime.baseline`` (the serving build in production, any kernel kind) or, when
absent, the contract's reference kernel. Measurements (measure.py) and the judge
(judge.py) are separate modules; this one builds the kernels, runs both and writes the result,
including what each number was measured at (``details.runtime``), which ``--metrics-out`` exports.
"""

from __future__ import annotations

import time

from promote import console
from promote.contract.kinds import HTTP
from promote.errors import EvaluationError
from promote.kernels import build_kernel
from promote.redact import redact_message
from promote.results import StageResult, worst_status
from promote.stages.context import StageContext
from promote.stages.runtime.judge import judge_clause
from promote.stages.runtime.measure import measure


def run_runtime(ctx: StageContext) -> StageResult:
    spec = ctx.contract.runtime
    start = time.perf_counter()
    samples = list(ctx.evalset.samples)[: spec.requests or None]
    try:
        reference, candidate = ctx.kernels()
        baseline = reference
        if spec.baseline is not None:
            baseline = build_kernel(spec.baseline, role="baseline")
            ctx._stack.enter_context(baseline)
        for kernel in (baseline, candidate):
            kernel.bind(ctx.evalset)
        base_rt, cand_rt = measure([baseline, candidate], samples, levels=spec.concurrency,
                                   warmup=spec.warmup or 0, repeats=spec.repeats or 1,
                                   rerun=any(c.metric == "rerun_equal" for c in spec.clauses),
                                   ttft=any(c.metric == "ttft_ms" for c in spec.clauses))
    except EvaluationError as exc:
        message = redact_message(exc.format_message())
        console.message(f"promote: error: {message}")
        return ctx.blanket("runtime", "error", message)
    alpha = spec.alpha / max(spec.looks, 1)
    clauses = [judge_clause(c, cand_rt, base_rt, alpha=alpha, resamples=spec.resamples, seed=spec.seed)
               for c in spec.clauses]
    details = {"alpha_per_look": alpha, "looks": spec.looks, "baseline": baseline.label,
               "measured": {role: {"label": rt.label, "levels": {str(c): lv.summary() for c, lv in rt.levels.items()},
                                   "rerun_drift": rt.rerun_drift, "batch_drift": rt.batch_drift, "streams": rt.streams,
                                   "peak_rss_mb": rt.peak_rss_mb, "memory_source": rt.memory_source,
                                   "peak_gpu_mb": rt.peak_gpu_mb}
                            for role, rt in (("baseline", base_rt), ("candidate", cand_rt))}}
    notes = [f"{len(samples)} requests per pass at concurrency {', '.join(map(str, sorted(cand_rt.levels)))}; "
             f"baseline: {baseline.label}; each look judged at alpha {alpha:.3g} ({spec.looks} declared looks)"]
    if HTTP not in candidate.capabilities:
        notes.append("a local candidate runs `concurrency` samples as one batch (latency = that batch's time)")
    return StageResult(name="runtime", status=worst_status([c.status for c in clauses]), clauses=clauses,
                       duration_s=time.perf_counter() - start, notes=notes, details={"runtime": details})
