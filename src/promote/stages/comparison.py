"""The shared kernel pass: run reference and candidate batch by batch over the eval set, score
each batch's positions once, and hand the result to every consumer (numerics summaries, the noise
floor, slice statistics). Kernels run once per batch however many stages use their outputs, and
only summaries outlive a batch: memory is O(batch · seq · vocab) whatever the eval set's size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from promote.data import Batch, EvalSet, batches
from promote.errors import UsageError
from promote.kernels.base import Kernel, Outputs
from promote.metrics.distribution import METRIC_NAMES, is_degenerate, ratio_outside, token_metrics, topk_overlap
from promote.metrics.summary import MetricSummary
from promote.metrics.topk import BOUNDED_METRICS
from promote.stages.topk_scoring import check_vocab, score_topk


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

    def __init__(self, metrics: tuple[str, ...] = METRIC_NAMES, *, parameterized: tuple[str, ...] = ()) -> None:
        """``parameterized``: summary keys like ``ratio_outside@2`` or ``topk_overlap@5`` that clauses use."""
        self.summaries = {m: MetricSummary(m) for m in (*metrics, *parameterized)}
        self.unavailable: set[str] = set()
        self.positions = 0
        self.samples = 0
        self.degenerate_positions = 0
        self.tie_flips = 0
        self.bounded: set[str] = set()

    def __call__(self, scored: ScoredBatch) -> None:
        for name in set(scored.bounded) - self.bounded:  # top-k records: summarise both bounds instead
            if name in self.summaries:
                self.summaries.pop(name)
                self.summaries.update({f"{name}_{s}": MetricSummary(f"{name}_{s}") for s in ("lower", "upper")})
            self.bounded.add(name)
        ids = scored.sample_ids
        for name, summary in self.summaries.items():
            values = self._values(name, scored)
            if values is None:
                self.unavailable.add(name)
            else:
                summary.update(values, ids, scored.cols, scored.targets)
        self.positions += scored.rows.size
        self.samples += len(scored.batch.samples)
        self.degenerate_positions += int((is_degenerate(scored.ref_logits) & is_degenerate(scored.cand_logits)).sum())
        self.tie_flips += int(scored.values["tie_flip"].sum())

    @staticmethod
    def _values(name: str, scored: ScoredBatch) -> np.ndarray | None:
        """Per-position values of a summary key; None when these outputs cannot give them (top-k records)."""
        if name in scored.values:
            return scored.values[name]
        metric, _, param = name.partition("@")
        if metric == "ratio_outside" and "abs_log_ratio" in scored.values:
            return ratio_outside(scored.values["abs_log_ratio"], float(param))
        if metric == "topk_overlap" and not scored.bounded:
            return topk_overlap(scored.ref_logits, scored.cand_logits, int(float(param)))
        return None

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
    consumers: Sequence[Callable[[ScoredBatch], None]],
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
        scored = score_outputs(batch, reference.run(batch), candidate.run(batch), tie_margin=tie_margin,
                               labels=labels)
        for consume in consumers:
            consume(scored)
        done += len(batch.samples)
        if progress:
            progress(done, len(evalset.samples))
