"""Streaming, mergeable summaries of per-position metric values.

Following torchmetrics' split, state is sufficient statistics (count, sum, min, max, the worst K
positions, and the values or a quantile sketch) and every field has a merge rule, so summarising
shards and merging equals summarising the union. Quantiles are exact up to ``EXACT_LIMIT`` values;
beyond it the values go into an Apache DataSketches REQ sketch in high-rank-accuracy mode (near
exact at p99.9, where KLL is ~10 % off), and a quantile is reported with its rank-error band so a
clause can come out ``inconclusive`` instead of guessing. Mean, sum, min, max and the worst
positions stay exact. The sum is an ``ExactSum`` of per-batch sums and the worst positions are
ranked by a total order (badness, sample id, position), so merging shards in any order gives the
same bits. ``to_bytes``/``load_bytes`` (``state.Mergeable``) carry a sketch as its own serialised
bytes; a pickled summary does the same (sketches do not pickle).
Zero positions give NaN statistics, which callers report as ``vacuous`` — never 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from promote.state import ExactSum, Field, Mergeable
from promote.vocabulary import worse_direction

QUANTILE_STATS = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}
EXACT_LIMIT = 1 << 18  # values kept for exact quantiles, per metric
SKETCH_K = 30  # REQ section size: larger is more accurate (error ~1/k) and bigger
BAND_STD_DEVS = 2  # width of a sketched quantile's rank-error band (~95 %)
STAT_NAMES = ("mean", "p50", "p90", "p99", "p99.9", "max", "min", "sum")
# How "bad" a value is, by the metric's declared worse direction (vocabulary.py), for choosing the
# worst positions to show as evidence.
_BADNESS = {"higher": lambda v: v, "lower": lambda v: -v, "abs": np.abs}


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
class MetricSummary(Mergeable):
    """Summary of one metric over scored positions; ``update`` only touches state."""

    KIND: ClassVar[str] = "metric_summary"
    VERSION: ClassVar[int] = 1
    STATE: ClassVar[tuple[Field, ...]] = (
        Field("count", int, "sum"), Field("_sum", ExactSum, "exact_sum"), Field("nonfinite", int, "sum"),
        Field("nan", int, "sum"), Field("minimum", lambda: math.inf, "min"),
        Field("maximum", lambda: -math.inf, "max"), Field("_chunks", list, "custom"),
        Field("_sketch", lambda: None, "custom"), Field("worst", list, "custom"),
    )

    metric: str
    worst_k: int = 5
    exact_limit: int = EXACT_LIMIT
    count: int = 0
    _sum: ExactSum = field(default_factory=ExactSum)
    nonfinite: int = 0
    nan: int = 0
    minimum: float = math.inf
    maximum: float = -math.inf
    _chunks: list[np.ndarray] = field(default_factory=list)
    _sketch: Any = None
    worst: list[Position] = field(default_factory=list)

    @property
    def sketched(self) -> bool:
        return self._sketch is not None

    @property
    def total(self) -> float:
        """Sum of the observed values (exact over batches and merges, rounded once)."""
        return self._sum.value

    def update(self, values: np.ndarray, sample_ids: list[str], positions: np.ndarray, tokens: np.ndarray) -> None:
        """Add values observed at (sample_ids[i], positions[i]) predicting tokens[i]."""
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0:
            return
        is_nan = np.isnan(values)
        self.nan += int(is_nan.sum())
        self.nonfinite += int((~np.isfinite(values)).sum())
        self.count += values.size
        self._sum.add(float(values.sum()))
        not_nan = values[~is_nan]
        if not_nan.size:
            self.minimum = min(self.minimum, float(not_nan.min()))
            self.maximum = max(self.maximum, float(not_nan.max()))
            self._add_values(not_nan)
        self._keep_worst(values, sample_ids, positions, tokens)

    def _add_values(self, values: np.ndarray) -> None:
        if self._sketch is None and self._kept() + values.size <= self.exact_limit:
            self._chunks.append(values)
            return
        if self._sketch is None:
            self._sketch = _new_sketch()
            for chunk in self._chunks:
                self._sketch.update(chunk.astype(np.float32))
            self._chunks = []
        self._sketch.update(values.astype(np.float32))

    def _kept(self) -> int:
        return sum(c.size for c in self._chunks)

    def _keep_worst(self, values: np.ndarray, sample_ids: list[str], positions: np.ndarray, tokens: np.ndarray) -> None:
        badness = _BADNESS[worse_direction(self.metric)](values)
        badness = np.where(np.isnan(badness), np.inf, badness)  # NaN positions are the worst of all
        k = min(self.worst_k, values.size)
        idx = np.argpartition(-badness, k - 1)[:k]
        # Ties at the cut go by index (file order within the batch), not by argpartition's whim, so a
        # batch always offers the same candidates; merged states rank candidates by a total order.
        kth = badness[idx].min()
        strict, ties = np.flatnonzero(badness > kth), np.flatnonzero(badness == kth)
        idx = np.concatenate([strict, ties[: k - strict.size]])
        fresh = [Position(float(values[i]), sample_ids[i], int(positions[i]), int(tokens[i])) for i in idx]
        self.worst = self._rank(self.worst + fresh)[: self.worst_k]

    def _rank(self, items: list[Position]) -> list[Position]:
        key = _BADNESS[worse_direction(self.metric)]

        def badness(p: Position) -> float:
            b = float(key(np.float64(p.value)))
            return math.inf if math.isnan(b) else b

        return sorted(items, key=lambda p: (-badness(p), p.sample_id, p.position))

    def merge(self, other: MetricSummary) -> MetricSummary:  # type: ignore[override]
        """A new summary of both (neither input changes): every exact field merges exactly; the quantile
        state concatenates values, or merges sketches past the exact limit."""
        merged = MetricSummary(self.metric, worst_k=max(self.worst_k, other.worst_k),
                               exact_limit=min(self.exact_limit, other.exact_limit))
        merged.count, merged.nonfinite, merged.nan = self.count, self.nonfinite, self.nan
        merged._sum = ExactSum(self._sum.partials, self._sum.special)
        merged.minimum, merged.maximum = self.minimum, self.maximum
        merged._chunks, merged._sketch, merged.worst = list(self._chunks), self._copy_sketch(), list(self.worst)
        return Mergeable.merge(merged, other)  # type: ignore[return-value]

    def update_from(self, other: MetricSummary) -> MetricSummary:
        """Fold ``other`` into this summary in place (the pass engine's merge); returns self."""
        return Mergeable.merge(self, other)  # type: ignore[return-value]

    def _copy_sketch(self) -> Any:
        if self._sketch is None:
            return None
        from datasketches import req_floats_sketch

        return req_floats_sketch.deserialize(self._sketch.serialize())

    def _merge_custom(self, other: MetricSummary) -> None:
        if not self.sketched and not other.sketched and self._kept() + other._kept() <= self.exact_limit:
            self._chunks = [*self._chunks, *other._chunks]
        else:
            sketch = self._copy_sketch() if self.sketched else _new_sketch()
            if not self.sketched:
                for chunk in self._chunks:
                    sketch.update(chunk.astype(np.float32))
            if other.sketched:
                sketch.merge(other._sketch)
            else:
                for chunk in other._chunks:
                    sketch.update(chunk.astype(np.float32))
            self._sketch, self._chunks = sketch, []
        self.worst = self._rank(self.worst + other.worst)[: self.worst_k]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["_chunks"] = [np.concatenate(self._chunks)] if self._chunks else []
        state["_sketch"] = bytes(self._sketch.serialize()) if self._sketch is not None else None
        state["worst"] = [(p.value, p.sample_id, p.position, p.token) for p in self.worst]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if self._sketch is not None:
            from datasketches import req_floats_sketch

            self._sketch = req_floats_sketch.deserialize(self._sketch)
        self.worst = [Position(float(v), str(s), int(p), int(t)) for v, s, p, t in self.worst]

    def values(self) -> np.ndarray:
        """The kept values (exact mode only)."""
        if self.sketched:
            raise ValueError("values are not kept once the summary is sketched")
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0)

    def stat(self, name: str) -> float:
        """One statistic; NaN when there are no positions or a NaN was observed (never a silent 0)."""
        return self.band(name)[1] if name in QUANTILE_STATS else self._scalar(name)

    def _scalar(self, name: str) -> float:
        if self.count == 0 or self.nan:
            return math.nan
        if name == "mean":
            return self.total / self.count
        if name == "sum":
            return self.total
        if name == "max":
            return self.maximum
        if name == "min":
            return self.minimum
        raise ValueError(f"unknown statistic {name!r}")

    def band(self, name: str) -> tuple[float, float, float]:
        """(lower, estimate, upper) of a statistic: equal for exact ones; for a sketched quantile the
        values at the rank-error band's edges (``BAND_STD_DEVS`` standard deviations)."""
        if name not in QUANTILE_STATS:
            value = self._scalar(name)
            return value, value, value
        if self.count == 0 or self.nan:
            return math.nan, math.nan, math.nan
        rank = QUANTILE_STATS[name] / 100.0
        if not self.sketched:
            # "higher": a quantile is an observed value, never an interpolation below the tail.
            value = float(np.percentile(self.values(), QUANTILE_STATS[name], method="higher"))
            return value, value, value
        low = self._sketch.get_quantile(self._sketch.get_rank_lower_bound(rank, BAND_STD_DEVS))
        high = self._sketch.get_quantile(self._sketch.get_rank_upper_bound(rank, BAND_STD_DEVS))
        return float(low), float(self._sketch.get_quantile(rank)), float(high)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self._sketch is not None:
            state["_sketch"] = bytes(self._sketch.serialize())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state.get("_sketch") is not None:
            from datasketches import req_floats_sketch

            state["_sketch"] = req_floats_sketch.deserialize(state["_sketch"])
        self.__dict__.update(state)

    def to_dict(self) -> dict[str, Any]:
        stats = {name: self.stat(name) for name in STAT_NAMES}
        return {
            "count": self.count,
            "nonfinite": self.nonfinite,
            "quantiles": "sketch" if self.sketched else "exact",
            "stats": {k: (v if math.isfinite(v) else None) for k, v in stats.items()},
            "worst": [p.to_dict() for p in self.worst],
        }


def _new_sketch() -> Any:
    from datasketches import req_floats_sketch

    return req_floats_sketch(SKETCH_K, True)  # high-rank-accuracy: precise near p99.9
