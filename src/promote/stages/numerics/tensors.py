"""Stage 1, offline numerics for `data.task: tensor`: non-LM models compared output by output.

Both kernels run batch by batch; each output key path (``scores``, ``hidden_states[3]``) gets its own
streaming summaries (``metrics.summary.MetricSummary``) of the per-element metrics (abs, rel, ulp,
nonfinite) and the per-sample ones (cosine, sqnr), so memory is O(batch) whatever the eval set's
size. Then every clause is judged once per output its ``output`` glob selects, as a ClauseResult
with ``slice: output=PATH`` (policy rules can match it), in this order — the first that applies:

1. the output is missing on one side → ``fail`` naming the side and the other side's outputs;
2. shapes or dtype kinds differ → ``fail`` naming both shapes / dtypes;
3. no element was compared (zero-size) → ``vacuous``;
4. non-finite elements the clause's ``on_nonfinite`` does not allow → the clause's severity;
5. both sides all-zero, constant, or tiny (``vacuous_below``) → ``vacuous``;
6. the statistic against the bounds → pass / fail (severity) / inconclusive (sketched quantile band).

A clause whose glob selects nothing is an ``error``, and so is every clause when the kernels have no
output in common: neither is ever a pass (Polygraphy's rule).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from promote import judgement
from promote.contract.numerical import NumericalClause, NumericalSpec, TensorOptions
from promote.data import EvalSet
from promote.engine.passes import tensor_pass
from promote.kernels.base import Kernel
from promote.metrics.tensor import (
    compile_glob,
    vacuous_reason,
)
from promote.results import Bound, ClauseResult, StageResult, bounds_text, format_value, json_safe, worst_status
from promote.stages.numerics.tensor_accumulate import OutputAccumulator, TensorAccumulator, rel_key
from promote.vocabulary import TENSOR_LEVEL_METRICS

STAGE = "numerics"
def _needs(bounds: list[Bound]) -> str:
    """Bounds as written (up to 10 digits): a cosine bound of 0.99999 must not print as 1."""
    return bounds_text(bounds, fmt=lambda value: f"{value:.10g}")


def _shown(metric: str, value: float) -> str:
    if metric == "cosine" and math.isfinite(value):  # near 1, the 4 digits of format_value say "1"
        return f"{value:.10g} (1 − cosine = {format_value(1.0 - value)})"
    return format_value(value)


def _keys(keys: dict[str, None]) -> str:
    return ", ".join(f"`{k}`" for k in keys) or "none"


def _unjudgeable(clause: NumericalClause, acc: OutputAccumulator, keys: dict[str, dict[str, None]],
                 opts: TensorOptions, evidence: dict[str, Any]) -> tuple[str, str, float | None] | None:
    """(status, message, observed) when the output cannot be judged on its statistic (checks 1-5 of the
    module docstring), else None; ``evidence`` gains the non-finite counts."""
    name = f"`{acc.path}`"
    for side, other in (("candidate", "reference"), ("reference", "candidate")):
        if acc.missing_count[side]:
            evidence["missing_in"] = side
            return "fail", (f"{name} is missing from the {side}'s outputs ({acc.missing_count[side]} samples, e.g. "
                            f"{', '.join(acc.missing[side])}); the {other} has it. {side} outputs: "
                            f"{_keys(keys[side])}"), None
    if acc.problems:
        return "fail", f"{name}: " + "; ".join(acc.problems), None
    if acc.elements == 0:
        return "vacuous", f"{name}: no element compared (the output is empty for every sample)", None
    evidence.update(nonfinite=acc.nonfinite, matching_nonfinite=acc.matching)
    if acc.nonfinite_examples:
        evidence["nonfinite_examples"] = acc.nonfinite_examples
    if clause.metric != "nonfinite":
        disallowed = {"fail": acc.nonfinite, "skip-matching": acc.nonfinite - acc.matching, "skip": 0}[
            opts.on_nonfinite]
        if disallowed:
            first = acc.nonfinite_examples[0] if acc.nonfinite_examples else None
            where = (f"; first at sample {first['sample_id']} element {first['element']}: reference "
                     f"{first['reference']:.6g}, candidate {first['candidate']:.6g}") if first else ""
            return clause.severity, (f"{name}: {disallowed} non-finite elements (NaN/±Inf) of {acc.elements}{where}; "
                                     f"not allowed by on_nonfinite: {opts.on_nonfinite}"), math.nan
    reason = vacuous_reason(acc.ranges["reference"], acc.ranges["candidate"], below=opts.vacuous_below)
    if reason:
        return "vacuous", f"{name}: {reason}; nothing was compared", None
    return None


def judge_output(clause: NumericalClause, acc: OutputAccumulator, keys: dict[str, dict[str, None]]) -> ClauseResult:
    """One clause on one output (see the module docstring for the order of checks)."""
    opts = clause.tensor or TensorOptions()
    bounds = [Bound(op, getattr(clause, op)) for op in ("max", "min") if getattr(clause, op) is not None]
    base = dict(id=clause.id, stage=STAGE, metric=clause.metric, stat=clause.stat, bounds=bounds, line=clause.line,
                slice=f"output={acc.path}")
    name = f"`{acc.path}`"
    evidence: dict[str, Any] = {"output": acc.path, "samples": acc.samples, "elements": acc.elements,
                                "shapes": [list(s) for s in acc.shapes], "dtypes": acc.dtypes}
    unjudged = _unjudgeable(clause, acc, keys, opts, evidence)
    if unjudged is not None:
        status, message, observed_value = unjudged
        return ClauseResult(status=status, observed=observed_value, evidence=evidence, **base, message=message)
    summary = acc.summary(clause.metric, opts.rel_floor)
    if summary.count == 0:
        what = "every sample is all-zero on both sides" if clause.metric in TENSOR_LEVEL_METRICS else \
            "no finite element pair"
        return ClauseResult(status="vacuous", evidence=evidence, **base, message=f"{name}: {what}; nothing compared")
    low, observed, high = summary.band(clause.stat)
    worst_key = "worst_samples" if clause.metric in TENSOR_LEVEL_METRICS else "worst_elements"
    evidence[worst_key] = acc.worst(summary)
    shown = f"{name}: {clause.stat}({clause.metric}) = {_shown(clause.metric, observed)}"
    if low < high:
        evidence["band"] = [low, high]
        shown += f" (sketch rank-error band [{format_value(low)}, {format_value(high)}])"
    if clause.metric == "rel":
        hits = acc.floored.get(rel_key(opts.rel_floor), 0)
        evidence["rel_floor_hits"] = hits
        if hits:
            floor = f"{opts.rel_floor:g}" if opts.rel_floor is not None else "1e-6·max|r| per sample"
            shown += f" [warning: {hits} of {acc.elements} elements had |r| below the floor ({floor}), which " \
                     "replaced |r| as the denominator]"
    verdict = judgement.judge(bounds, observed, low, high)
    result = ClauseResult(status="pass", observed=observed, evidence=evidence, **base, message="").judged(
        verdict, low=low, high=high, samples=summary.count)
    if verdict.status == "fail":
        worst = evidence[worst_key][0] if evidence[worst_key] else None
        at = f"; worst at sample {worst['sample_id']}" + (f" {worst['index']}" if "index" in worst else "") \
            if worst else ""
        result.status, result.message = clause.severity, f"{shown}, required {_needs(list(verdict.violated))}{at}"
    elif verdict.status == "inconclusive":
        result.status = "inconclusive"
        result.message = f"{shown}: the bound {_needs(list(verdict.straddled))} lies inside the quantile sketch's " \
                         "error band"
    else:
        result.message = f"{shown} {_needs(bounds)}"
    return result


def judge(clause: NumericalClause, acc: TensorAccumulator) -> list[ClauseResult]:
    """A clause's results, one per selected output; an ``error`` when it selects nothing comparable."""
    base = dict(id=clause.id, stage=STAGE, metric=clause.metric, stat=clause.stat, line=clause.line)
    if not acc.common:
        return [ClauseResult(status="error", **base, message=(
            f"the kernels have no output in common: reference {_keys(acc.keys['reference'])}, candidate "
            f"{_keys(acc.keys['candidate'])}; nothing can be compared"))]
    pattern = (clause.tensor or TensorOptions()).output
    selected = [p for p in acc.outputs if pattern is None or compile_glob(pattern)(p)]
    if not selected:
        return [ClauseResult(status="error", **base, message=(
            f"`output: {pattern}` selects none of the outputs ({_keys(dict.fromkeys(acc.outputs))}); "
            "`*` matches any characters, brackets and dots are literal"))]
    return [judge_output(clause, acc.outputs[p], acc.keys) for p in selected]


def tensor_consumer(spec: NumericalSpec) -> TensorAccumulator:
    """The pass's consumer for a `task: tensor` eval set (``rel`` floors from the clauses)."""
    floors = [c.tensor.rel_floor for c in spec.clauses if c.metric == "rel" and c.tensor and c.tensor.rel_floor
              is not None]
    return TensorAccumulator(floors)


def run_tensors(spec: NumericalSpec, evalset: EvalSet, reference: Kernel, candidate: Kernel, *,
                progress: Callable[[int, int], None] | None = None) -> StageResult:
    """Run both kernels over a `task: tensor` eval set and judge every numerical clause per output."""
    start = time.perf_counter()
    acc = tensor_consumer(spec)
    tensor_pass(evalset, reference, candidate, lambda batch, ref, cand: acc.update(batch.ids, ref, cand),
                progress=progress)
    return tensor_result(spec, acc, time.perf_counter() - start,
                         {"reference": reference.seconds, "candidate": candidate.seconds})


def tensor_result(spec: NumericalSpec, acc: TensorAccumulator, duration_s: float,
                  kernel_seconds: dict[str, float]) -> StageResult:
    """Judge every numerical clause per output on the accumulated (possibly merged) state."""
    start = time.perf_counter()
    clauses = [result for clause in spec.clauses for result in judge(clause, acc)]
    notes = []
    only = {side: [k for k in acc.keys[side] if k not in acc.keys[other]]
            for side, other in (("reference", "candidate"), ("candidate", "reference"))}
    for side, keys in only.items():
        if keys:
            notes.append(f"outputs only the {side} returned: {', '.join(keys)}")
    details = json_safe({
        "task": "tensor",
        "samples": acc.samples,
        "outputs": {path: out.to_dict() for path, out in acc.outputs.items()},
        "keys": {side: list(keys) for side, keys in acc.keys.items()},
        "kernel_seconds": {role: round(seconds, 6) for role, seconds in kernel_seconds.items()},
    })
    return StageResult(name=STAGE, status=worst_status([c.status for c in clauses]), clauses=clauses,
                       duration_s=duration_s + time.perf_counter() - start, notes=notes, details=details)
