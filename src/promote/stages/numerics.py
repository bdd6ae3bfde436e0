"""Stage 1, offline numerics (N): run both kernels batch by batch over the eval set, summarise the
per-position metrics, and judge each numerical clause.

Only summaries survive a batch, so memory is O(batch · seq · vocab) whatever the eval set's size.
Outcomes that could read as a pass but prove nothing — no scored position, outputs constant on
both sides — are ``vacuous``; a NaN statistic fails its clause.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from promote.contract.model import NumericalClause, NumericalSpec
from promote.data import Batch, EvalSet, batches
from promote.errors import UsageError
from promote.kernels.base import Kernel, Outputs
from promote.metrics.distribution import METRIC_NAMES, is_degenerate, token_metrics
from promote.metrics.summary import MetricSummary
from promote.metrics.topk import BOUNDED_METRICS
from promote.results import Bound, ClauseResult, StageResult, format_value, worst_status
from promote.stages.topk_scoring import bounded_note, check_vocab, judge_bounded, score_topk

STAGE = "numerics"


@dataclass
class ScoredBatch:
    """One batch after both kernels ran: logits and metric values at its scored positions only.

    Consumers (the numerics summaries here, slice statistics in ``stages/slices.py``) read this, so
    the kernels run once per batch however many stages use the outputs.
    """

    batch: Batch
    rows: np.ndarray
    cols: np.ndarray
    targets: np.ndarray
    ref_logits: np.ndarray
    cand_logits: np.ndarray
    values: dict[str, np.ndarray]
    bounded: tuple[str, ...] = field(default=())  # metrics given as NAME_lower/NAME_upper (top-k records)

    @property
    def sample_ids(self) -> list[str]:
        return [self.batch.samples[r].id for r in self.rows]


def score_batch(batch: Batch, ref_logits: np.ndarray, cand_logits: np.ndarray, *, tie_margin: float,
                mask: np.ndarray | None = None) -> ScoredBatch:
    """Pick the scored positions of a batch (``mask``, default all) and compute every metric there."""
    if ref_logits.shape[-1] != cand_logits.shape[-1]:
        raise UsageError(f"vocabulary sizes differ: reference {ref_logits.shape[-1]}, candidate "
                         f"{cand_logits.shape[-1]}; both kernels must score the same vocabulary")
    rows, cols = np.nonzero(batch.scored_mask() if mask is None else mask)
    targets = batch.input_ids[rows, cols + 1]
    ref, cand = ref_logits[rows, cols], cand_logits[rows, cols]
    values = token_metrics(ref, cand, targets, tie_margin=tie_margin)
    return ScoredBatch(batch, rows, cols, targets, ref, cand, values)


def score_outputs(batch: Batch, ref: Outputs, cand: Outputs, *, tie_margin: float,
                  labels: tuple[str, str] = ("reference", "candidate")) -> ScoredBatch:
    """Score a batch from both kernels' outputs: full logits exactly (``score_batch``), top-k records
    with certified bounds (``stages/topk_scoring.py``). Positions a kernel's ``mask`` leaves out are
    not scored."""
    mask = batch.scored_mask()
    for out in (ref, cand):
        if out.mask is not None:
            mask = mask & out.mask
    if ref.logits is not None and cand.logits is not None:
        check_vocab(labels, ref.logits.shape[-1], cand.logits.shape[-1])
        return score_batch(batch, ref.logits, cand.logits, tie_margin=tie_margin, mask=mask)
    rows, cols, targets, ref_view, cand_view, values = score_topk(batch, ref, cand, mask, labels=labels,
                                                                  tie_margin=tie_margin)
    return ScoredBatch(batch, rows, cols, targets, ref_view, cand_view, values, bounded=BOUNDED_METRICS)


class NumericsAccumulator:
    """Per-metric summaries plus the counters that decide vacuity."""

    def __init__(self, metrics: tuple[str, ...] = METRIC_NAMES) -> None:
        self.summaries = {m: MetricSummary(m) for m in metrics}
        self.positions = 0
        self.samples = 0
        self.degenerate_positions = 0
        self.tie_flips = 0
        self.bounded: set[str] = set()

    def __call__(self, scored: ScoredBatch) -> None:
        for name in set(scored.bounded) - self.bounded:  # top-k records: summarise both bounds instead
            self.summaries.pop(name, None)
            self.summaries.update({f"{name}_{s}": MetricSummary(f"{name}_{s}") for s in ("lower", "upper")})
            self.bounded.add(name)
        ids = scored.sample_ids
        for name, summary in self.summaries.items():
            summary.update(scored.values[name], ids, scored.cols, scored.targets)
        self.positions += scored.rows.size
        self.samples += len(scored.batch.samples)
        self.degenerate_positions += int((is_degenerate(scored.ref_logits) & is_degenerate(scored.cand_logits)).sum())
        self.tie_flips += int(scored.values["tie_flip"].sum())

    @property
    def vacuous_reason(self) -> str | None:
        if self.positions == 0:
            return "no scored positions: every sample is shorter than 2 tokens"
        if self.degenerate_positions == self.positions:
            return "both kernels output constant logits at every position: nothing was compared"
        return None


def compare_kernels(
    evalset: EvalSet,
    reference: Kernel,
    candidate: Kernel,
    consumers: list[Callable[[ScoredBatch], None]],
    *,
    tie_margin: float,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Run both kernels batch by batch and hand each scored batch to every consumer."""
    batch_size = min(reference.spec.batch_size, candidate.spec.batch_size)
    reference.bind(evalset)
    candidate.bind(evalset)
    labels = (reference.label, candidate.label)
    done = 0
    for batch in batches(evalset.samples, batch_size):
        scored = score_outputs(batch, reference.run(batch), candidate.run(batch), tie_margin=tie_margin, labels=labels)
        for consume in consumers:
            consume(scored)
        done += len(batch.samples)
        if progress:
            progress(done, len(evalset.samples))


def judge(clause: NumericalClause, acc: NumericsAccumulator) -> ClauseResult:
    """One clause against the summaries: pass / fail (or warn) / vacuous, with evidence."""
    bounds = [Bound(op, getattr(clause, op)) for op in ("max", "min") if getattr(clause, op) is not None]
    base = dict(id=clause.id, stage=STAGE, metric=clause.metric, stat=clause.stat, bounds=bounds, line=clause.line)
    reason = acc.vacuous_reason
    if reason:
        return ClauseResult(status="vacuous", message=reason, **base)
    if clause.metric in acc.bounded:
        return judge_bounded(clause, acc, STAGE)
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
    consumers: Sequence[Callable[[ScoredBatch], None]] = (),
    progress: Callable[[int, int], None] | None = None,
) -> StageResult:
    """Run both kernels over the eval set and judge every numerical clause.

    ``consumers`` (e.g. the slice stage's accumulator) receive the same scored batches.
    """
    start = time.perf_counter()
    acc = NumericsAccumulator()
    compare_kernels(evalset, reference, candidate, [acc, *consumers], tie_margin=spec.tie_margin, progress=progress)
    return stage_result(spec, acc, reference, candidate, time.perf_counter() - start)


def stage_result(spec: NumericalSpec, acc: NumericsAccumulator, reference: Kernel, candidate: Kernel,
                 duration_s: float) -> StageResult:
    """Judge the clauses on accumulated summaries and describe the run."""
    clauses = [judge(c, acc) for c in spec.clauses]
    details = {
        "samples": acc.samples,
        "positions": acc.positions,
        "tie_margin": spec.tie_margin,
        "kernel_seconds": {"reference": round(reference.seconds, 6), "candidate": round(candidate.seconds, 6)},
        "metrics": {m: s.to_dict() for m, s in acc.summaries.items()},
    }
    notes = [*reference.notes, *candidate.notes]
    if acc.bounded:
        notes.append(bounded_note())
    if acc.tie_flips:
        notes.append(f"{acc.tie_flips} argmax flips happened at near ties (reference top-2 margin < "
                     f"{spec.tie_margin:g})")
    return StageResult(name=STAGE, status=worst_status([c.status for c in clauses]), clauses=clauses,
                       duration_s=duration_s, notes=notes, details=details)
