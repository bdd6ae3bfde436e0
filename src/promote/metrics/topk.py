"""Divergence metrics from top-k log-probabilities: exact where the records determine a value,
certified lower/upper bounds where they do not (formulas and proofs: docs/records.md).

Engines that cannot run on a CI runner (vLLM, TensorRT-LLM, a trainer) usually record only the
top-k log-probs per position plus the log-prob of the next input token. From that,

* ``log_ratio``/``abs_log_ratio`` (on the target token) and ``argmax_agree`` are exact;
* ``tv``, ``kl``, ``kl_rev``, ``logit_osc`` and ``logit_drift`` are only *bounded*: the mass outside
  the recorded ids is known in total (1 − Σ top-k) but not per token. Each comes back as a pair
  ``NAME_lower``/``NAME_upper`` that provably contains the value the full distributions would give,
  so a report can never present a bound as a measurement. ``kl`` has no finite upper bound unless
  the candidate side is complete (an unrecorded candidate probability may be arbitrarily small).

A side given as full logits is passed as *complete* (every id known); then the bounds tighten and,
with both sides complete, lower = upper = the exact value. Everything is float64 numpy; this module
imports nothing from ``stages`` or ``kernels``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from promote.vocabulary import DEFAULT_TIE_MARGIN

BOUNDED_METRICS = ("kl", "kl_rev", "tv", "logit_osc", "logit_drift")
EXACT_METRICS = ("log_ratio", "abs_log_ratio", "argmax_agree", "nonfinite")
# Pairwise id matching allocates rows·Kr·Kc booleans; process at most this many per chunk.
_MATCH_ELEMENTS = 1 << 22
_SERIES_BELOW = 1e-2


@dataclass(frozen=True)
class Side:
    """One kernel's knowledge at P positions.

    ``ids`` int64 [P, K] (−1 marks an empty slot), ``logprobs`` float [P, K] log-probabilities of those
    ids (−inf is a known zero), ``target`` float [P] log-prob of the next input token, ``complete``:
    the ids cover the whole vocabulary (a full-logits side), so nothing is unknown.
    """

    ids: np.ndarray
    logprobs: np.ndarray
    target: np.ndarray
    complete: bool = False
    mass_tol: float = 1e-12


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """float64 log-softmax over the last axis (−inf entries stay −inf)."""
    z = np.asarray(logits, dtype=np.float64)
    top = np.max(np.where(np.isfinite(z), z, -np.inf), axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return z - top - np.log(np.sum(np.exp(z - top), axis=-1, keepdims=True))


def side_from_logits(logits: np.ndarray, targets: np.ndarray) -> Side:
    """A complete side from full logits [P, V]: every id known."""
    lp = log_softmax(logits)
    ids = np.broadcast_to(np.arange(lp.shape[-1], dtype=np.int64), lp.shape)
    return Side(ids=ids, logprobs=lp, target=np.take_along_axis(lp, targets[:, None], -1)[:, 0], complete=True)


def topk_of_logits(logits: np.ndarray, k: int, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(topk_ids [.., K], topk_logprobs [.., K] sorted descending, target_logprobs [..]) from logits [.., V]."""
    lp = log_softmax(logits)
    ids = np.argsort(-lp, axis=-1, kind="stable")[..., :k]
    return ids.astype(np.int64), np.take_along_axis(lp, ids, -1), np.take_along_axis(lp, targets[..., None], -1)[..., 0]


def _h(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Generalised KL term a·log(a/b) + b − a ≥ 0 (0 at a = b; b at a = 0; inf at b = 0 < a).

    Summed over a partition whose masses both sum to 1 it is the KL of the coarse distributions, and
    no term is negative, so near-identical distributions (KL ~ 1e-12) do not drown in cancellation.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d = np.log(b) - np.log(a)
        series = 0.5 * d * d * (1 + d / 3 * (1 + d / 4 * (1 + d / 5 * (1 + d / 6))))
        g = np.where(np.abs(d) < _SERIES_BELOW, series, np.expm1(d) - d)
        out = a * g
    out = np.where(a == 0, b, out)
    return np.where((b == 0) & (a > 0), np.inf, out)


def _align(ref: Side, cand: Side) -> tuple[np.ndarray, np.ndarray]:
    """Log-probs of both sides on the union of their ids: [P, S] each, NaN where a side does not know.

    Slots that duplicate an id already present are NaN on both sides (ignored).
    """
    if ref.complete or cand.complete:
        vocab = (ref if ref.complete else cand).logprobs.shape[-1]
        return _dense(ref, vocab), _dense(cand, vocab)
    rows, kr = ref.ids.shape
    kc = cand.ids.shape[1]
    out_r = np.full((rows, kr + kc), np.nan)
    out_c = np.full((rows, kr + kc), np.nan)
    step = max(1, _MATCH_ELEMENTS // max(kr * kc, 1))
    for start in range(0, rows, step):
        sl = slice(start, min(rows, start + step))
        ir, ic = ref.ids[sl], cand.ids[sl]
        match = (ir[:, :, None] == ic[:, None, :]) & (ir >= 0)[:, :, None] & (ic >= 0)[:, None, :]
        in_c = match.any(-1)
        matched = np.take_along_axis(cand.logprobs[sl].astype(np.float64), match.argmax(-1), -1)
        out_r[sl, :kr] = np.where(ir >= 0, ref.logprobs[sl], np.nan)
        out_c[sl, :kr] = np.where(in_c & (ir >= 0), matched, np.nan)
        only_c = (ic >= 0) & ~match.any(-2)
        out_c[sl, kr:] = np.where(only_c, cand.logprobs[sl], np.nan)
    return out_r, out_c


def _dense(side: Side, vocab: int) -> np.ndarray:
    if side.complete:
        return np.asarray(side.logprobs, dtype=np.float64)
    out = np.full((side.ids.shape[0], vocab), np.nan)
    rows = np.broadcast_to(np.arange(side.ids.shape[0])[:, None], side.ids.shape)
    ok = (side.ids >= 0) & (side.ids < vocab)
    out[rows[ok], side.ids[ok]] = side.logprobs[ok]
    return out


@dataclass(frozen=True)
class _Masses:
    """Per-row facts of one side on the aligned slots (see docs/records.md for the names)."""

    p: np.ndarray  # probabilities, 0 where unknown
    known: np.ndarray  # bool: this side knows the slot
    missing: np.ndarray  # m = 1 − Σ known: mass on ids this side did not record
    room: np.ndarray  # m + rounding tolerance: the most the unrecorded ids can hold together
    cap: np.ndarray  # c = min(smallest recorded p, room): an unrecorded id has at most this
    tol: float


def _masses(lp: np.ndarray, side: Side) -> _Masses:
    known = ~np.isnan(lp)
    p = np.where(known, np.exp(np.where(known, lp, -np.inf)), 0.0)
    tol = 0.0 if side.complete else side.mass_tol
    missing = np.zeros(p.shape[0]) if side.complete else np.clip(1.0 - p.sum(-1), 0.0, 1.0)
    room = np.minimum(missing + tol, 1.0)
    smallest = np.where(known, p, np.inf).min(-1)
    return _Masses(p=p, known=known, missing=missing, room=room, cap=np.minimum(smallest, room), tol=tol)


def _nearest(mass: np.ndarray, tol: float, other: np.ndarray) -> np.ndarray:
    """The block mass within rounding (± ``tol``, never below 0) of ``mass`` closest to ``other``.

    h(a, b) is convex in a with its minimum 0 at a = b, so h(nearest, other) ≤ h(a, other) for every
    mass a the rounding allows: a lower bound stays certified. (Counting a mass ≤ tol as 0 did not:
    h(0, b) = b > h(a, b) for 0 < a < b, which raised the KL lower bound above the exact KL when τ is
    large next to the missing mass, as for a served top-K answer.)"""
    return np.clip(other, np.maximum(mass - tol, 0.0), mass + tol)


def _tv(r: _Masses, c: _Masses, both: np.ndarray, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Certified [lower, upper] on TV = Σ(p − q)₊ = Σ(q − p)₊ (docs/records.md §TV)."""
    diff = np.where(both, r.p - c.p, 0.0)
    pos, neg = np.clip(diff, 0, None).sum(-1), np.clip(-diff, 0, None).sum(-1)
    m_r = r.missing + np.where(x, r.p, 0.0).sum(-1)  # p-mass outside the shared support
    m_c = c.missing + np.where(z, c.p, 0.0).sum(-1)
    upper = np.minimum.reduce([np.ones_like(pos), pos + m_r, neg + m_c])
    x_hi = x & (r.p > c.cap[:, None])
    z_hi = z & (c.p > r.cap[:, None])
    lowers = [
        pos + m_r - m_c,
        neg + m_c - m_r,
        pos + np.where(x_hi, r.p, 0).sum(-1) - np.minimum(x_hi.sum(-1) * c.cap, c.missing),
        neg + np.where(z_hi, c.p, 0).sum(-1) - np.minimum(z_hi.sum(-1) * r.cap, r.missing),
        pos + m_r - np.minimum(z.sum(-1) * r.cap, r.missing) - c.missing,
        neg + m_c - np.minimum(x.sum(-1) * c.cap, c.missing) - r.missing,
    ]
    lower = np.clip(np.maximum.reduce(lowers), 0.0, None)
    return np.minimum(lower, upper), upper


def _kl(r: _Masses, c: _Masses, lp_r: np.ndarray, lp_c: np.ndarray, both: np.ndarray, x: np.ndarray,
        z: np.ndarray, cand_complete: bool) -> tuple[np.ndarray, np.ndarray]:
    """Certified [lower, upper] on KL(p‖q), p = ``r``, q = ``c`` (docs/records.md §KL)."""
    shared = np.where(both, _h(r.p, c.p), 0.0).sum(-1)
    p_x = np.where(x, r.p, 0.0).sum(-1)
    q_z = np.where(z, c.p, 0.0).sum(-1)
    m_r = r.missing
    out_r = m_r + p_x  # p's mass outside the shared support
    # Block X (p known, q ≤ cap each) vs the rest; minimise over the unknown Q_X in closed form.
    cap_x = np.minimum(x.sum(-1) * c.cap, c.room)
    cap_z = np.minimum(z.sum(-1) * r.cap, r.room)
    q_room = c.room + q_z
    q_x = np.clip(np.where(out_r > 0, q_room * p_x / np.where(out_r > 0, out_r, 1.0), 0.0), 0.0, cap_x)
    p_z = np.where(q_room > 0, out_r * q_z / np.where(q_room > 0, q_room, 1.0), 0.0)
    p_z = np.clip(p_z, 0.0, np.minimum(cap_z, m_r))
    # Rest blocks take the most mass the other side can have there (room = m + tol): that can only
    # lower f = a·log(a/b); h's linear term then overstates by at most tol, subtracted at the end.
    rest_x = np.clip(q_room - q_x, 0.0, None)
    g_x = _h(p_x, q_x) + _h(_nearest(m_r, r.tol + c.tol, rest_x), rest_x)
    g_z = _h(p_z, q_z) + _h(_nearest(p_x + (m_r - p_z), r.tol + c.tol, c.room), c.room)
    lower = np.clip(shared + np.maximum(g_x, g_z) - (r.tol + c.tol), 0.0, None)
    if not cand_complete:
        return lower, np.full_like(lower, np.inf)
    # q known everywhere: p's unrecorded mass m_r sits on ids in Z, each p_i ≤ cap, q_i ≥ min_Z q.
    min_lq = np.where(z, lp_c, np.inf).min(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        # cap = 0: a recorded p is 0, so every unrecorded p is 0 too and Σ_Z h(0, q) = Q_Z.
        spread = (m_r > 0) & (r.cap > 0)
        tail = np.where(spread, m_r * (np.log(np.where(spread, r.cap, 1.0)) - min_lq) + q_z - m_r, q_z)
    return lower, np.maximum(shared + tail, lower)


def _osc(lp_r: np.ndarray, lp_c: np.ndarray, r: _Masses, c: _Masses, both: np.ndarray, x: np.ndarray,
         z: np.ndarray, exact: bool) -> tuple[np.ndarray, np.ndarray]:
    """Bounds on logit_osc = max δ − min δ, δ = log q − log p + const (shift-invariant)."""
    finite = both & np.isfinite(lp_r) & np.isfinite(lp_c)
    d = np.where(finite, lp_c - lp_r, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        hi_candidates = np.where(z & (r.cap[:, None] > 0), lp_c - np.log(r.cap)[:, None], -np.inf)
        lo_candidates = np.where(x & (c.cap[:, None] > 0), np.log(c.cap)[:, None] - lp_r, np.inf)
    hi = np.maximum(np.where(finite, d, -np.inf).max(-1), hi_candidates.max(-1))
    lo = np.minimum(np.where(finite, d, np.inf).min(-1), lo_candidates.min(-1))
    with np.errstate(invalid="ignore"):
        lower = np.where(np.isfinite(hi) & np.isfinite(lo), np.clip(hi - lo, 0.0, None), 0.0)
    upper = lower.copy() if exact else np.full_like(lower, np.inf)
    return lower, upper


def _top(lp: np.ndarray, ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(argmax id, top-1 − top-2 log-prob margin; inf when fewer than two ids are known)."""
    filled = np.where(np.isnan(lp), -np.inf, lp)
    order = np.argsort(-filled, axis=-1, kind="stable")[:, :2]
    best = np.take_along_axis(filled, order, -1)
    margin = best[:, 0] - best[:, 1] if best.shape[1] > 1 else np.full(lp.shape[0], np.inf)
    top = order[:, 0] if ids is None else np.take_along_axis(ids, order[:, :1], -1)[:, 0]
    return top, np.where(np.isfinite(best[:, -1]), margin, np.inf)


def topk_metrics(ref: Side, cand: Side, *, tie_margin: float = DEFAULT_TIE_MARGIN) -> dict[str, np.ndarray]:
    """Per-position metrics at P positions from (possibly top-k only) log-probs of both kernels.

    Returns name → float64 [P]: the exact ``log_ratio``, ``abs_log_ratio``, ``argmax_agree``,
    ``nonfinite``, ``tie_flip`` and ``ref_argmax``, and ``NAME_lower``/``NAME_upper`` for every name
    in ``BOUNDED_METRICS``. Positions with a non-finite record (NaN, +inf, or a target log-prob of −inf
    on one side only) get NaN metrics, so every clause on them fails loudly; ``nonfinite`` counts them.
    """
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return _metrics(ref, cand, tie_margin)


def _metrics(ref: Side, cand: Side, tie_margin: float) -> dict[str, np.ndarray]:
    lp_r, lp_c = _align(ref, cand)
    r, c = _masses(lp_r, ref), _masses(lp_c, cand)
    both, x, z = r.known & c.known, r.known & ~c.known, c.known & ~r.known
    out: dict[str, np.ndarray] = {}
    out["tv_lower"], out["tv_upper"] = _tv(r, c, both, x, z)
    out["kl_lower"], out["kl_upper"] = _kl(r, c, lp_r, lp_c, both, x, z, cand.complete)
    out["kl_rev_lower"], out["kl_rev_upper"] = _kl(c, r, lp_c, lp_r, both, z, x, ref.complete)
    exact = ref.complete and cand.complete
    out["logit_osc_lower"], out["logit_osc_upper"] = _osc(lp_r, lp_c, r, c, both, x, z, exact)
    # ‖δ‖∞ ≥ (max δ − min δ)/2 for any additive constant; the constant itself is not recorded.
    out["logit_drift_lower"] = out["logit_osc_lower"] / 2
    out["logit_drift_upper"] = np.full_like(out["tv_lower"], np.inf)
    t_r, t_c = np.asarray(ref.target, np.float64), np.asarray(cand.target, np.float64)
    out["log_ratio"] = t_r - t_c
    out["abs_log_ratio"] = np.abs(out["log_ratio"])
    top_r, margin = _top(lp_r, None if (ref.complete or cand.complete) else _union_ids(ref, cand))
    top_c, _ = _top(lp_c, None if (ref.complete or cand.complete) else _union_ids(ref, cand))
    agree = top_r == top_c
    out["argmax_agree"] = agree.astype(np.float64)
    out["tie_flip"] = (~agree & (margin < tie_margin)).astype(np.float64)
    out["ref_argmax"] = top_r.astype(np.float64)
    bad_records = (np.isnan(ref.logprobs) | np.isposinf(ref.logprobs)) & (ref.ids >= 0)
    bad_cand = (np.isnan(cand.logprobs) | np.isposinf(cand.logprobs)) & (cand.ids >= 0)
    bad_target = (np.isnan(t_r) | np.isnan(t_c) | np.isposinf(t_r) | np.isposinf(t_c)
                  | (np.isneginf(t_r) != np.isneginf(t_c)))
    nonfinite = bad_records.sum(-1) + bad_cand.sum(-1) + bad_target
    out["nonfinite"] = nonfinite.astype(np.float64)
    bad = nonfinite > 0
    if bad.any():
        for name in (*[f"{m}_{s}" for m in BOUNDED_METRICS for s in ("lower", "upper")], "log_ratio", "abs_log_ratio"):
            out[name] = np.where(bad, np.nan, out[name])
    return out


def _union_ids(ref: Side, cand: Side) -> np.ndarray:
    """Token id of every aligned slot in the top-k/top-k layout of ``_align``."""
    return np.concatenate([ref.ids, cand.ids], axis=-1)


__all__ = ["BOUNDED_METRICS", "EXACT_METRICS", "Side", "log_softmax", "side_from_logits", "topk_of_logits",
           "topk_metrics"]
