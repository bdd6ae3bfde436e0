"""Fused per-position divergence kernel (numba): one loop nest per row instead of ~30 tensor passes.

Why numba and a hand-written exp: the metrics must be both exact (float64-grade, see
distribution.py) and fast (≥ 8× the naive float64 torch version, ≤ 5× the cost of a bare
``torch.exp`` over both inputs; bench/bench_metrics.py). Tensor libraries run each elementwise op
as its own pass over memory; fusing them needs a compiler. llvmlite's wheels ship without SVML,
so ``math.exp`` would stay a scalar libm call; the small Cody–Waite + Taylor exp below is plain
arithmetic and a bit cast, which LLVM vectorises. It is accurate to a few ulp in float64.

All element arithmetic is float64 on float32 (or wider) inputs: z_c − z_r is then exact, and the
centred KL/TV formulas of distribution.py keep every term non-negative.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_X_MIN = -708.0  # below this e^x is treated as 0 (< 1e-307): keeps 2^k a normal number
_X_MAX = 709.0

_JIT = dict(nogil=True, cache=True, fastmath={"reassoc", "contract", "nsz", "arcp"}, error_model="numpy")


@intrinsic
def _bits_as_float(typingctx, bits):  # noqa: ANN001, ANN202 - numba intrinsic signature
    """Reinterpret an int32 bit pattern as float32 (a bfloat16 is the top half of a float32)."""

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


def _widen(x):  # noqa: ANN001, ANN202 - numba picks the implementation by type (below)
    """One logit as float64: a float widened, a uint16 read as the bits of a bfloat16."""
    return float(x)


@overload(_widen, inline="always")
def _widen_impl(x):  # noqa: ANN001, ANN202
    if isinstance(x, types.Integer):
        return lambda x: np.float64(_bits_as_float(np.int32(np.int64(x) << 16)))
    return lambda x: np.float64(x)


@intrinsic
def _bits_as_double(typingctx, bits):  # noqa: ANN001, ANN202 - numba intrinsic signature
    """Reinterpret an int64 bit pattern as float64 (2^k from its exponent field)."""

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@numba.njit(inline="always", **_JIT)
def _g_series(x):  # noqa: ANN001, ANN202
    """e^x − 1 − x by Taylor series for |x| ≤ 1 (truncation < 1e-13 relative)."""
    p = 1.0 / 355687428096000.0
    p = p * x + 1.0 / 20922789888000.0
    p = p * x + 1.0 / 1307674368000.0
    p = p * x + 1.0 / 87178291200.0
    p = p * x + 1.0 / 6227020800.0
    p = p * x + 1.0 / 479001600.0
    p = p * x + 1.0 / 39916800.0
    p = p * x + 1.0 / 3628800.0
    p = p * x + 1.0 / 362880.0
    p = p * x + 1.0 / 40320.0
    p = p * x + 1.0 / 5040.0
    p = p * x + 1.0 / 720.0
    p = p * x + 1.0 / 120.0
    p = p * x + 1.0 / 24.0
    p = p * x + 1.0 / 6.0
    p = p * x + 0.5
    return p * x * x


@numba.njit(inline="always", **_JIT)
def _g_short(x):  # noqa: ANN001, ANN202
    """e^x − 1 − x by Taylor series for |x| ≤ ln2/2 (truncation < 3e-12 relative; < 1e-11 at 1/4).

    Serves exp's reduced argument and the near-identical rows of pass 3: weights and g(u) need far
    less than float64 precision (a relative error ε moves KL by ~ε), so the series stops at ~1e-11,
    well inside the 1e-6 accuracy rule."""
    p = 1.0 / 3628800.0
    p = p * x + 1.0 / 362880.0
    p = p * x + 1.0 / 40320.0
    p = p * x + 1.0 / 5040.0
    p = p * x + 1.0 / 720.0
    p = p * x + 1.0 / 120.0
    p = p * x + 1.0 / 24.0
    p = p * x + 1.0 / 6.0
    p = p * x + 0.5
    return p * x * x


@numba.njit(inline="always", **_JIT)
def _exp(x):  # noqa: ANN001, ANN202
    """e^x, branch-free (vectorisable): range reduction x = k·ln2 + r, series on r, 2^k by bits."""
    xc = min(max(x, _X_MIN), _X_MAX)
    k = math.floor(xc * _LOG2E + 0.5)
    r = (xc - k * _LN2_HI) - k * _LN2_LO
    scale = _bits_as_double((np.int64(k) + 1023) << 52)
    out = (1.0 + r + _g_short(r)) * scale
    return out if x >= _X_MIN else 0.0


@numba.njit(inline="always", **_JIT)
def _g(x):  # noqa: ANN001, ANN202
    """e^x − 1 − x, relatively accurate for every x (series for |x| ≤ 1, exp beyond)."""
    near = _g_series(min(max(x, -1.0), 1.0))
    far = _exp(x) - 1.0 - x
    return near if abs(x) <= 1.0 else far


# For rows already checked to be finite only: full fast-math lets LLVM vectorise the max/min
# reductions (without `nnan` it must keep NaN semantics and stays scalar).
_FINITE_JIT = dict(nogil=True, cache=True, fastmath=True, error_model="numpy")


@numba.njit(inline="never", **_FINITE_JIT)
def _finite_row_ranges(a, b):  # noqa: ANN001, ANN202
    """max z_r, max z_c, max δ, min δ, min z_r, min z_c of a row whose entries are all finite (the
    caller checked)."""
    m_r = _widen(a[0])
    m_c = _widen(b[0])
    lo_r = m_r
    lo_c = m_c
    d_hi = m_c - m_r
    d_lo = d_hi
    for i in range(a.shape[0]):
        ar = _widen(a[i])
        ac = _widen(b[i])
        d = ac - ar
        m_r = max(m_r, ar)
        m_c = max(m_c, ac)
        lo_r = min(lo_r, ar)
        lo_c = min(lo_c, ac)
        d_hi = max(d_hi, d)
        d_lo = min(d_lo, d)
    return m_r, m_c, d_hi, d_lo, lo_r, lo_c


@numba.njit(parallel=True, **_JIT)
def fused_token_metrics(zr, zc, index, targets, tie_margin, out):  # noqa: ANN001, ANN201
    """Per-row metrics into ``out`` [R, 16] float64, columns as in ``COLUMNS``, for rows ``index`` [R] of
    ``zr``/``zc`` [N, V] (float32, float64, or bfloat16 bits as uint16: a torch bf16 tensor read in place).

    Besides the metrics, three facts consumers would otherwise take from the logits in passes of their
    own: ``degenerate`` (both rows constant once non-finite entries count as 0: nothing compared),
    ``ref_abs_max`` (largest finite |z_r|, 0 if none: the outputs' float resolution) and ``cand_argmax``."""
    rows = index.shape[0]
    vocab = zr.shape[1]
    for row in numba.prange(rows):
        a = zr[index[row]]
        b = zc[index[row]]
        # Pass 1: maxima, logit-difference range, non-finite count (masks: −inf on both sides).
        # One vectorised count tells whether the row is all finite (|x| < inf is false for NaN and ±Inf):
        # the common case takes a fast-math loop; masks and NaN/Inf take the careful loop.
        probe = 0.0
        for i in range(vocab):
            probe += (0.0 if abs(_widen(a[i])) < np.inf else 1.0) + (0.0 if abs(_widen(b[i])) < np.inf else 1.0)
        bad = 0
        if probe == 0.0:
            m_r, m_c, d_hi, d_lo, lo_r, lo_c = _finite_row_ranges(a, b)
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
                ar = _widen(a[i])
                ac = _widen(b[i])
                masked = ar == -np.inf and ac == -np.inf
                fin_r = math.isfinite(ar)
                fin_c = math.isfinite(ac)
                finite = fin_r and fin_c
                bad += 0 if (masked or finite) else 1
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
        # Bounded searches: a row of NaN never equals its "maximum", and an unbounded scan read past
        # the row (a segfault on an all-NaN candidate row, e.g. an fp16 overflow).
        am_r = 0
        while am_r < vocab - 1 and _widen(a[am_r]) != m_r:
            am_r += 1
        am_c = 0
        while am_c < vocab - 1 and _widen(b[am_c]) != m_c:
            am_c += 1
        agree = am_r == am_c
        flip_at_tie = 0.0
        if not agree:
            second = -np.inf
            for i in range(vocab):
                if i != am_r:
                    second = max(second, _widen(a[i]))
            flip_at_tie = 1.0 if m_r - second < tie_margin else 0.0
        o = out[row]
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
            continue
        o[3] = max(abs(d_hi), abs(d_lo))
        o[4] = d_hi - d_lo
        # Pass 2: unnormalised reference weights w_i = e^{z_i − max}; centre δ under p, anchored at
        # the reference argmax so a large common shift cannot cost precision.
        anchor = _widen(b[am_r]) - _widen(a[am_r])
        weights = np.empty(vocab)
        s = 0.0
        sd = 0.0
        sx = 0.0
        for i in range(vocab):
            ar = _widen(a[i])
            live = ar != -np.inf
            x = ar - m_r if live else 0.0
            w = _exp(x) if live else 0.0
            weights[i] = w
            s += w
            sd += w * ((_widen(b[i]) - ar) - anchor if live else 0.0)
            sx += w * x
        mu = sd / s
        o[11] = math.log(s) - sx / s  # reference entropy, nats
        # Pass 3: u = δ − μ; KL(p‖q) = log1p(E_p[g(u)]) with g(u) = e^u − 1 − u ≥ 0; keep
        # t = e^u − 1 = u + g(u) for pass 4, and E_p[u·t] for the reverse KL.
        shift = anchor + mu
        expm1_u = np.empty(vocab)
        acc = 0.0
        acc_ut = 0.0
        reach = max(abs(d_hi - shift), abs(d_lo - shift))  # largest |u| in the row
        # Two copies of one loop on purpose: a per-element choice of series costs ~10 % of the whole
        # kernel (bench/bench_metrics.py), and LLVM does not unswitch it; the common case (fp32 noise,
        # bf16: |u| ≤ 1/4) gets a loop with the shortest series only.
        if reach <= 0.25:
            for i in range(vocab):
                ar = _widen(a[i])
                u = (_widen(b[i]) - ar) - shift if ar != -np.inf else 0.0
                g = _g_short(u)
                t = u + g
                expm1_u[i] = t
                w = weights[i]
                acc += w * g
                acc_ut += w * (u * t)
        else:
            series_only = reach <= 1.0
            for i in range(vocab):
                ar = _widen(a[i])
                u = (_widen(b[i]) - ar) - shift if ar != -np.inf else 0.0
                g = _g_series(u) if series_only else _g(u)
                t = u + g
                expm1_u[i] = t
                w = weights[i]
                acc += w * g
                acc_ut += w * (u * t)
        kl = math.log1p(acc / s)
        # Pass 4: e^{u − KL} − 1 = e^{−KL}·t + expm1(−KL), so TV = ½·E_p|e^{−KL}·t + expm1(−KL)|
        # and KL(q‖p) = E_p[e^{u−KL}·(u − KL)] = e^{−KL}·E_p[u·t] − KL (using E_p[u] = 0).
        c1 = math.exp(-kl)
        c0 = math.expm1(-kl)
        tv = 0.0
        sqx = 0.0
        for i in range(vocab):
            w = weights[i]
            tv += w * abs(c1 * expm1_u[i] + c0)
            ar = _widen(a[i])
            sqx += w * (1.0 + expm1_u[i]) * (ar - m_r if ar != -np.inf else 0.0)
        y = targets[row]
        u_y = (_widen(b[y]) - _widen(a[y])) - shift
        kl_rev = c1 * acc_ut / s - kl
        o[0] = kl
        o[1] = kl_rev
        # Candidate entropy from the same terms: log q_i = log p_i + (u_i − KL), q_i = p_i·e^{−KL}(1 + t_i).
        o[12] = math.log(s) - c1 * sqx / s - kl_rev
        o[2] = 0.5 * tv / s
        o[5] = kl - u_y
        o[6] = abs(kl - u_y)


COLUMNS = ("kl", "kl_rev", "tv", "logit_drift", "logit_osc", "log_ratio", "abs_log_ratio", "argmax_agree",
           "nonfinite", "tie_flip", "ref_argmax", "ref_entropy", "cand_entropy", "degenerate", "ref_abs_max",
           "cand_argmax")
