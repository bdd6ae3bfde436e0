"""Per-position divergence metrics between two next-token distributions (docs/metrics.md).

Accuracy first: noise floors are built from near-identical distributions whose KL is ~1e-12, where
``Σ p·(log p − log q)`` returns rounding noise. So KL and TV are computed from the logit difference
δ = z_c − z_r anchored at the reference argmax, u = δ − δ_argmax, with g(u) = e^u − 1 − u ≥ 0 (a Taylor
series for small |u|) and y = E_p[e^u] − 1:

    KL(p‖q) = log E_p[e^u] − E_p[u] = E_p[g(u)] + (log1p(y) − y)

the bracket by its own series for small y. Then q_i = p_i·e^{u_i}/(1 + y), so TV = ½·E_p|t − y|/(1 + y)
(t = e^u − 1) and log p_y − log q_y = log1p(y) − u_y, all without subtracting nearly equal numbers. Rows
where the anchor is far from E_p[δ] are scored again centred there (metrics/_fused.py). Everything is float64.
"""

from __future__ import annotations

import numpy as np

from promote.metrics._fused import COLUMNS, fused_token_metrics, new_scratch
from promote.vocabulary import DEFAULT_TIE_MARGIN, DIVERGENCE_METRICS, EXTRA_NAMES, METRIC_NAMES

__all__ = ["COLUMNS", "DIVERGENCE_METRICS", "EXTRA_NAMES", "METRIC_NAMES", "as_numbers", "columns_to_values",
           "entropy_ratio", "fused_columns", "is_degenerate", "new_scratch", "ratio_outside", "token_metrics",
           "token_metrics_at", "topk_overlap"]

def token_metrics(
    ref_logits: np.ndarray, cand_logits: np.ndarray, targets: np.ndarray, *, tie_margin: float = DEFAULT_TIE_MARGIN
) -> dict[str, np.ndarray]:
    """All per-position metrics for scored positions.

    Args:
        ref_logits, cand_logits: [P, V] logits of the reference and candidate at P scored positions
            (float32 or float64; other float types are widened to float32).
        targets: [P] the next input token at each position (the token the log-ratio is taken on).
        tie_margin: reference top-2 margin under which an argmax flip is a tie flip.

    Returns:
        name → float64 [P] array for every name in ``METRIC_NAMES`` and ``EXTRA_NAMES``. Positions
        with a non-finite logit (other than −inf on both sides, a vocabulary mask) get NaN for every
        divergence metric, so any clause on them fails; ``nonfinite`` counts the bad logits.
    """
    if ref_logits.shape != cand_logits.shape:
        raise ValueError(f"logit shapes differ: reference {ref_logits.shape}, candidate {cand_logits.shape}")
    if ref_logits.ndim != 2:
        raise ValueError(f"expected [positions, vocab] logits, got shape {ref_logits.shape}")
    out = np.empty((ref_logits.shape[0], len(COLUMNS)), dtype=np.float64)
    fused_columns(as_numbers(ref_logits), as_numbers(cand_logits), targets, tie_margin, out)
    return columns_to_values(out)


def as_numbers(logits: np.ndarray) -> np.ndarray:
    """Integer logits as the float64 numbers they are (never bfloat16 or float16 bits: only the torch path hands
    those over, as uint16/int16 views); floating arrays as they are."""
    return logits if np.issubdtype(logits.dtype, np.floating) else logits.astype(np.float64)


def token_metrics_at(ref_logits: np.ndarray, cand_logits: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                     targets: np.ndarray, *, tie_margin: float = 1e-3) -> dict[str, np.ndarray]:
    """``token_metrics`` at positions (``rows``, ``cols``) of [B, T, V] logits, read in place (no gather)."""
    if ref_logits.shape != cand_logits.shape or ref_logits.ndim != 3:
        raise ValueError(f"expected two [batch, tokens, vocab] logits of one shape, got {ref_logits.shape} and "
                         f"{cand_logits.shape}")
    vocab = ref_logits.shape[-1]
    flat = [as_numbers(z).reshape(-1, vocab) for z in (ref_logits, cand_logits)]  # views when contiguous
    index = np.asarray(rows, dtype=np.int64) * ref_logits.shape[1] + np.asarray(cols, dtype=np.int64)
    out = np.empty((index.shape[0], len(COLUMNS)), dtype=np.float64)
    fused_columns(flat[0], flat[1], targets, tie_margin, out, index=index)
    return columns_to_values(out)


def fused_columns(ref_logits: np.ndarray, cand_logits: np.ndarray, targets: np.ndarray, tie_margin: float,
                  out: np.ndarray, index: np.ndarray | None = None, scratch: np.ndarray | None = None) -> None:
    """The fused kernel's ``COLUMNS`` into ``out`` [P, len(COLUMNS)] (float64) for rows ``index`` [P] of [N, V]
    logits (default: every row). float32/float64/float16 logits, uint16 holding bfloat16 bits and int16 holding
    float16 bits are read in place.
    ``scratch`` (``new_scratch(V)``) lets a caller scoring many chunks allocate the kernel's work rows once."""
    if index is None:
        index = np.arange(ref_logits.shape[0], dtype=np.int64)
    vocab = ref_logits.shape[-1]
    if scratch is not None and (scratch.dtype != np.float64 or scratch.ndim != 3 or scratch.shape[1:] != (2, vocab)
                                or not len(scratch) or not scratch.flags.c_contiguous):
        # numba does not check bounds: a wrong shape would write astray
        raise ValueError(f"scratch must be new_scratch({vocab}), got {scratch.dtype} {scratch.shape}")
    if index.shape[0]:
        fused_token_metrics(_readable(ref_logits, cand_logits), _readable(cand_logits, ref_logits),
                            np.ascontiguousarray(index, dtype=np.int64), np.ascontiguousarray(targets, dtype=np.int64),
                            float(tie_margin), out, new_scratch(vocab) if scratch is None else scratch)


def _readable(logits: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Logits numba reads as they are (row-contiguous float32/float64, bf16 bits as uint16, fp16 as its bits in
    int16); others widened to float32, or to float64 when the other side is float64."""
    if logits.dtype in (np.float32, np.float64, np.uint16, np.int16) and logits.flags.c_contiguous:
        return logits
    if logits.dtype == np.float16 and logits.flags.c_contiguous:
        return logits.view(np.int16)
    return np.ascontiguousarray(logits, dtype=np.float64 if np.float64 in (logits.dtype, other.dtype) else np.float32)


def columns_to_values(out: np.ndarray) -> dict[str, np.ndarray]:
    """name → float64 [P] from the fused kernel's columns (numba or metrics/device.py), plus the entropy ratio."""
    values = {name: out[:, j].copy() for j, name in enumerate(COLUMNS)}
    values["entropy_ratio"] = entropy_ratio(values["ref_entropy"], values["cand_entropy"])
    return values


def entropy_ratio(ref_entropy: np.ndarray, cand_entropy: np.ndarray) -> np.ndarray:
    """H(q)/H(p) per position; two one-hot distributions (0/0) count as 1, 0 → positive as +inf."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = cand_entropy / ref_entropy
    both_zero = (ref_entropy == 0) & (cand_entropy == 0)
    return np.where(both_zero, 1.0, ratio)


def topk_overlap(ref_logits: np.ndarray, cand_logits: np.ndarray, k: int) -> np.ndarray:
    """|top-k(z_r) ∩ top-k(z_c)| / k per position (k capped at V).

    The top-k set is every logit above the k-th largest plus, among those equal to it, the lowest
    indices (NaN counts as −inf): a rule, not an accident of a selection algorithm, so the torch path
    (metrics/device.py) gives the same sets on ties. A row without a tie across the k-th logit (or a
    NaN) keeps the selection's k ids; only the others are resolved by the rule."""
    k = min(k, ref_logits.shape[-1])
    if ref_logits.shape[0] == 0:
        return np.zeros(0)
    ids_r, ids_c = _top_ids(ref_logits, k), _top_ids(cand_logits, k)
    return (ids_r[:, :, None] == ids_c[:, None, :]).any(-1).sum(-1) / k


def _top_ids(logits: np.ndarray, k: int) -> np.ndarray:
    """int [P, k]: the ids of each row's top-k set (``topk_overlap``'s rule)."""
    cut = logits.shape[-1] - k
    ids = np.argpartition(logits, cut, axis=-1)[:, cut:]  # NaN sorts last: such rows are redone below
    top = np.take_along_axis(logits, ids, -1)
    kth = top.min(-1, keepdims=True)
    redo = np.flatnonzero(((logits >= kth).sum(-1) > k) | np.isnan(top).any(-1))
    if redo.size:
        ids[redo] = _ids_by_rule(logits[redo], k)
    return ids


def _ids_by_rule(logits: np.ndarray, k: int) -> np.ndarray:
    """int [n, k]: logits above the k-th largest, then the lowest indices equal to it (NaN as −inf)."""
    z = np.where(np.isnan(logits), -np.inf, logits)
    kth = np.partition(z, z.shape[-1] - k, axis=-1)[:, z.shape[-1] - k]
    rows, cols = np.nonzero(z >= kth[:, None])
    tied = z[rows, cols] == kth[rows]
    order = np.lexsort((cols, tied, rows))  # by row, those above the k-th first, then by index
    rows, cols = rows[order], cols[order]
    rank = np.arange(rows.size) - np.searchsorted(rows, np.arange(z.shape[0]))[rows]
    return cols[rank < k].reshape(z.shape[0], k)


def ratio_outside(abs_log_ratio: np.ndarray, cap: float) -> np.ndarray:
    """1 where the importance weight w = p_y/q_y lies outside [1/C, C] (|log w| > log C), else 0; NaN kept."""
    out = (abs_log_ratio > np.log(cap)).astype(np.float64)
    return np.where(np.isnan(abs_log_ratio), np.nan, out)


def is_degenerate(logits: np.ndarray) -> np.ndarray:
    """bool [P]: rows whose logits are constant across the vocabulary (a uniform, uninformative output)."""
    finite = np.where(np.isfinite(logits), logits, 0.0)
    return (finite.max(axis=-1) - finite.min(axis=-1)) == 0
