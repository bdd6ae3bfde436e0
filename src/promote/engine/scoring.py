"""Scoring one batch: the scored positions of both kernels' outputs and every metric there, once.

``ScoredBatch`` is what the pass engine (``engine/passes.py``) hands to every consumer — numerics
summaries, noise-floor comparisons, slice statistics — so the metrics are computed once per batch
however many stages use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from promote.data import Batch
from promote.data.rollouts import MAX_LOGPROB
from promote.engine.topk_scoring import check_vocab, score_topk
from promote.errors import UsageError
from promote.kernels.base import Outputs
from promote.metrics.distribution import token_metrics
from promote.metrics.rl import token_values
from promote.metrics.topk import BOUNDED_METRICS, log_softmax


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
    sampled: bool = False  # a side gave only the sampled token's log-prob: only SAMPLED_METRICS exist

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
    if ref.is_sampled or cand.is_sampled:
        scored = score_sampled(batch, ref, cand, mask)
    elif ref.logits is not None and cand.logits is not None:
        check_vocab(labels, ref.logits.shape[-1], cand.logits.shape[-1])
        scored = score_batch(batch, ref.logits, cand.logits, tie_margin=tie_margin, mask=mask)
    else:
        rows, cols, targets, ref_view, cand_view, values = score_topk(batch, ref, cand, mask, labels=labels,
                                                                      tie_margin=tie_margin)
        scored = ScoredBatch(batch, rows, cols, targets, ref_view, cand_view, values, bounded=BOUNDED_METRICS)
    scored.values.update(token_values(scored.values["log_ratio"]))  # RL metrics: exact on every path
    return scored


def _sampled_logprob(out: Outputs, rows: np.ndarray, cols: np.ndarray, targets: np.ndarray) -> np.ndarray:
    if out.logits is not None:
        lp = log_softmax(out.logits[rows, cols])
        return np.take_along_axis(lp, targets[:, None], -1)[:, 0]
    return np.asarray(out.target_logprobs[rows, cols], dtype=np.float64)


def score_sampled(batch: Batch, ref: Outputs, cand: Outputs, mask: np.ndarray) -> ScoredBatch:
    """Score a batch where a side recorded only the sampled token's log-prob (RL rollouts).

    Only metrics exact on that data exist (``log_ratio``, ``abs_log_ratio``, ``nonfinite`` and the RL
    metrics of ``metrics/rl.py``); KL, TV, logit oscillation and argmax need the distribution, and a
    clause on them is a contract error (contract/sampled.py), never a bound of [0, ∞].
    """
    rows, cols = np.nonzero(mask)
    targets = batch.input_ids[rows, cols + 1]
    t_r, t_c = _sampled_logprob(ref, rows, cols, targets), _sampled_logprob(cand, rows, cols, targets)
    # A sampled token has a finite log-prob ≤ 0 on both sides; anything else (NaN, ±inf — even −inf on
    # both sides, which is no agreement about a token that was sampled — or a log-prob above 0) is counted
    # by `nonfinite` and leaves log w undefined, never 0.
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(t_r) | ~np.isfinite(t_c) | (t_r > MAX_LOGPROB) | (t_c > MAX_LOGPROB)
        log_ratio = np.where(bad, np.nan, t_r - t_c)
    zeros = np.zeros(rows.size)
    values = {"log_ratio": log_ratio, "abs_log_ratio": np.abs(log_ratio), "nonfinite": bad.astype(np.float64),
              "tie_flip": zeros}
    return ScoredBatch(batch, rows, cols, targets, t_r[:, None], t_c[:, None], values, sampled=True)
