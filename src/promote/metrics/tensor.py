"""Generic tensor metrics for non-LM models (docs/tensors.md), stateless.

Two jobs, both free of torch and of any stage:

1. **Key-path globs.** Outputs are named by key path (``keypaths.flatten_outputs``: ``logits``,
   ``hidden_states[3]``); ``compile_glob`` matches a clause's ``output`` pattern against them.
2. **Per-element and per-tensor values** of a candidate against the reference. Everything is cast to
   float64 *before* subtracting (Polygraphy's lesson: an fp16 difference taken in fp16 is itself
   rounded), and every edge case is explicit: a zero reference, identical tensors, non-finite
   values. The stage decides what is vacuous or failing; these functions only report the facts.

Rows are samples: arrays are ``[B, n]`` (one flattened tensor per sample).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from promote.vocabulary import DEFAULT_VACUOUS_BELOW

DEFAULT_REL_FLOOR_FACTOR = 1e-6  # default floor: 1e-6 · max|r| of the sample's tensor
# Precision p (significand bits, implicit bit included) and smallest frexp exponent of the normal range.
_FLOAT_FORMATS = {"bfloat16": (8, -125), "float16": (11, -13), "float32": (24, -125), "float64": (53, -1021)}


# ----------------------------------------------------------------------------- key-path globs


def compile_glob(pattern: str) -> Callable[[str], bool]:
    """A key-path matcher: ``*`` matches any run of characters (dots and brackets too), ``?`` one
    character, everything else literally — so ``hidden_states[3]`` means itself, unlike fnmatch."""
    regex = re.compile("".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern))
    return lambda path: regex.fullmatch(path) is not None


# ----------------------------------------------------------------------------- dtypes and ulps


def dtype_kind(name: str) -> str:
    """numpy kind letter of a dtype name, including ``bfloat16`` (which numpy lacks): f, i, u, b, c."""
    if name == "bfloat16":
        return "f"
    return np.dtype(name).kind


def spacing(magnitude: np.ndarray, dtype: str) -> np.ndarray:
    """Distance from |x| to the next representable value of ``dtype`` (one ulp at x), as float64.

    float16/32/64 use ``np.spacing``; bfloat16 (8-bit significand, float32's exponent range) uses the
    same rule, ulp = 2^(e − p) with x = m·2^e, m ∈ [½, 1), clamped at the subnormal spacing.
    Integers and booleans have ulp 1.
    """
    magnitude = np.abs(np.asarray(magnitude, dtype=np.float64))
    kind = dtype_kind(dtype)
    if kind in "iub":
        return np.ones_like(magnitude)
    if kind == "c":
        dtype = np.finfo(np.dtype(dtype)).dtype.name
    if dtype != "bfloat16":
        with np.errstate(over="ignore", invalid="ignore"):  # beyond the dtype's range: inf → NaN spacing
            return np.spacing(magnitude.astype(dtype)).astype(np.float64)
    precision, min_exp = _FLOAT_FORMATS[dtype]
    _, exponent = np.frexp(magnitude)
    exponent = np.where(magnitude == 0, min_exp, np.maximum(exponent, min_exp))
    out = np.ldexp(1.0, exponent - precision)
    return np.where(np.isfinite(magnitude), out, np.nan)


# ----------------------------------------------------------------------------- values


@dataclass
class ElementValues:
    """Per-element facts for ``[B, n]`` rows; metric arrays are NaN where ``valid`` is False."""

    abs: np.ndarray
    rel: np.ndarray
    ulp: np.ndarray
    nonfinite: np.ndarray  # 0, 1 or 2: non-finite values at this element (reference + candidate)
    valid: np.ndarray  # both sides finite
    matching: np.ndarray  # not valid, but both sides the same ±inf (a mask, e.g. −inf attention scores)
    floored: np.ndarray  # |r| was below the relative-error floor, so the floor was the denominator


def _as_float64(x: np.ndarray) -> np.ndarray:
    if np.iscomplexobj(x):
        return np.asarray(x, dtype=np.complex128)
    return np.asarray(x, dtype=np.float64)


def row_floor(ref_abs: np.ndarray, rel_floor: float | None) -> np.ndarray:
    """Relative-error floor per row: the clause's ``rel_floor``, or 1e-6 · max|r| over the row's finite
    values — per sample, so it does not depend on how samples were batched."""
    if rel_floor is not None:
        return np.full(ref_abs.shape[0], float(rel_floor))
    finite = np.where(np.isfinite(ref_abs), ref_abs, 0.0)
    return DEFAULT_REL_FLOOR_FACTOR * (finite.max(axis=1) if finite.shape[1] else np.zeros(finite.shape[0]))


def element_metrics(ref: np.ndarray, cand: np.ndarray, *, ref_dtype: str, rel_floor: float | None = None
                    ) -> ElementValues:
    """abs = |c − r|; rel = |c − r| / max(|r|, floor); ulp = |c − r| / ulp_{ref dtype}(|r|); nonfinite.

    A zero denominator (reference 0 and floor 0) gives rel 0 where c = r and +inf elsewhere: a
    candidate that is non-zero where the whole reference row is zero has unbounded relative error.
    """
    if ref.shape != cand.shape or ref.ndim != 2:
        raise ValueError(f"expected two [B, n] arrays of one shape, got {ref.shape} and {cand.shape}")
    r, c = _as_float64(ref), _as_float64(cand)
    finite_r, finite_c = np.isfinite(r), np.isfinite(c)
    valid = finite_r & finite_c
    with np.errstate(invalid="ignore", over="ignore"):
        matching = ~valid & (r == c)
        diff = np.abs(c - r)
    diff = np.where(valid, diff, np.nan)
    ref_abs = np.abs(r)
    floor = row_floor(ref_abs, rel_floor)[:, None]
    floored = valid & (ref_abs < floor)
    denom = np.maximum(ref_abs, floor)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rel = np.where(denom > 0, diff / np.where(denom > 0, denom, 1.0), np.where(diff == 0, 0.0, np.inf))
        ulp = diff / spacing(np.where(valid, ref_abs, 0.0), ref_dtype)
    rel = np.where(valid, rel, np.nan)
    ulp = np.where(valid, ulp, np.nan)
    nonfinite = (~finite_r).astype(np.float64) + (~finite_c).astype(np.float64)
    return ElementValues(abs=diff, rel=rel, ulp=ulp, nonfinite=nonfinite, valid=valid, matching=matching,
                         floored=floored)


def tensor_metrics(ref: np.ndarray, cand: np.ndarray, *, valid: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: cosine similarity, SQNR in dB, and whether both sides are all zero.

    Elements outside ``valid`` (non-finite pairs) count as 0 on both sides.
    - cosine = 1 − ½‖r/‖r‖ − c/‖c‖‖², which equals r·c / (‖r‖‖c‖) but is exactly 1 for identical
      tensors and never above 1 (the plain ratio rounds to 1 ± 2⁻⁵² either way, so a `min: 1` bound
      would flake); one all-zero side → 0.
    - sqnr = 10·log10(‖r‖² / ‖c − r‖²); identical rows → +inf; zero reference, non-zero candidate → −inf.
    Rows where both sides are all zero get NaN in both metrics and True in the third array: the
    caller excludes them (they compare nothing).
    """
    r, c = _as_float64(ref), _as_float64(cand)
    if valid is not None:
        r, c = np.where(valid, r, 0.0), np.where(valid, c, 0.0)
    diff = c - r
    # Scale each row before squaring so huge values cannot overflow the norms (ratios are scale-free).
    scale = np.maximum(np.abs(r).max(axis=1, initial=0.0), np.abs(c).max(axis=1, initial=0.0))
    scale = np.where(scale > 0, scale, 1.0)[:, None]
    rs, cs, ds = r / scale, c / scale, diff / scale
    nr = np.sqrt((np.abs(rs) ** 2).sum(axis=1))
    nc = np.sqrt((np.abs(cs) ** 2).sum(axis=1))
    noise = (np.abs(ds) ** 2).sum(axis=1)
    both_zero = (nr == 0) & (nc == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        unit_gap = rs / np.where(nr > 0, nr, 1.0)[:, None] - cs / np.where(nc > 0, nc, 1.0)[:, None]
        cosine = 1.0 - 0.5 * (np.abs(unit_gap) ** 2).sum(axis=1)
        cosine = np.where((nr == 0) ^ (nc == 0), 0.0, cosine)
        sqnr = np.where(noise == 0, np.inf, 10.0 * np.log10(nr**2 / noise))
    cosine = np.where(both_zero, np.nan, cosine)
    sqnr = np.where(both_zero, np.nan, sqnr)
    return cosine, sqnr, both_zero


@dataclass
class Range:
    """Running min, max and max|x| over the finite values of one side of one output (for vacuity)."""

    minimum: float = np.inf
    maximum: float = -np.inf
    max_abs: float = 0.0
    finite: int = 0

    def update(self, values: np.ndarray) -> None:
        x = _as_float64(values).ravel()
        x = x[np.isfinite(x)]
        if not x.size:
            return
        if np.iscomplexobj(x):
            x = np.abs(x)  # complex outputs: vacuity judged on magnitudes
        self.finite += x.size
        self.minimum = min(self.minimum, float(x.min()))
        self.maximum = max(self.maximum, float(x.max()))
        self.max_abs = max(self.max_abs, float(np.abs(x).max()))

    def merge(self, other: Range) -> Range:
        return Range(min(self.minimum, other.minimum), max(self.maximum, other.maximum),
                     max(self.max_abs, other.max_abs), self.finite + other.finite)

    @property
    def constant(self) -> bool:
        return self.finite > 0 and self.minimum == self.maximum


def vacuous_reason(ref: Range, cand: Range, *, below: float = DEFAULT_VACUOUS_BELOW) -> str | None:
    """Why comparing these two outputs proves nothing, or None: both all zero, both constant, or both
    below ``below`` in magnitude. No finite value at all is *not* vacuous — that is broken (it fails)."""
    if ref.finite == 0 or cand.finite == 0:
        return None
    if ref.max_abs == 0 and cand.max_abs == 0:
        return "both kernels output all zeros"
    if ref.constant and cand.constant:
        return f"both kernels output a constant (reference {ref.minimum:.6g}, candidate {cand.minimum:.6g})"
    if ref.max_abs < below and cand.max_abs < below:
        return (f"both kernels' outputs are tiny (max |x|: reference {ref.max_abs:.3g}, candidate "
                f"{cand.max_abs:.3g}, below vacuous_below = {below:g})")
    return None
