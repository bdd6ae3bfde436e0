"""Per-position divergence metrics between two next-token distributions (DESIGN.md §5).

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
from promote.metrics.names import DIVERGENCE_METRICS, EXTRA_NAMES, METRIC_NAMES

__all__ = ["DIVERGENCE_METRICS", "EXTRA_NAMES", "METRIC_NAMES", "is_degenerate", "token_metrics"]

def token_metrics(
    ref_logits: np.ndarray, cand_logits: np.ndarray, targets: np.ndarray, *, tie_margin: float = 1e-3
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
    return {name: out[:, j].copy() for j, name in enumerate(COLUMNS)}


def is_degenerate(logits: np.ndarray) -> np.ndarray:
    """bool [P]: rows whose logits are constant across the vocabulary (a uniform, uninformative output)."""
    finite = np.where(np.isfinite(logits), logits, 0.0)
    return (finite.max(axis=-1) - finite.min(axis=-1)) == 0
