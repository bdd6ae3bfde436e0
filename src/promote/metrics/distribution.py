"""Per-position divergence metrics between two next-token distributions (docs/metrics.md).

Accuracy first: noise floors are built from near-identical distributions whose KL is ~1e-12, where
``Σ p·(log p − log q)`` returns rounding noise. So KL and TV are computed from the logit difference
δ = z_c − z_r, centred under p:

    μ = E_p[δ],  u = δ − μ,  KL(p‖q) = log E_p[e^u] = log1p(E_p[e^u − 1 − u])

Each term ``e^u − 1 − u`` is ≥ 0 (no cancellation between terms) and is evaluated by its Taylor
series for small |u|. Then q_i = p_i·e^{u_i − KL}, so TV = ½·E_p|expm1(u − KL)| and
log p_y − log q_y = KL − u_y, all without subtracting nearly equal numbers. Everything is float64.
"""

from __future__ import annotations

import numpy as np

from promote.metrics._fused import COLUMNS, fused_token_metrics
from promote.vocabulary import DEFAULT_TIE_MARGIN, DIVERGENCE_METRICS, EXTRA_NAMES, METRIC_NAMES

__all__ = ["DIVERGENCE_METRICS", "EXTRA_NAMES", "METRIC_NAMES", "entropy_ratio", "is_degenerate", "ratio_outside",
           "token_metrics", "topk_overlap"]

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
    rows = ref_logits.shape[0]
    out = np.empty((rows, len(COLUMNS)), dtype=np.float64)
    if rows:
        dtype = np.float64 if ref_logits.dtype == np.float64 or cand_logits.dtype == np.float64 else np.float32
        fused_token_metrics(
            np.ascontiguousarray(ref_logits, dtype=dtype),
            np.ascontiguousarray(cand_logits, dtype=dtype),
            np.ascontiguousarray(targets, dtype=np.int64),
            float(tie_margin),
            out,
        )
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
    """|top-k(z_r) ∩ top-k(z_c)| / k per position (k capped at V; ties broken by index)."""
    k = min(k, ref_logits.shape[-1])
    if ref_logits.shape[0] == 0:
        return np.zeros(0)
    top_r = np.argpartition(-ref_logits, k - 1, axis=-1)[:, :k]
    top_c = np.argpartition(-cand_logits, k - 1, axis=-1)[:, :k]
    shared = (top_r[:, :, None] == top_c[:, None, :]).any(-1).sum(-1)
    return shared / k


def ratio_outside(abs_log_ratio: np.ndarray, cap: float) -> np.ndarray:
    """1 where the importance weight w = p_y/q_y lies outside [1/C, C] (|log w| > log C), else 0; NaN kept."""
    out = (abs_log_ratio > np.log(cap)).astype(np.float64)
    return np.where(np.isnan(abs_log_ratio), np.nan, out)


def is_degenerate(logits: np.ndarray) -> np.ndarray:
    """bool [P]: rows whose logits are constant across the vocabulary (a uniform, uninformative output)."""
    finite = np.where(np.isfinite(logits), logits, 0.0)
    return (finite.max(axis=-1) - finite.min(axis=-1)) == 0
