"""The fused kernel's per-position metrics in torch ops, on whatever device the logits are on.

``metrics/_fused.py`` (numba) is the reference: this module computes the same ``COLUMNS`` with the
same formulas (the centred KL/TV of distribution.py, the same NaN and mask rules, first-index argmax)
so a CUDA kernel's logits are scored where they are and only per-position values reach the host
(``engine/device_scoring.py`` chunks the positions). Element arithmetic is float64 by default (exact
z_c − z_r on float32 inputs, as in numba); ``tests/test_device_metrics.py`` holds the two equal to
1e-6 relative on CPU torch. Imported only when a kernel's outputs are torch tensors.
"""

from __future__ import annotations

import torch

from promote.metrics._fused import COLUMNS

_SERIES_BELOW = 1.0 / 32  # |u| up to here: e^u − 1 − u by series (truncation < 1e-13 relative)
_EXP_MAX = 709.0  # numba's exp clamps here: e^u stays finite, as there


def _nan_to_neg_inf(z: torch.Tensor) -> torch.Tensor:
    """NaN → −inf: numba's ``max`` keeps the running maximum when it meets a NaN."""
    return z.masked_fill(torch.isnan(z), -torch.inf)


def _first_equal(z: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Index of the first entry equal to ``value`` per row; V − 1 where none is (a NaN row), as numba."""
    equal = z == value[:, None]
    found = equal.any(-1)
    first = equal.to(torch.uint8).argmax(-1)
    return torch.where(found, first, torch.full_like(first, z.shape[-1] - 1))


def _g(u: torch.Tensor) -> torch.Tensor:
    """e^u − 1 − u ≥ 0, relatively accurate for every u (series near 0, expm1 beyond)."""
    series = u * u * (0.5 + u * (1 / 6 + u * (1 / 24 + u * (1 / 120 + u * (1 / 720 + u * (1 / 5040 + u / 40320))))))
    far = torch.expm1(torch.clamp(u, max=_EXP_MAX)) - u
    return torch.where(u.abs() <= _SERIES_BELOW, series, far)


def _ranges(a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
    """Pass 1 of the fused kernel: maxima, argmaxima, δ range, non-finite count, the facts."""
    fin_a, fin_b = torch.isfinite(a), torch.isfinite(b)
    finite = fin_a & fin_b
    masked = (a == -torch.inf) & (b == -torch.inf)
    d = b - a
    a_max, b_max = _nan_to_neg_inf(a), _nan_to_neg_inf(b)
    m_r, m_c = a_max.amax(-1), b_max.amax(-1)
    am_r, am_c = _first_equal(a, m_r), _first_equal(b, m_c)
    second = a_max.scatter(-1, am_r[:, None], -torch.inf).amax(-1) if a.shape[-1] > 1 else torch.full_like(m_r,
                                                                                                          -torch.inf)
    zero_a, zero_b = torch.where(fin_a, a, 0.0), torch.where(fin_b, b, 0.0)
    return {
        "bad": (~(masked | finite)).sum(-1).to(a.dtype), "m_r": m_r, "am_r": am_r, "am_c": am_c, "second": second,
        "d_hi": torch.where(finite, d, -torch.inf).amax(-1), "d_lo": torch.where(finite, d, torch.inf).amin(-1),
        "degenerate": (zero_a.amax(-1) == zero_a.amin(-1)) & (zero_b.amax(-1) == zero_b.amin(-1)),
        "ref_abs_max": zero_a.abs().amax(-1),
    }


def token_columns(ref: torch.Tensor, cand: torch.Tensor, targets: torch.Tensor, tie_margin: float, *,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``COLUMNS`` [P, len(COLUMNS)] in ``dtype`` on the logits' device for [P, V] logits and [P] targets."""
    a, b = ref.to(dtype), cand.to(dtype)
    r = _ranges(a, b)
    rows = torch.arange(a.shape[0], device=a.device)
    agree = r["am_r"] == r["am_c"]
    flip = ~agree & (r["m_r"] - r["second"] < tie_margin)
    # Pass 2: reference weights w = e^{z − max} and the logit difference centred under p, anchored at
    # the reference argmax so a common shift costs no precision.
    live = a != -torch.inf
    anchor = b[rows, r["am_r"]] - a[rows, r["am_r"]]
    x = torch.where(live, a - r["m_r"][:, None], 0.0)
    w = torch.where(live, torch.exp(x), 0.0)
    s = w.sum(-1)
    sd = (w * torch.where(live, (b - a) - anchor[:, None], 0.0)).sum(-1)
    ref_entropy = torch.log(s) - (w * x).sum(-1) / s
    shift = anchor + sd / s
    # Pass 3: u = δ − μ; KL(p‖q) = log1p(E_p[g(u)]); t = e^u − 1 = u + g(u).
    u = torch.where(live, (b - a) - shift[:, None], 0.0)
    g = _g(u)
    t = u + g
    kl = torch.log1p((w * g).sum(-1) / s)
    # Pass 4: TV = ½·E_p|e^{−KL}·t + expm1(−KL)|; KL(q‖p) = e^{−KL}·E_p[u·t] − KL.
    c1, c0 = torch.exp(-kl), torch.expm1(-kl)
    tv = 0.5 * (w * (c1[:, None] * t + c0[:, None]).abs()).sum(-1) / s
    kl_rev = c1 * (w * (u * t)).sum(-1) / s - kl
    cand_entropy = torch.log(s) - c1 * (w * (1.0 + t) * x).sum(-1) / s - kl_rev
    y = targets.to(device=a.device, dtype=torch.long)
    log_ratio = kl - ((b[rows, y] - a[rows, y]) - shift)
    columns = {
        "kl": kl, "kl_rev": kl_rev, "tv": tv, "logit_drift": torch.maximum(r["d_hi"].abs(), r["d_lo"].abs()),
        "logit_osc": r["d_hi"] - r["d_lo"], "log_ratio": log_ratio, "abs_log_ratio": log_ratio.abs(),
        "argmax_agree": agree, "nonfinite": r["bad"], "tie_flip": flip, "ref_argmax": r["am_r"],
        "ref_entropy": ref_entropy, "cand_entropy": cand_entropy, "degenerate": r["degenerate"],
        "ref_abs_max": r["ref_abs_max"], "cand_argmax": r["am_c"],
    }
    out = torch.stack([columns[name].to(dtype) for name in COLUMNS], dim=-1)
    blank = (r["bad"] > 0)[:, None] & _NAN_WHEN_BAD.to(a.device)[None, :]
    return torch.where(blank, torch.nan, out)


_NAN_WHEN_BAD = torch.tensor([name in ("kl", "kl_rev", "tv", "logit_drift", "logit_osc", "log_ratio", "abs_log_ratio",
                                       "ref_entropy", "cand_entropy") for name in COLUMNS])


def _top_ids(logits: torch.Tensor, k: int) -> torch.Tensor:
    """long [P, k]: the ids of each row's top-k set (metrics/distribution.topk_overlap's rule)."""
    values, ids = torch.topk(logits, k, dim=-1)  # NaN counts as largest here: such rows are redone below
    redo = torch.nonzero(((logits >= values[:, -1:]).sum(-1) > k) | torch.isnan(values).any(-1)).flatten()
    if redo.numel():
        ids[redo] = _ids_by_rule(logits[redo], k)
    return ids


def _ids_by_rule(logits: torch.Tensor, k: int) -> torch.Tensor:
    """long [n, k]: logits above the k-th largest, then the lowest indices equal to it (NaN as −inf)."""
    z = _nan_to_neg_inf(logits)
    kth = torch.topk(z, k, dim=-1).values[:, -1]
    rows, cols = torch.nonzero(z >= kth[:, None], as_tuple=True)
    tied = (z[rows, cols] == kth[rows]).to(torch.long)
    vocab = z.shape[-1]
    order = torch.argsort((rows * 2 + tied) * vocab + cols)  # by row, those above the k-th first, then by index
    rows, cols = rows[order], cols[order]
    starts = torch.searchsorted(rows, torch.arange(z.shape[0], device=z.device))
    rank = torch.arange(rows.numel(), device=z.device) - starts[rows]
    return cols[rank < k].reshape(z.shape[0], k)


def topk_overlap(ref: torch.Tensor, cand: torch.Tensor, k: int) -> torch.Tensor:
    """|top-k(z_r) ∩ top-k(z_c)| / k per position (k capped at V), float64."""
    k = min(k, ref.shape[-1])
    ids_r, ids_c = _top_ids(ref, k), _top_ids(cand, k)
    return (ids_r[:, :, None] == ids_c[:, None, :]).any(-1).sum(-1).to(torch.float64) / k


def reference_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of softmax(logits) per row in float64, as stages/slices/keys.reference_entropy."""
    z = logits.to(torch.float64)
    z = z - z.amax(-1, keepdim=True)
    log_p = z - torch.log(torch.exp(z).sum(-1, keepdim=True))
    p = torch.exp(log_p)
    return -(p * torch.where(p > 0, log_p, 0.0)).sum(-1)


def top2_margin(logits: torch.Tensor) -> torch.Tensor:
    """Top-1 minus top-2 logit per row (inf with one logit), as stages/slices/keys.top2_margin."""
    if logits.shape[-1] < 2:
        return torch.full(logits.shape[:1], torch.inf, dtype=torch.float64, device=logits.device)
    top = torch.topk(logits.to(torch.float64), 2, dim=-1).values
    return top[:, 0] - top[:, 1]


__all__ = ["reference_entropy", "token_columns", "top2_margin", "topk_overlap"]
