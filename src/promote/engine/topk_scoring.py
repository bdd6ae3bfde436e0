"""Scoring a batch whose outputs are not full logits on both sides (top-k records), with
``metrics/topk.py``'s certified bounds.

Kept apart from ``engine/scoring.py`` so the full-logits path there stays exactly as it was; scoring
calls in here only when a kernel delivered top-k outputs. Judging the bounded metrics is
``stages/numerics.judge_bounded`` (on the conservative side of each bound).
"""

from __future__ import annotations

import numpy as np

from promote.data import Batch
from promote.errors import UsageError
from promote.kernels.base import Outputs, rows_on_host
from promote.metrics.topk import Side, side_from_logits, topk_metrics


def check_vocab(labels: tuple[str, str], ref_vocab: int, cand_vocab: int) -> None:
    """Both kernels must score one vocabulary; the message names both (records: their file)."""
    if ref_vocab != cand_vocab:
        raise UsageError(f"vocabulary sizes differ: {labels[0]} has {ref_vocab}, {labels[1]} has {cand_vocab}; "
                         "both kernels must score the same vocabulary")


def _side(out: Outputs, rows: np.ndarray, cols: np.ndarray, targets: np.ndarray) -> Side:
    if out.logits is not None:
        return side_from_logits(rows_on_host(out.logits, rows, cols), targets)
    return Side(ids=out.topk_ids[rows, cols].astype(np.int64),
                logprobs=out.topk_logprobs[rows, cols].astype(np.float64),
                target=out.target_logprobs[rows, cols].astype(np.float64),
                mass_tol=out.mass_tol if out.mass_tol is not None else 1e-6)


def _check_ids(side: Side, label: str, batch: Batch, rows: np.ndarray, cols: np.ndarray, vocab: int | None) -> None:
    """Top-k ids must be distinct per position and inside the other side's vocabulary."""
    if side.ids.size == 0:
        return
    ordered = np.sort(side.ids, axis=-1)
    dup = ((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)).any(-1)
    if dup.any():
        i = int(np.argmax(dup))
        raise UsageError(f"{label}: `topk_ids` repeats a token id at sample `{batch.samples[rows[i]].id}` "
                         f"position {int(cols[i])}; top-k ids must be distinct")
    if vocab is not None and int(side.ids.max()) >= vocab:
        raise UsageError(f"vocabulary sizes differ: {label} records token id {int(side.ids.max())} but the other "
                         f"kernel's vocabulary has {vocab} entries")


def score_topk(batch: Batch, ref: Outputs, cand: Outputs, mask: np.ndarray, *, labels: tuple[str, str],
               tie_margin: float) -> tuple[np.ndarray, ...]:
    """Scored positions and metric values of a batch where at least one side has only top-k.

    Returns ``(rows, cols, targets, ref_view, cand_view, values)``; the views (logits or top-k
    log-probs at the scored positions) feed the vacuity check.
    """
    if ref.is_topk and cand.is_topk and ref.topk_ids.shape[-1] != cand.topk_ids.shape[-1]:
        raise UsageError(f"top-k widths differ: {labels[0]} records K = {ref.topk_ids.shape[-1]}, {labels[1]} "
                         f"records K = {cand.topk_ids.shape[-1]}; record both engines with the same K")
    rows, cols = np.nonzero(mask)
    targets = batch.input_ids[rows, cols + 1]
    sides = (_side(ref, rows, cols, targets), _side(cand, rows, cols, targets))
    vocabs = [None if o.logits is None else o.logits.shape[-1] for o in (ref, cand)]
    for index, (out, side) in enumerate(zip((ref, cand), sides, strict=True)):
        if out.is_topk:
            _check_ids(side, labels[index], batch, rows, cols, vocabs[1 - index])
    values = topk_metrics(sides[0], sides[1], tie_margin=tie_margin)
    views = [rows_on_host(o.logits, rows, cols) if o.logits is not None else o.topk_logprobs[rows, cols]
             for o in (ref, cand)]
    return rows, cols, targets, views[0], views[1], values


__all__ = ["check_vocab", "score_topk"]
