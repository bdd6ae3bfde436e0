"""The offline pass: numerics and slices computed from one run of both kernels (DESIGN.md §6).

The first offline stage to run triggers the pass; it prepares the consumers of every wanted offline
stage (numerics summaries and noise floor, the slice collector), runs the engine once, and caches a
result per stage. Bad slice/task input is a usage error raised before any kernel runs; a kernel that
crashes makes every wanted offline stage an ``error`` (exit 3), never a silent gap.
"""

from __future__ import annotations

import time

from promote import console
from promote.errors import EvaluationError
from promote.redact import redact_message
from promote.results import StageResult
from promote.stages.context import StageContext

OFFLINE = ("numerics", "slices")


def offline_result(ctx: StageContext, stage: str) -> StageResult:
    """The result of offline stage ``stage``, running the shared pass on first use."""
    if "offline" not in ctx.cache:
        engine = ctx.offline_engine or _run  # merged shards (promote merge, --engine ray) or this process
        ctx.cache["offline"] = engine(ctx, {s for s in OFFLINE if s in ctx.wanted})
    return ctx.cache["offline"][stage]()


def _run(ctx: StageContext, wanted: set[str]) -> dict:
    contract, evalset = ctx.contract, ctx.evalset
    tensor_task = contract.data.task == "tensor"
    collector = None
    if "slices" in wanted and not tensor_task:
        from promote.stages.slices import prepare

        collector = prepare(contract, evalset)
    out: dict = {}
    start = time.perf_counter()
    try:
        reference, candidate = ctx.kernels()
        if tensor_task:  # non-LM outputs compared by key path (stages/tensors.py)
            from promote.stages.tensors import run_tensors

            if "numerics" in wanted:
                numerics = run_tensors(contract.numerical, evalset, reference, candidate, progress=ctx.progress)
                out["numerics"] = lambda: numerics
        elif "numerics" in wanted:
            from promote.stages.numerics import run_numerics

            result = run_numerics(contract.numerical, evalset, reference, candidate,
                                  consumers=[collector] if collector is not None else [], progress=ctx.progress)
            out["numerics"] = lambda: result
        elif collector is not None:
            from promote.engine.passes import kernel_pass

            tie_margin = contract.numerical.tie_margin if contract.numerical else 1e-3
            kernel_pass(evalset, reference, candidate, [collector], tie_margin=tie_margin, progress=ctx.progress)
    except EvaluationError as exc:
        message = redact_message(exc.format_message())  # the report quotes it too: mask before both
        console.message(f"promote: error: {message}")
        return {stage: (lambda stage=stage: ctx.blanket(stage, "error", message)) for stage in wanted}
    seconds = time.perf_counter() - start
    if collector is not None:
        from promote.stages.slices import run_slices

        kernel_s = 0.0 if "numerics" in wanted else seconds
        out["slices"] = lambda: run_slices(contract, collector, duration_s=kernel_s)
    elif "slices" in wanted:
        out["slices"] = lambda: ctx.blanket("slices", "error", "the statistical slice stage supports "
                                            "`data.task: causal-lm` only in this version")
    return out
