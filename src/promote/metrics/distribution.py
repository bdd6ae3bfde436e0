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
import torch

# Rows processed at once: bounds the float64 temporaries to about this many elements per tensor.
_CHUNK_ELEMENTS = 1 << 22
_SERIES_BELOW = 1e-2

METRIC_NAMES = (
    "kl", "kl_rev", "tv", "logit_drift", "logit_osc", "log_ratio", "abs_log_ratio", "argmax_agree", "nonfinite",
)


def expm1_minus_x(u: torch.Tensor) -> torch.Tensor:
    """e^u − 1 − u, accurate to a few ulp for every u (series below |u| = 1e-2)."""
    small = u.abs() < _SERIES_BELOW
    series = 0.5 * u * u * (1 + u / 3 * (1 + u / 4 * (1 + u / 5 * (1 + u / 6))))
    return torch.where(small, series, torch.expm1(u) - u)


def _centred(z_from: torch.Tensor, z_to: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """p = softmax(z_from), u = δ − E_p δ with δ = z_to − z_from, and KL(p‖softmax(z_to))."""
    log_p = torch.log_softmax(z_from, dim=-1)
    p = torch.exp(log_p)
    delta = torch.where(valid, z_to - z_from, torch.zeros((), dtype=z_from.dtype))
    # Centre on the value at the reference argmax first, so a large common shift cannot cost precision.
    anchor = delta.gather(-1, z_from.argmax(dim=-1, keepdim=True))
    delta = torch.where(valid, delta - anchor, torch.zeros((), dtype=z_from.dtype))
    mu = (p * delta).sum(-1, keepdim=True)
    u = torch.where(valid, delta - mu, torch.zeros((), dtype=z_from.dtype))
    kl = torch.log1p((p * expm1_minus_x(u)).sum(-1))
    return p, u, kl


def _chunk_metrics(z_r: torch.Tensor, z_c: torch.Tensor, targets: torch.Tensor, tie_margin: float) -> dict:
    both_masked = torch.isneginf(z_r) & torch.isneginf(z_c)
    nonfinite = ((~torch.isfinite(z_r)) | (~torch.isfinite(z_c))) & ~both_masked
    valid = ~both_masked
    p, u, kl = _centred(z_r, z_c, valid)
    _, _, kl_rev = _centred(z_c, z_r, valid)
    tv = 0.5 * (p * torch.expm1(u - kl[:, None]).abs()).sum(-1)
    delta = z_c - z_r
    big = torch.tensor(torch.inf, dtype=delta.dtype)
    d_hi = torch.where(valid, delta, -big).amax(-1)
    d_lo = torch.where(valid, delta, big).amin(-1)
    u_y = u.gather(-1, targets[:, None]).squeeze(-1)
    log_ratio = kl - u_y
    top2 = torch.topk(z_r, k=min(2, z_r.shape[-1]), dim=-1)
    margin = (top2.values[:, 0] - top2.values[:, -1]) if z_r.shape[-1] > 1 else torch.full_like(kl, torch.inf)
    agree = z_r.argmax(-1) == z_c.argmax(-1)
    out = {
        "kl": kl,
        "kl_rev": kl_rev,
        "tv": tv,
        "logit_drift": torch.maximum(d_hi.abs(), d_lo.abs()),
        "logit_osc": d_hi - d_lo,
        "log_ratio": log_ratio,
        "abs_log_ratio": log_ratio.abs(),
        "argmax_agree": agree.to(torch.float64),
        "nonfinite": nonfinite.sum(-1).to(torch.float64),
        "tie_flip": (~agree & (margin < tie_margin)).to(torch.float64),
        "ref_argmax": z_r.argmax(-1).to(torch.float64),
    }
    # A position with any non-finite logit has no meaningful divergence: make it NaN so that every
    # clause on it fails loudly instead of averaging a sentinel (``nonfinite`` counts them).
    bad = nonfinite.any(-1)
    if bool(bad.any()):
        for name in ("kl", "kl_rev", "tv", "logit_drift", "logit_osc", "log_ratio", "abs_log_ratio"):
            out[name] = torch.where(bad, torch.tensor(torch.nan, dtype=torch.float64), out[name])
    return out


def token_metrics(
    ref_logits: np.ndarray, cand_logits: np.ndarray, targets: np.ndarray, *, tie_margin: float = 1e-3
) -> dict[str, np.ndarray]:
    """All per-position metrics for scored positions.

    Args:
        ref_logits, cand_logits: [P, V] logits of the reference and candidate at P scored positions.
        targets: [P] the next input token at each position (the token the log-ratio is taken on).
        tie_margin: reference top-2 margin under which an argmax flip is a tie flip.

    Returns:
        name → float64 [P] array for every name in ``METRIC_NAMES`` plus ``tie_flip`` (1 where an
        argmax flip happened at a near tie) and ``ref_argmax``.
    """
    if ref_logits.shape != cand_logits.shape:
        raise ValueError(f"logit shapes differ: reference {ref_logits.shape}, candidate {cand_logits.shape}")
    rows, vocab = ref_logits.shape
    step = max(1, _CHUNK_ELEMENTS // max(vocab, 1))
    parts: dict[str, list[np.ndarray]] = {}
    tgt = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.int64))
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        z_r = torch.from_numpy(np.ascontiguousarray(ref_logits[start:stop])).to(torch.float64)
        z_c = torch.from_numpy(np.ascontiguousarray(cand_logits[start:stop])).to(torch.float64)
        for name, values in _chunk_metrics(z_r, z_c, tgt[start:stop], tie_margin).items():
            parts.setdefault(name, []).append(values.numpy())
    if rows == 0:
        return {name: np.zeros(0) for name in (*METRIC_NAMES, "tie_flip", "ref_argmax")}
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def is_degenerate(logits: np.ndarray) -> np.ndarray:
    """bool [P]: rows whose logits are constant across the vocabulary (a uniform, uninformative output)."""
    finite = np.where(np.isfinite(logits), logits, 0.0)
    return (finite.max(axis=-1) - finite.min(axis=-1)) == 0
