"""Numerics summaries of a pass: one ``MetricSummary`` per metric plus the counters that decide vacuity.

A pass consumer with declared, mergeable state (``state.Mergeable``): shards of an eval set summarised
apart and merged in any order give the same summaries, bit for bit where they are exact.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from promote.engine.profile import PROFILE_METRICS, DriftProfile
from promote.engine.scoring import ScoredBatch
from promote.metrics.distribution import METRIC_NAMES, ratio_outside
from promote.metrics.rl import parameterized_values, sequence_values
from promote.metrics.summary import MetricSummary
from promote.state import Field, Mergeable, StateError
from promote.vocabulary import METRICS


class NumericsAccumulator(Mergeable):
    """Per-metric summaries plus the counters that decide vacuity."""

    KIND: ClassVar[str] = "numerics"
    VERSION: ClassVar[int] = 3  # 2: the drift profile (engine/profile.py); 3: ref_abs_max (float resolution)
    STATE: ClassVar[tuple[Field, ...]] = (
        Field("summaries", dict, "custom"), Field("unavailable", set, "union"), Field("positions", int, "sum"),
        Field("samples", int, "sum"), Field("degenerate_positions", int, "sum"), Field("tie_flips", int, "sum"),
        Field("bounded", set, "custom"), Field("sampled", bool, "max"), Field("profile", DriftProfile, "custom"),
        Field("ref_abs_max", float, "max"),
    )

    def __init__(self, metrics: tuple[str, ...] = METRIC_NAMES, *, parameterized: tuple[str, ...] = ()) -> None:
        """``parameterized``: further summary keys clauses use: ``ratio_outside@2``, ``topk_overlap@5``, and
        the RL metrics (``k3``, ``pg_bias@1``, ``seq_masked@2``…), summarised only on demand."""
        self.metrics, self.parameterized = tuple(metrics), tuple(parameterized)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.summaries = {m: MetricSummary(m) for m in (*self.metrics, *self.parameterized)}
        self.profile = DriftProfile(tuple(m for m in PROFILE_METRICS if m in self.metrics))

    def update(self, scored: ScoredBatch) -> None:
        """Add one scored batch (the pass engine calls this)."""
        self(scored)

    def _split_bounded(self, names: set[str]) -> None:
        for name in names - self.bounded:  # top-k records: summarise both bounds instead
            if name in self.summaries:
                self.summaries.pop(name)
                self.summaries.update({f"{name}_{s}": MetricSummary(f"{name}_{s}") for s in ("lower", "upper")})
            self.bounded.add(name)

    def _merge_custom(self, other: Any) -> None:
        self._split_bounded(set(other.bounded))
        other._split_bounded(set(self.bounded))
        if set(self.summaries) != set(other.summaries):
            raise StateError(f"numerics states summarise different metrics: {sorted(self.summaries)} vs "
                             f"{sorted(other.summaries)}")
        for name, summary in self.summaries.items():
            summary.update_from(other.summaries[name])
        self.profile.merge(other.profile)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["summaries"] = {k: v.state_dict() for k, v in self.summaries.items()}
        state["profile"] = self.profile.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        summaries, profile = state["summaries"], state.get("profile")
        if profile is None:
            raise StateError(f"{self.KIND} state lacks field `profile`")
        super().load_state_dict({"sampled": False, **state, "summaries": {},
                                 "profile": DriftProfile(self.profile.metrics)})
        self.profile.load_state_dict(profile)
        for name, sub in summaries.items():
            summary = MetricSummary(name)
            summary.load_state_dict(sub)
            self.summaries[name] = summary

    def __call__(self, scored: ScoredBatch) -> None:
        self._split_bounded(set(scored.bounded))
        self.sampled = self.sampled or scored.sampled
        ids = scored.sample_ids
        for name, summary in self.summaries.items():
            metric, _, param = name.partition("@")
            if metric in METRICS and METRICS[metric].level == "sequence":
                values, last = sequence_values(metric, float(param) if param else None,
                                               scored.values["log_ratio"], scored.rows)
                summary.update(values, [ids[i] for i in last], scored.cols[last], scored.targets[last])
                continue
            values = self._values(name, scored)
            if values is None:
                self.unavailable.add(name)
            else:
                summary.update(values, ids, scored.cols, scored.targets)
        self.profile.update(scored.values, scored.cols)
        self.positions += scored.rows.size
        self.samples += len(scored.batch.samples)
        if not scored.sampled:  # a lone sampled log-prob is no distribution: "constant" means nothing there
            self.degenerate_positions += scored.degenerate_positions()
        self.tie_flips += int(scored.values["tie_flip"].sum())
        scale = scored.ref_abs_max()  # the outputs' scale: float resolution
        if scale is not None:
            self.ref_abs_max = max(self.ref_abs_max, scale)

    @staticmethod
    def _values(name: str, scored: ScoredBatch) -> np.ndarray | None:
        """Per-position values of a summary key; None when these outputs cannot give them (top-k records)."""
        if name in scored.values:
            return scored.values[name]
        metric, _, param = name.partition("@")
        if metric == "ratio_outside" and "abs_log_ratio" in scored.values:
            return ratio_outside(scored.values["abs_log_ratio"], float(param))
        if metric == "topk_overlap" and not scored.bounded and not scored.sampled:
            return scored.topk_overlap(int(float(param)))
        if param:
            return parameterized_values(metric, float(param), scored.values["log_ratio"])
        return None

    @property
    def vacuous_reason(self) -> str | None:
        if self.positions == 0:
            return "no scored positions: every sample is shorter than 2 tokens"
        if self.degenerate_positions == self.positions and not self.sampled:
            return "both kernels output constant logits at every position: nothing was compared"
        return None
