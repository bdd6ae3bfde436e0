"""Drift profile of a pass: per position bucket and per log-spaced value bin, how many positions had
how much drift (KL and logit oscillation), so the report can show *where* in the sequence drift
starts and whether its distribution is shifted or has a tail.

Why fixed bins: a histogram over fixed position buckets and fixed log-spaced value bins is plain
counts, so shards merge exactly by addition (``state.Mergeable``) and the report carries a few
hundred integers instead of every per-token value. Means are exact (``ExactSum`` of per-batch
sums); a bucket's p99 is read off the histogram as the upper edge of its bin, so it is at most one
bin (a factor 10^(1/8) ≈ 1.33) above the true value, never below it.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from promote.state import ExactSum, Field, Mergeable

PROFILE_METRICS = ("kl", "logit_osc")
PER_DECADE = 8
LOW_EXP, HIGH_EXP = -12, 4  # value bins span [1e-12, 1e4); below → underflow bin 0, above → last bin
N_VALUE_BINS = (HIGH_EXP - LOW_EXP) * PER_DECADE + 2
# Position buckets: width 32 up to 1024 (fine enough to see a RoPE bug past position 96), then
# doubling up to 2^20, then one open bucket. Fixed, so every shard uses the same edges.
POSITION_EDGES = (*range(0, 1024, 32), *(1 << k for k in range(10, 21)))


def value_bin_edges() -> np.ndarray:
    """Lower edges of bins 1..N-2 plus the top edge: 10^(LOW_EXP + i/PER_DECADE)."""
    return 10.0 ** (LOW_EXP + np.arange((HIGH_EXP - LOW_EXP) * PER_DECADE + 1) / PER_DECADE)


def value_bins(values: np.ndarray) -> np.ndarray:
    """Bin index of each finite value: 0 below 1e-12 (zeros, tiny negatives), N-1 from 1e4 up."""
    with np.errstate(divide="ignore", invalid="ignore"):
        index = np.floor((np.log10(np.maximum(values, 0.0)) - LOW_EXP) * PER_DECADE) + 1
    return np.clip(np.nan_to_num(index, nan=0.0, neginf=0.0, posinf=N_VALUE_BINS - 1), 0, N_VALUE_BINS - 1).astype(
        np.int64)


def bin_range(index: int) -> tuple[float, float]:
    """[low, high) of value bin ``index`` (0 and the last bin are open: 0 and inf)."""
    edges = value_bin_edges()
    low = 0.0 if index == 0 else float(edges[index - 1])
    high = math.inf if index >= N_VALUE_BINS - 1 else float(edges[index])
    return low, high


def position_buckets(positions: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(POSITION_EDGES), positions, side="right") - 1


class DriftProfile(Mergeable):
    """Counts per (position bucket, value bin), exact sums, maxima and non-finite counts per bucket."""

    KIND: ClassVar[str] = "drift_profile"
    VERSION: ClassVar[int] = 1
    STATE: ClassVar[tuple[Field, ...]] = (
        Field("counts", dict, "custom"), Field("sums", dict, "custom"), Field("maxima", dict, "custom"),
        Field("nonfinite", dict, "custom"),
    )

    def __init__(self, metrics: tuple[str, ...] = PROFILE_METRICS) -> None:
        self.metrics = tuple(metrics)
        self.reset()

    def reset(self) -> None:
        rows = len(POSITION_EDGES)
        self.counts = {m: np.zeros((rows, N_VALUE_BINS), dtype=np.int64) for m in self.metrics}
        self.sums = {m: [ExactSum() for _ in range(rows)] for m in self.metrics}
        self.maxima = {m: np.full(rows, -math.inf) for m in self.metrics}
        self.nonfinite = {m: np.zeros(rows, dtype=np.int64) for m in self.metrics}

    def update(self, values: dict[str, np.ndarray], positions: np.ndarray) -> None:
        """Add one batch: ``values[metric]`` per scored position, ``positions`` their index t."""
        buckets = position_buckets(positions)
        for metric in self.metrics:
            vals = values.get(metric)
            if vals is None:
                vals = values.get(f"{metric}_upper")  # top-k records: the certified upper bound
            if vals is None:
                continue
            vals = np.asarray(vals, dtype=np.float64)
            finite = np.isfinite(vals)
            np.add.at(self.nonfinite[metric], buckets[~finite], 1)
            b, v = buckets[finite], vals[finite]
            np.add.at(self.counts[metric], (b, value_bins(v)), 1)
            np.maximum.at(self.maxima[metric], b, v)
            for bucket in np.unique(b):
                self.sums[metric][bucket].add(float(v[b == bucket].sum()))

    def _merge_custom(self, other: Any) -> None:
        for m in self.metrics:
            self.counts[m] = self.counts[m] + other.counts[m]
            self.maxima[m] = np.maximum(self.maxima[m], other.maxima[m])
            self.nonfinite[m] = self.nonfinite[m] + other.nonfinite[m]
            for mine, theirs in zip(self.sums[m], other.sums[m], strict=True):
                mine.merge(theirs)

    def describe(self) -> dict[str, Any]:
        """The report's structured form (schema ``$defs/drift_profile``): non-empty buckets only and the
        histogram trimmed to its occupied bins."""
        out: dict[str, Any] = {}
        for m in self.metrics:
            counts = self.counts[m]
            if not counts.any():
                continue
            rows = []
            for i in np.nonzero(counts.sum(axis=1) + self.nonfinite[m])[0]:
                n = int(counts[i].sum())
                end = POSITION_EDGES[i + 1] if i + 1 < len(POSITION_EDGES) else None
                rows.append({"start": POSITION_EDGES[i], "end": end, "count": n,
                             "mean": self.sums[m][i].value / n if n else None,
                             "p99": _quantile_upper(counts[i], 0.99), "max": _finite(self.maxima[m][i]),
                             "nonfinite": int(self.nonfinite[m][i])})
            total = counts.sum(axis=0)
            occupied = np.nonzero(total)[0]
            first, last = int(occupied[0]), int(occupied[-1])
            out[m] = {"positions": rows, "histogram": {"offset": first,
                                                        "counts": [int(c) for c in total[first:last + 1]]}}
        return out


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _quantile_upper(counts: np.ndarray, q: float) -> float | None:
    """Upper edge of the bin holding the q-quantile: an upper bound on it within one bin."""
    n = int(counts.sum())
    if n == 0:
        return None
    index = int(np.searchsorted(np.cumsum(counts), math.ceil(q * n)))
    high = bin_range(index)[1]
    return high if math.isfinite(high) else None


def merged(profiles: list[DriftProfile]) -> DriftProfile | None:
    """One profile of several (the noise floor's perturbations pooled); None for none."""
    if not profiles:
        return None
    out = DriftProfile(profiles[0].metrics)
    for p in profiles:
        out.merge(p)
    return out


def profile_schema() -> dict[str, Any]:
    """The report's ``value_bins`` header: enough to turn a histogram offset back into values."""
    return {"per_decade": PER_DECADE, "low": 10.0 ** LOW_EXP, "high": 10.0 ** HIGH_EXP, "bins": N_VALUE_BINS}
