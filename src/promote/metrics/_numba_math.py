"""The numba building blocks of the fused metric kernel (metrics/_fused.py): compile flags, reading a logit
of any stored type as float64, a vectorisable exp and e^x − 1 − x, finiteness tested on the stored bits,
and small stack buffers for running minima/maxima.

Why a hand-written exp: llvmlite's wheels ship without SVML, so ``math.exp`` would stay a scalar libm
call; the small Cody–Waite + Taylor exp below is plain arithmetic and a bit cast, which LLVM
vectorises. It is accurate to a few ulp in float64.

Importing this module also lets LLVM use 512-bit vectors on AVX-512 CPUs (``_prefer_full_vector_width``).
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import codegen as _numba_codegen
from numba.extending import intrinsic, overload


def _prefer_full_vector_width() -> None:
    """Let LLVM use 512-bit vectors where the CPU has AVX-512.

    LLVM's tuning for Skylake-SP and later Xeons prefers 256-bit vectors (``prefer-256-bit``: on the
    first AVX-512 parts a 512-bit instruction lowered the clock for everything around it). This kernel
    is arithmetic over whole rows, so on the Sapphire/Emerald Rapids development machine 512-bit
    vectors run it 1.7x faster (docs/performance.md). numba reads the target features once, when it
    first compiles or loads a function in the process, so this runs at import, before anything here
    compiles; a ``NUMBA_CPU_FEATURES`` the user set is left as it is, and where numba has already
    started (promote imported late into a process that compiled its own functions) the code simply
    stays at 256 bits: correct either way.
    """
    if numba.config.CPU_FEATURES is not None:
        return
    features = _numba_codegen.get_host_cpu_features()
    if "+avx512f" in features.split(",") and os.environ.get("PROMOTE_NUMBA_PREFER_256") != "1":
        numba.config.CPU_FEATURES = features + ",-prefer-256-bit"


_prefer_full_vector_width()

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_X_MIN = -708.0  # below this e^x is treated as 0 (< 1e-307): keeps 2^k a normal number
_X_MAX = 709.0

JIT_FLAGS = dict(nogil=True, cache=True, fastmath={"reassoc", "contract", "nsz", "arcp"}, error_model="numpy")


@intrinsic
def _bits_as_float(typingctx, bits):  # noqa: ANN001, ANN202 - numba intrinsic signature
    """Reinterpret an int32 bit pattern as float32 (a bfloat16 is the top half of a float32)."""

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@intrinsic
def _half_bits_as_double(typingctx, bits):  # noqa: ANN001, ANN202 - numba intrinsic signature
    """An int16 bit pattern read as an IEEE half (fp16) and widened to float64: exact. x86-64 CPUs since 2012
    (F16C) convert eight or sixteen at once; LLVM vectorises it like any other cast."""

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.DoubleType())

    return types.float64(types.int16), codegen


def widen(x):  # noqa: ANN001, ANN202 - numba picks the implementation by type (below)
    """One logit as float64: a float widened, a uint16 read as the bits of a bfloat16, an int16 as the bits
    of an fp16 (torch tensors of those dtypes, read in place)."""
    return float(x)


@overload(widen, inline="always")
def _widen_impl(x):  # noqa: ANN001, ANN202
    if x == types.int16:
        return lambda x: _half_bits_as_double(x)
    if isinstance(x, types.Integer):
        return lambda x: np.float64(_bits_as_float(np.int32(np.int64(x) << 16)))
    return lambda x: np.float64(x)


@intrinsic
def _bits_as_double(typingctx, bits):  # noqa: ANN001, ANN202 - numba intrinsic signature
    """Reinterpret an int64 bit pattern as float64 (2^k from its exponent field)."""

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@numba.njit(inline="always", **JIT_FLAGS)
def g_series(x):  # noqa: ANN001, ANN202
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


@numba.njit(inline="always", **JIT_FLAGS)
def g_short(x):  # noqa: ANN001, ANN202
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


@numba.njit(inline="always", **JIT_FLAGS)
def _exp_core(xc):  # noqa: ANN001, ANN202
    """e^xc for −708 ≤ xc ≤ 709, branch-free (vectorisable): range reduction xc = k·ln2 + r, series on r, 2^k
    by bits."""
    k = math.floor(xc * _LOG2E + 0.5)
    r = (xc - k * _LN2_HI) - k * _LN2_LO
    scale = _bits_as_double((np.int64(k) + 1023) << 52)
    return (1.0 + r + g_short(r)) * scale


@numba.njit(inline="always", **JIT_FLAGS)
def fast_exp(x):  # noqa: ANN001, ANN202
    """e^x for any x (0 below −708, e^709 above 709)."""
    out = _exp_core(min(max(x, _X_MIN), _X_MAX))
    return out if x >= _X_MIN else 0.0


@numba.njit(inline="always", **JIT_FLAGS)
def exp_nonpositive(x):  # noqa: ANN001, ANN202
    """e^x for x ≤ 0 (the reference weights e^{z − max}) with one clamp instead of two and no select: below
    −708 it gives e^−708 ≈ 3e−308 instead of 0, which a sum of weights ≥ 1 cannot see (~6 % of the kernel)."""
    return _exp_core(max(x, _X_MIN))


@numba.njit(inline="always", **JIT_FLAGS)
def g_any(x):  # noqa: ANN001, ANN202
    """e^x − 1 − x, relatively accurate for every x (series for |x| ≤ 1, exp beyond)."""
    near = g_series(min(max(x, -1.0), 1.0))
    far = fast_exp(x) - 1.0 - x
    return near if abs(x) <= 1.0 else far


@numba.njit(inline="always", **JIT_FLAGS)
def log1p_minus_x(y):  # noqa: ANN001, ANN202
    """log1p(y) − y, relatively accurate for tiny y too (series below |y| = 1/64: 1e-15)."""
    if abs(y) > 0.015625:
        return math.log1p(y) - y
    p = -1.0 / 10.0
    p = p * y + 1.0 / 9.0
    p = p * y - 1.0 / 8.0
    p = p * y + 1.0 / 7.0
    p = p * y - 1.0 / 6.0
    p = p * y + 1.0 / 5.0
    p = p * y - 1.0 / 4.0
    p = p * y + 1.0 / 3.0
    p = p * y - 1.0 / 2.0
    return p * y * y


@numba.njit(inline="always", **JIT_FLAGS)
def xlog1p_minus_x(y):  # noqa: ANN001, ANN202
    """(1 + y)·log1p(y) − y = Σ_{n≥2} (−y)^n / (n(n−1)), relatively accurate for tiny y too."""
    if abs(y) > 0.015625:
        return (1.0 + y) * math.log1p(y) - y
    p = 1.0 / 90.0
    p = -p * y + 1.0 / 72.0
    p = -p * y + 1.0 / 56.0
    p = -p * y + 1.0 / 42.0
    p = -p * y + 1.0 / 30.0
    p = -p * y + 1.0 / 20.0
    p = -p * y + 1.0 / 12.0
    p = -p * y + 1.0 / 6.0
    p = -p * y + 1.0 / 2.0
    return p * y * y


def bits_of(row):  # noqa: ANN001, ANN201 - numba picks the implementation by dtype (below)
    """A row's stored bits as unsigned integers (float32 → uint32, float64 → uint64, bf16 bits as they are);
    fp16 bits stay int16, which ``not_finite`` tests with the fp16 exponent."""
    return row


@overload(bits_of, inline="always")
def _bits_of_impl(row):  # noqa: ANN001, ANN202
    if row.dtype == types.float32:
        return lambda row: row.view(np.uint32)
    if row.dtype == types.float64:
        return lambda row: row.view(np.uint64)
    return lambda row: row


def not_finite(bits):  # noqa: ANN001, ANN201 - numba picks the implementation by type (below)
    """Whether stored bits are ±Inf or NaN (exponent all ones), tested as integers: unlike a float
    comparison, this survives full fast-math, so the range pass can test finiteness as it goes."""
    return bits


@overload(not_finite, inline="always")
def _not_finite_impl(bits):  # noqa: ANN001, ANN202
    if bits == types.uint64:
        mask64 = np.uint64(0x7FF0000000000000)
        return lambda bits: (bits & mask64) == mask64
    if bits == types.uint32:
        mask32 = np.uint32(0x7F800000)
        return lambda bits: (bits & mask32) == mask32
    if bits == types.int16:
        half = np.int16(0x7C00)  # fp16 bits: five exponent bits
        return lambda bits: (bits & half) == half
    mask16 = np.uint16(0x7F80)  # bfloat16 bits
    return lambda bits: (bits & mask16) == mask16

@intrinsic
def stack_f64(typingctx, count):  # noqa: ANN001, ANN201 - numba intrinsic signature
    """A pointer to ``count`` (a literal) float64 on the stack of the calling function, for
    ``numba.carray``. Why: running minima/maxima kept in lanes of a heap array (np.empty) stay in memory,
    because LLVM cannot tell the array from the row being read; a stack buffer it can keep in vector
    registers once the lane loop is unrolled (0.99 → 0.26 ns an element for the six ranges)."""
    if not isinstance(count, types.IntegerLiteral):
        return None
    size = count.literal_value

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        with builder.goto_entry_block():
            return builder.alloca(ir.DoubleType(), size=ir.Constant(ir.IntType(64), size))

    return types.CPointer(types.float64)(count), codegen
