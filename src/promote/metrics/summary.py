"""Streaming, mergeable summaries of per-position metric values.

Following torchmetrics' split, state is sufficient statistics (count, sum, min, max, the values for
exact quantiles, the worst K positions) and every field has a merge rule, so summarising shards and
merging equals summarising the union. Values are kept for exact quantiles; the number of scored
positions is small next to the logits, which are never kept. Zero positions give NaN statistics,
which callers report as ``vacuous`` — never 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

QUANTILE_STATS = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}
STAT_NAMES = ("mean", "p50", "p90", "p99", "p99.9", "max", "min", "sum")
# How "bad" a value is, per metric, for choosing the worst positions to show as evidence.
_BADNESS = {
    "argmax_agree": lambda v: -v,
    "log_ratio": np.abs,
}


@dataclass
class Position:
    """Where a value was observed: sample id, position t, and the token predicted there."""

    value: float
    sample_id: str
    position: int
    token: int

    def to_dict(self) -> dict[str, Any]:
        value = self.value if math.isfinite(self.value) else None
        return {"value": value, "sample_id": self.sample_id, "position": self.position, "token": self.token}


@dataclass
class MetricSummary:
    """Summary of one metric over scored positions; ``update`` only touches state."""

    metric: str
    worst_k: int = 5
    count: int = 0
    total: float = 0.0
    nonfinite: int = 0
    minimum: float = math.inf
    maximum: float = -math.inf
    _chunks: list[np.ndarray] = field(default_factory=list)
    worst: list[Position] = field(default_factory=list)

    def update(self, values: np.ndarray, sample_ids: list[str], positions: np.ndarray, tokens: np.ndarray) -> None:
        """Add values observed at (sample_ids[i], positions[i]) predicting tokens[i]."""
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0:
            return
        finite = np.isfinite(values)
        self.nonfinite += int((~finite).sum())
        self.count += values.size
        self.total += float(values.sum())
        not_nan = values[~np.isnan(values)]
        if not_nan.size:
            self.minimum = min(self.minimum, float(not_nan.min()))
            self.maximum = max(self.maximum, float(not_nan.max()))
        self._chunks.append(values)
        self._keep_worst(values, sample_ids, positions, tokens)

    def _keep_worst(self, values: np.ndarray, sample_ids: list[str], positions: np.ndarray, tokens: np.ndarray) -> None:
        badness = _BADNESS.get(self.metric, lambda v: v)(values)
        badness = np.where(np.isnan(badness), np.inf, badness)  # NaN positions are the worst of all
        k = min(self.worst_k, values.size)
        idx = np.argpartition(-badness, k - 1)[:k]
        fresh = [Position(float(values[i]), sample_ids[i], int(positions[i]), int(tokens[i])) for i in idx]
        self.worst = self._rank(self.worst + fresh)[: self.worst_k]

    def _rank(self, items: list[Position]) -> list[Position]:
        key = _BADNESS.get(self.metric, lambda v: v)

        def badness(p: Position) -> float:
            b = float(key(np.float64(p.value)))
            return math.inf if math.isnan(b) else b

        return sorted(items, key=lambda p: (-badness(p), p.sample_id, p.position))

    def merge(self, other: MetricSummary) -> MetricSummary:
        """Exact merge: the result equals the summary of both shards' positions together."""
        merged = MetricSummary(self.metric, worst_k=max(self.worst_k, other.worst_k))
        merged.count = self.count + other.count
        merged.total = self.total + other.total
        merged.nonfinite = self.nonfinite + other.nonfinite
        merged.minimum = min(self.minimum, other.minimum)
        merged.maximum = max(self.maximum, other.maximum)
        merged._chunks = [*self._chunks, *other._chunks]
        merged.worst = merged._rank(self.worst + other.worst)[: merged.worst_k]
        return merged

    def values(self) -> np.ndarray:
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0)

    def stat(self, name: str) -> float:
        """One statistic; NaN when there are no positions or a NaN was observed (never a silent 0)."""
        if self.count == 0:
            return math.nan
        values = self.values()
        if np.isnan(values).any():
            return math.nan
        if name == "mean":
            return self.total / self.count
        if name == "sum":
            return self.total
        if name == "max":
            return self.maximum
        if name == "min":
            return self.minimum
        if name in QUANTILE_STATS:
            # "higher" makes a quantile an observed value, never an interpolation below the tail.
            return float(np.percentile(values, QUANTILE_STATS[name], method="higher"))
        raise ValueError(f"unknown statistic {name!r}")

    def to_dict(self) -> dict[str, Any]:
        stats = {name: self.stat(name) for name in STAT_NAMES}
        return {
            "count": self.count,
            "nonfinite": self.nonfinite,
            "stats": {k: (v if math.isfinite(v) else None) for k, v in stats.items()},
            "worst": [p.to_dict() for p in self.worst],
        }
