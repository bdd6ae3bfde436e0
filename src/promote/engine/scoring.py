"""Scoring one batch: the scored positions of both kernels' outputs and every metric there, once.

``ScoredBatch`` is what the pass engine (``engine/passes.py``) hands to every consumer — numerics
summaries, noise-floor comparisons, slice statistics — so the metrics are computed once per batch
however many stages use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from promote.data import Batch
from promote.engine.topk_scoring import check_vocab, score_topk
from promote.errors import UsageError
from promote.kernels.base import Outputs
from promote.metrics.distribution import token_metrics
from promote.metrics.topk import BOUNDED_METRICS


@dataclass
class ScoredBatch:
    """One batch after both kernels ran: logits and metric values at its scored positions only.

    Consumers (numerics summaries, the noise floor, slice statistics) read this, so the kernels run
    once per batch however many stages use the outputs.
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
    with certified bounds (``engine/topk_scoring.py``). Positions a kernel's ``mask`` leaves out are
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
