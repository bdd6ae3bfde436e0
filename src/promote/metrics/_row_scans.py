"""Pass 1 of the fused metric kernel (metrics/_fused.py): a row's maxima, minima and logit-difference range in
one vectorised read, the first index of its maximum, and the runner-up for the tie test.

Why a module of its own: these scans are the min/max half of the kernel (integer finiteness tests, lanes kept
in registers), the arithmetic half is in _fused.py; _fused.py carries this file's hash with _numba_math.py's
(``HELPERS_SHA256``), because numba's cache would not notice a change here.
"""

from __future__ import annotations

import numba
import numpy as np

from promote.metrics._numba_math import JIT_FLAGS, bits_of, not_finite, stack_f64, widen

# Full fast-math lets LLVM vectorise the comparisons (without `nnan` it must keep NaN semantics); the
# functions compiled with it are only trusted on rows found all finite.
_FINITE_JIT = dict(nogil=True, cache=True, fastmath=True, error_model="numpy")

# LLVM does not vectorise a min/max *reduction* as numba writes it (a compare and a select carried
# from one element to the next): such a loop ran at ~1.3 ns an element, scalar. Keeping one running
# value per lane of a small stack array (``stack_f64``: kept in registers) makes each step an
# element-wise max over _LANES independent values, which it does vectorise (the six ranges: 1.7 →
# 0.3 ns an element); the lanes are reduced once at the end, the row's tail (< _LANES) folded into them.
_LANES = 16
_RANGE_SLOTS = 6 * _LANES  # six running values per lane (a literal for stack_f64)


@numba.njit(inline="always", **_FINITE_JIT)
def _widen_ranges(lanes, j, ar, ac):  # noqa: ANN001, ANN202
    """Lane j of the six running ranges takes one element (z_r = ar, z_c = ac)."""
    d = ac - ar
    lanes[0, j] = ar if ar > lanes[0, j] else lanes[0, j]
    lanes[1, j] = ac if ac > lanes[1, j] else lanes[1, j]
    lanes[2, j] = d if d > lanes[2, j] else lanes[2, j]
    lanes[3, j] = d if d < lanes[3, j] else lanes[3, j]
    lanes[4, j] = ar if ar < lanes[4, j] else lanes[4, j]
    lanes[5, j] = ac if ac < lanes[5, j] else lanes[5, j]


@numba.njit(inline="never", **_FINITE_JIT)
def row_ranges(a, b):  # noqa: ANN001, ANN202
    """(whether any entry is non-finite, max z_r, max z_c, max δ, min δ, min z_r, min z_c) of a row in one
    pass. The first is exact (integer tests on the stored bits); the ranges only mean something when it
    is False: under full fast-math a NaN or ±Inf leaves them undefined, and the caller takes the careful loop."""
    vocab = a.shape[0]
    a_bits = bits_of(a)
    b_bits = bits_of(b)
    lanes = numba.carray(stack_f64(_RANGE_SLOTS), (6, _LANES))
    first_r = widen(a[0])
    first_c = widen(b[0])
    for j in range(_LANES):
        lanes[0, j] = first_r
        lanes[1, j] = first_c
        lanes[2, j] = first_c - first_r
        lanes[3, j] = first_c - first_r
        lanes[4, j] = first_r
        lanes[5, j] = first_c
    special = False
    whole = vocab // _LANES * _LANES
    for start in range(0, whole, _LANES):
        for j in range(_LANES):
            special |= not_finite(a_bits[start + j]) | not_finite(b_bits[start + j])
            _widen_ranges(lanes, j, widen(a[start + j]), widen(b[start + j]))
    for i in range(whole, vocab):
        special |= not_finite(a_bits[i]) | not_finite(b_bits[i])
        _widen_ranges(lanes, i - whole, widen(a[i]), widen(b[i]))
    return (special, lanes[0].max(), lanes[1].max(), lanes[2].max(), lanes[3].min(), lanes[4].min(),
            lanes[5].min())


_BLOCK = 64


@numba.njit(inline="always", **JIT_FLAGS)
def first_index_of(a, value):  # noqa: ANN001, ANN202
    """The first i with a[i] == value, else the last index (a row of NaN never equals its "maximum";
    an unbounded search read past the row). Blocks of _BLOCK are tested with a vectorised count first,
    then searched one by one only where the count says the value is."""
    vocab = a.shape[0]
    whole = vocab // _BLOCK * _BLOCK
    for start in range(0, whole, _BLOCK):
        hits = 0
        for j in range(_BLOCK):
            hits += 1 if widen(a[start + j]) == value else 0
        if hits > 0:
            for j in range(_BLOCK):
                if widen(a[start + j]) == value:
                    return start + j
    for i in range(whole, vocab):
        if widen(a[i]) == value:
            return i
    return vocab - 1


@numba.njit(inline="never", **_FINITE_JIT)
def finite_max_except(a, skip):  # noqa: ANN001, ANN202
    """max over i != skip of a finite row (the runner-up logit for the tie test), lane by lane as above."""
    vocab = a.shape[0]
    lanes = numba.carray(stack_f64(_LANES), _LANES)
    lanes[:] = -np.inf
    whole = vocab // _LANES * _LANES
    for start in range(0, whole, _LANES):
        for j in range(_LANES):
            x = widen(a[start + j]) if start + j != skip else -np.inf
            lanes[j] = x if x > lanes[j] else lanes[j]
    for i in range(whole, vocab):
        x = widen(a[i]) if i != skip else -np.inf
        lanes[i - whole] = x if x > lanes[i - whole] else lanes[i - whole]
    return lanes.max()
