"""Stage 1, offline numerics (N): run both kernels batch by batch over the eval set, summarise the
per-position metrics, and judge each numerical clause.

Only summaries survive a batch, so memory is O(batch · seq · vocab) whatever the eval set's size.
Outcomes that could read as a pass but prove nothing — no scored position, outputs constant on
both sides — are ``vacuous``; a NaN statistic fails its clause.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from promote.contract.model import NumericalClause, NumericalSpec
from promote.data import EvalSet, batches
from promote.errors import UsageError
from promote.kernels.base import Kernel
from promote.metrics.distribution import METRIC_NAMES, is_degenerate, token_metrics
from promote.metrics.summary import MetricSummary
from promote.results import Bound, ClauseResult, StageResult, format_value, worst_status

STAGE = "numerics"


class NumericsAccumulator:
    """Per-metric summaries plus the counters that decide vacuity."""

    def __init__(self, metrics: tuple[str, ...] = METRIC_NAMES) -> None:
        self.summaries = {m: MetricSummary(m) for m in metrics}
        self.positions = 0
        self.samples = 0
        self.degenerate_positions = 0
        self.tie_flips = 0

    def add_batch(self, batch: Any, ref_logits: np.ndarray, cand_logits: np.ndarray, *, tie_margin: float) -> None:
        mask = batch.scored_mask()
        rows, cols = np.nonzero(mask)
        targets = batch.input_ids[rows, cols + 1]
        ref = ref_logits[rows, cols]
        cand = cand_logits[rows, cols]
        if ref.shape[-1] != cand.shape[-1]:
            raise UsageError(f"vocabulary sizes differ: reference {ref.shape[-1]}, candidate {cand.shape[-1]}")
        values = token_metrics(ref, cand, targets, tie_margin=tie_margin)
        ids = [batch.samples[r].id for r in rows]
        for name, summary in self.summaries.items():
            summary.update(values[name], ids, cols, targets)
        self.positions += rows.size
        self.samples += len(batch.samples)
        self.degenerate_positions += int((is_degenerate(ref) & is_degenerate(cand)).sum())
        self.tie_flips += int(values["tie_flip"].sum())

    @property
    def vacuous_reason(self) -> str | None:
        if self.positions == 0:
            return "no scored positions: every sample is shorter than 2 tokens"
        if self.degenerate_positions == self.positions:
            return "both kernels output constant logits at every position: nothing was compared"
        return None


def judge(clause: NumericalClause, acc: NumericsAccumulator) -> ClauseResult:
    """One clause against the summaries: pass / fail (or warn) / vacuous, with evidence."""
    bounds = [Bound(op, getattr(clause, op)) for op in ("max", "min") if getattr(clause, op) is not None]
    base = dict(id=clause.id, stage=STAGE, metric=clause.metric, stat=clause.stat, bounds=bounds, line=clause.line)
    reason = acc.vacuous_reason
    if reason:
        return ClauseResult(status="vacuous", message=reason, **base)
    summary = acc.summaries[clause.metric]
    observed = summary.stat(clause.stat)
    evidence: dict[str, Any] = {"positions": summary.count, "worst": [p.to_dict() for p in summary.worst]}
    if clause.metric == "argmax_agree":
        evidence["tie_flips"] = acc.tie_flips
    violated = [b for b in bounds if not b.holds(observed)]
    shown = f"{clause.stat}({clause.metric}) = {format_value(observed)}"
    if math.isnan(observed):
        nonfinite = acc.summaries["nonfinite"].total
        return ClauseResult(status=clause.severity, observed=observed, evidence=evidence, **base,
                            message=f"{shown}: non-finite values at {summary.nonfinite} positions "
                                    f"({int(nonfinite)} non-finite logits); see clause `nonfinite`")
    if violated:
        need = ", ".join(f"{'≤' if b.op == 'max' else '≥'} {format_value(b.value)}" for b in violated)
        return ClauseResult(status=clause.severity, observed=observed, evidence=evidence, **base,
                            message=f"{shown}, required {need}")
    within = ", ".join(f"{'≤' if b.op == 'max' else '≥'} {format_value(b.value)}" for b in bounds)
    return ClauseResult(status="pass", observed=observed, evidence=evidence, **base, message=f"{shown} {within}")


def run_numerics(
    spec: NumericalSpec,
    evalset: EvalSet,
    reference: Kernel,
    candidate: Kernel,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> StageResult:
    """Run both kernels over the eval set and judge every numerical clause."""
    start = time.perf_counter()
    acc = NumericsAccumulator()
    batch_size = min(reference.spec.batch_size, candidate.spec.batch_size)
    done = 0
    for batch in batches(evalset.samples, batch_size):
        ref_out = reference.run(batch)
        cand_out = candidate.run(batch)
        acc.add_batch(batch, ref_out.logits, cand_out.logits, tie_margin=spec.tie_margin)
        done += len(batch.samples)
        if progress:
            progress(done, len(evalset.samples))
    clauses = [judge(c, acc) for c in spec.clauses]
    details = {
        "samples": acc.samples,
        "positions": acc.positions,
        "tie_margin": spec.tie_margin,
        "kernel_seconds": {"reference": round(reference.seconds, 6), "candidate": round(candidate.seconds, 6)},
        "metrics": {m: s.to_dict() for m, s in acc.summaries.items()},
    }
    notes = []
    if acc.tie_flips:
        notes.append(f"{acc.tie_flips} argmax flips happened at near ties (reference top-2 margin < "
                     f"{spec.tie_margin:g})")
    return StageResult(name=STAGE, status=worst_status([c.status for c in clauses]), clauses=clauses,
                       duration_s=time.perf_counter() - start, notes=notes, details=details)
