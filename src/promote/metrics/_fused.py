"""Fused per-position divergence kernel (numba): one loop nest per row instead of ~30 tensor passes.

Why numba: the metrics must be both exact (float64-grade, see distribution.py) and fast (≥ 8× the
naive float64 torch version, ≤ 5× the cost of a bare ``torch.exp`` over both inputs;
bench/bench_metrics.py). Tensor libraries run each elementwise op as its own pass over memory;
fusing them needs a compiler. The exp, the series and the logit reader are in _numba_math.py.

All element arithmetic is float64 on float32 (or wider) inputs: z_c − z_r is then exact, and the
KL/TV formulas of distribution.py sum non-negative terms and take small differences by series.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from promote.metrics._numba_math import (
    JIT_FLAGS,
    exp_nonpositive,
    g_any,
    g_series,
    g_short,
    log1p_minus_x,
    widen,
    xlog1p_minus_x,
)
from promote.metrics._row_scans import finite_max_except, first_index_of, row_ranges

# numba keys a cached function on its own file's content, not on the functions it inlines from other files:
# this hash of _numba_math.py and _row_scans.py (held equal by tests/test_kernel_cache.py) makes any change
# there a change here, so numba drops kernels compiled against the old helpers instead of loading them.
HELPERS_SHA256 = "b2e45d5451ec28c51e03532dadfc6499b8d2daf63768c7d7264fb7796b9bf32c"


@numba.njit(**JIT_FLAGS)
def _weighted_terms(a, b, m_r, anchor, reach, weights, expm1_u, masked):  # noqa: ANN001, ANN202
    """Pass 2, one read of the row: the unnormalised reference weights w_i = e^{z_i − max} (into ``weights``),
    u_i = δ_i − anchor (δ anchored at the reference argmax, where u = 0, or at the middle of its range, so a
    large common shift costs no precision), t_i = e^u − 1 = u + g(u) (into ``expm1_u``, for the total
    variation) and the sums every divergence is built from: Σw, Σw·u, Σw·g(u), Σw·u·t, Σw·x and Σw·t·x
    (x = z_i − max: the entropies).
    ``masked``: the row may hold −inf on both sides (weight 0); each call site passes a constant, so LLVM can
    drop the test where it inlines the call."""
    s = 0.0
    su = 0.0
    sg = 0.0
    sut = 0.0
    sx = 0.0
    sxt = 0.0
    # Two copies of one loop on purpose: a per-element choice of series costs ~10 % of the whole kernel
    # (bench/bench_metrics.py) and LLVM does not unswitch it; the common case (fp32 noise, bf16: |u| ≤ 1/4)
    # gets a loop with the shortest series only. (A third loop, in a function of its own, with a six-term series
    # for |u| ≤ 1/64 gained nothing beyond run-to-run noise and made results differ in the last ulp between Ray's
    # actors and the driver: tests/test_scale_ray.py.)
    if reach <= 0.25:
        for i in range(a.shape[0]):
            ar = widen(a[i])
            live = ar != -np.inf if masked else True
            x = ar - m_r if live else 0.0
            w = exp_nonpositive(x) if live else 0.0
            u = (widen(b[i]) - ar) - anchor if live else 0.0
            g = g_short(u)
            t = u + g
            weights[i] = w
            expm1_u[i] = t
            s += w
            su += w * u
            sg += w * g
            sut += w * (u * t)
            sx += w * x
            sxt += w * (t * x)
    else:
        series_only = reach <= 1.0
        for i in range(a.shape[0]):
            ar = widen(a[i])
            live = ar != -np.inf if masked else True
            x = ar - m_r if live else 0.0
            w = exp_nonpositive(x) if live else 0.0
            u = (widen(b[i]) - ar) - anchor if live else 0.0
            g = g_series(u) if series_only else g_any(u)
            t = u + g
            weights[i] = w
            expm1_u[i] = t
            s += w
            su += w * u
            sg += w * g
            sut += w * (u * t)
            sx += w * x
            sxt += w * (t * x)
    return s, su, sg, sut, sx, sxt


@numba.njit(**JIT_FLAGS)
def _log_ratio_terms(a, b, m_r, shift, reach, weights, expm1_u, masked):  # noqa: ANN001, ANN202
    """Pass 3: u = δ − μ; returns Σw·g(u) (KL(p‖q) = log1p(E_p[g(u)]), g(u) = e^u − 1 − u ≥ 0),
    Σw·u·t (the reverse KL) and Σw·(1 + t)·(z_i − max) (the candidate's entropy), keeping
    t = e^u − 1 = u + g(u) in ``expm1_u`` for the total variation."""
    acc = 0.0
    acc_ut = 0.0
    sqx = 0.0
    # Two copies of one loop on purpose: a per-element choice of series costs ~10 % of the whole
    # kernel (bench/bench_metrics.py), and LLVM does not unswitch it; the common case (fp32 noise,
    # bf16: |u| ≤ 1/4) gets a loop with the shortest series only.
    if reach <= 0.25:
        for i in range(a.shape[0]):
            ar = widen(a[i])
            live = ar != -np.inf if masked else True
            u = (widen(b[i]) - ar) - shift if live else 0.0
            g = g_short(u)
            t = u + g
            expm1_u[i] = t
            w = weights[i]
            acc += w * g
            acc_ut += w * (u * t)
            sqx += w * (1.0 + t) * (ar - m_r if live else 0.0)
    else:
        series_only = reach <= 1.0
        for i in range(a.shape[0]):
            ar = widen(a[i])
            live = ar != -np.inf if masked else True
            u = (widen(b[i]) - ar) - shift if live else 0.0
            g = g_series(u) if series_only else g_any(u)
            t = u + g
            expm1_u[i] = t
            w = weights[i]
            acc += w * g
            acc_ut += w * (u * t)
            sqx += w * (1.0 + t) * (ar - m_r if live else 0.0)
    return acc, acc_ut, sqx


@numba.njit(**JIT_FLAGS)
def _total_variation(weights, expm1_u, c1, c0):  # noqa: ANN001, ANN202
    """Pass 4: Σw·|c1·t + c0| (twice the TV times Σw, with c1 = e^{−KL}, c0 = expm1(−KL))."""
    tv = 0.0
    for i in range(weights.shape[0]):
        tv += weights[i] * abs(c1 * expm1_u[i] + c0)
    return tv


# Below this ratio of E_p[g(u)] to KL (both ≥ 0), KL = E_p[g(u)] + (log1p(y) − y) is a difference of near
# equals: the anchor sat far from the p-weighted mean of δ (at the argmax, where u = 0, E_p[u]² ≤ Var_p(u)/p_max
# bounds the loss by V, but the series' truncation, ~1e-11 relative at |u| = 1/4, times V could reach 1e-6; at
# the middle of δ's range nothing bounds it), or |u| was so large that E_p[g] and y are huge. Such rows are
# scored again around the mean (``_centred_divergences``), exact to ~1e-13.
_RECENTRE = 64.0


@numba.njit(**JIT_FLAGS)
def _centred_divergences(a, b, m_r, shift, d_hi, d_lo, s, weights, expm1_u, masked):  # noqa: ANN001, ANN202
    """(KL, reverse KL, TV, E_q[x], log Z) from a second read of the row with u centred at the p-weighted mean
    (E_p[u] = 0, so KL = log1p(E_p[g(u)]) is a sum of non-negative terms), for rows the anchored sums
    cannot score to full precision (``_RECENTRE``); ``weights`` are pass 2's."""
    reach = max(abs(d_hi - shift), abs(d_lo - shift))
    acc, acc_ut, sqx = _log_ratio_terms(a, b, m_r, shift, reach, weights, expm1_u, masked)
    kl = math.log1p(acc / s)
    # TV = ½·E_p|e^{u − KL} − 1| with e^{u − KL} − 1 = e^{−KL}·t + expm1(−KL); and
    # KL(q‖p) = E_p[e^{u−KL}·(u − KL)] = e^{−KL}·E_p[u·t] − KL (using E_p[u] = 0).
    c1 = math.exp(-kl)
    tv = _total_variation(weights, expm1_u, c1, math.expm1(-kl)) / s
    return kl, c1 * acc_ut / s - kl, tv, c1 * sqx / s, kl


@numba.njit(**JIT_FLAGS)
def _divergences(a, b, y, m_r, d_hi, d_lo, am_r, o, weights, expm1_u, masked):  # noqa: ANN001, ANN202
    """KL both ways, TV, the log-ratio at ``y`` and both entropies of a finite row into ``o``.

    With Z = E_p[e^u] = 1 + y_m (y_m = E_p[u] + E_p[g(u)]):
    KL(p‖q) = log Z − E_p[u] = E_p[g] + (log1p(y_m) − y_m),
    KL(q‖p) = E_p[u·e^u] / Z − log Z = (E_p[u·t] − E_p[g] − ((1 + y_m)·log1p(y_m) − y_m)) / Z,
    TV = ½·E_p|t − y_m| / Z, log p_y − log q_y = log Z − u_y: the small differences are series, never
    differences of rounded logs. Where E_p[g] dwarfs the KL it yields (a far anchor, or |u| so large that
    E_p[g] and y_m are huge), KL is a difference of near equals: those rows are read again, centred."""
    anchor = widen(b[am_r]) - widen(a[am_r])
    reach = max(abs(d_hi - anchor), abs(d_lo - anchor))  # largest |u| in the row
    half = 0.5 * (d_hi - d_lo)  # … and anchored at the middle of δ's range instead
    if (reach > 0.25 >= half) or (reach > 1.0 >= half):  # the series tiers of _weighted_terms
        anchor = 0.5 * (d_hi + d_lo)  # a shorter series pays; a far anchor is caught by _RECENTRE
        reach = half
    s, su, sg, sut, sx, sxt = _weighted_terms(a, b, m_r, anchor, reach, weights, expm1_u, masked)
    o[11] = math.log(s) - sx / s  # reference entropy, nats
    y_m = (su + sg) / s
    e_g = sg / s
    kl = e_g + log1p_minus_x(y_m)
    if kl * _RECENTRE < e_g:
        shift = anchor + su / s
        kl, kl_rev, tv, e_q_x, log_z = _centred_divergences(a, b, m_r, shift, d_hi, d_lo, s, weights, expm1_u,
                                                            masked)
    else:
        shift = anchor
        z = 1.0 + y_m
        kl_rev = max((sut / s - e_g - xlog1p_minus_x(y_m)) / z, 0.0)
        tv = _total_variation(weights, expm1_u, 1.0, -y_m) / (s * z)
        e_q_x = (sx + sxt) / (s * z)
        log_z = math.log1p(y_m)
    u_y = (widen(b[y]) - widen(a[y])) - shift
    o[0] = kl
    o[1] = kl_rev
    # Candidate entropy from the same terms: log q_i = log p_i + u_i − log Z.
    o[12] = math.log(s) - e_q_x - kl_rev
    o[2] = 0.5 * tv
    o[5] = log_z - u_y
    o[6] = abs(log_z - u_y)


@numba.njit(inline="never", **JIT_FLAGS)
def _score_row(a, b, y, tie_margin, o, weights, expm1_u):  # noqa: ANN001, ANN202
    """One row's ``COLUMNS`` into ``o``; ``weights`` and ``expm1_u`` [V] are scratch."""
    vocab = a.shape[0]
    # Pass 1: maxima and logit-difference range in one vectorised pass for the common all-finite row;
    # masks (−inf on both sides) and NaN/Inf take the careful loop, which also counts non-finite entries.
    special, m_r, m_c, d_hi, d_lo, lo_r, lo_c = row_ranges(a, b)
    bad = 0
    if not special:
        f_hi_r, f_lo_r, f_hi_c, f_lo_c = m_r, lo_r, m_c, lo_c
    else:
        m_r = -np.inf
        m_c = -np.inf
        d_hi = -np.inf
        d_lo = np.inf
        # Ranges with every non-finite entry counted as 0 (is_degenerate's rule, and |z_r| over finite z).
        f_hi_r = -np.inf
        f_lo_r = np.inf
        f_hi_c = -np.inf
        f_lo_c = np.inf
        for i in range(vocab):
            ar = widen(a[i])
            ac = widen(b[i])
            both_masked = ar == -np.inf and ac == -np.inf
            fin_r = math.isfinite(ar)
            fin_c = math.isfinite(ac)
            finite = fin_r and fin_c
            bad += 0 if (both_masked or finite) else 1
            m_r = max(m_r, ar)
            m_c = max(m_c, ac)
            d = ac - ar
            d_hi = max(d_hi, d if finite else -np.inf)
            d_lo = min(d_lo, d if finite else np.inf)
            fr = ar if fin_r else 0.0
            fc = ac if fin_c else 0.0
            f_hi_r = max(f_hi_r, fr)
            f_lo_r = min(f_lo_r, fr)
            f_hi_c = max(f_hi_c, fc)
            f_lo_c = min(f_lo_c, fc)
    am_r = first_index_of(a, m_r)
    am_c = first_index_of(b, m_c)
    agree = am_r == am_c
    flip_at_tie = 0.0
    if not agree:
        if not special:
            second = finite_max_except(a, am_r)
        else:
            second = -np.inf
            for i in range(vocab):
                if i != am_r:
                    second = max(second, widen(a[i]))
        flip_at_tie = 1.0 if m_r - second < tie_margin else 0.0
    o[7] = 1.0 if agree else 0.0
    o[8] = bad
    o[9] = flip_at_tie
    o[10] = am_r
    o[13] = 1.0 if (f_hi_r == f_lo_r and f_hi_c == f_lo_c) else 0.0
    o[14] = max(abs(f_hi_r), abs(f_lo_r))
    o[15] = am_c
    if bad > 0:
        for c in range(7):
            o[c] = np.nan
        o[11] = np.nan
        o[12] = np.nan
        return
    o[3] = max(abs(d_hi), abs(d_lo))
    o[4] = d_hi - d_lo
    # Passes 2-3. Rows without a vocabulary mask (not special: every entry finite) call them with
    # masked=False, a constant: no per-element mask test is needed there.
    if special:
        _divergences(a, b, y, m_r, d_hi, d_lo, am_r, o, weights, expm1_u, True)
    else:
        _divergences(a, b, y, m_r, d_hi, d_lo, am_r, o, weights, expm1_u, False)


def new_scratch(vocab: int) -> np.ndarray:
    """Scratch rows for ``fused_token_metrics``: [threads, 2, V] float64 (each thread's reference weights and
    e^u − 1). Allocated by the caller, once for as many rows as it can, because allocating them per row cost
    a page fault per 4 KiB at V ≥ 128k: the allocator returns a block that large to the kernel when it is freed
    and maps fresh zeroed pages for the next row (at V = 151 936 the kernel spent as long in the system as in
    its own arithmetic, docs/performance.md)."""
    return np.empty((numba.get_num_threads(), 2, vocab))


@numba.njit(parallel=True, **JIT_FLAGS)
def fused_token_metrics(zr, zc, index, targets, tie_margin, out, scratch):  # noqa: ANN001, ANN201
    """Per-row metrics into ``out`` [R, 16] float64, columns as in ``COLUMNS``, for rows ``index`` [R] of
    ``zr``/``zc`` [N, V] (float32, float64, bfloat16 bits as uint16 or float16 bits as int16: torch bf16/fp16
    tensors read in place); ``scratch`` is ``new_scratch(V)``, its first axis how many blocks of rows run in
    parallel.

    Besides the metrics, three facts consumers would otherwise take from the logits in passes of their
    own: ``degenerate`` (both rows constant once non-finite entries count as 0: nothing compared),
    ``ref_abs_max`` (largest finite |z_r|, 0 if none: the outputs' float resolution) and ``cand_argmax``."""
    rows = index.shape[0]
    blocks = min(rows, scratch.shape[0])
    # One contiguous block of rows per thread, as numba's static schedule split the rows before.
    for block in numba.prange(blocks):
        weights = scratch[block, 0]
        expm1_u = scratch[block, 1]
        for row in range(block * rows // blocks, (block + 1) * rows // blocks):
            _score_row(zr[index[row]], zc[index[row]], targets[row], tie_margin, out[row], weights, expm1_u)

COLUMNS = ("kl", "kl_rev", "tv", "logit_drift", "logit_osc", "log_ratio", "abs_log_ratio", "argmax_agree",
           "nonfinite", "tie_flip", "ref_argmax", "ref_entropy", "cand_entropy", "degenerate", "ref_abs_max",
           "cand_argmax")
