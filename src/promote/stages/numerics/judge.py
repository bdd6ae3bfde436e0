"""Stage 1, offline numerics (N): run both kernels batch by batch over the eval set, summarise the
per-position metrics, and judge each numerical clause.

Only summaries survive a batch, so memory is O(batch · seq · vocab) whatever the eval set's size.
Outcomes that could read as a pass but prove nothing — no scored position, outputs constant on
both sides — are ``vacuous``; a NaN statistic fails its clause.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from promote.bounds import implications
from promote.contract.numerical import NumericalSpec
from promote.engine.accumulate import NumericsAccumulator
from promote.engine.numerics_judge import bounded_note, judge, summary_keys
from promote.engine.profile import POSITION_EDGES, merged, profile_schema
from promote.metrics.summary import MetricSummary
from promote.results import (
    StageResult,
    worst_status,
)
from promote.stages.numerics.noise_floor import NoiseFloor

STAGE = "numerics"
def implied_by(acc: NumericsAccumulator, context: dict[str, Any]) -> dict[str, Any]:
    """What the measured oscillation implies (bounds.py): at the worst position and at p99."""
    out: dict[str, Any] = {}
    reward = context.get("reward_range")
    kwargs = {k: context.get(k) for k in ("seq_len", "clip", "advantage_max", "score_norm")}
    def upper(metric: str) -> MetricSummary:  # top-k records: the certified upper bound of the metric
        return acc.summaries.get(metric) or acc.summaries[f"{metric}_upper"]

    for stat in ("max", "p99"):
        osc = upper("logit_osc").stat(stat)
        drift = upper("logit_drift").stat(stat)
        if math.isfinite(osc) and math.isfinite(drift) and acc.positions:
            chain = implications(osc=osc, drift=drift, reward_range=tuple(reward) if reward else None, **kwargs)
            out[stat] = [link.to_dict() for link in chain]
    return out


def drift_profile(acc: NumericsAccumulator, floor: NoiseFloor | None) -> dict[str, Any]:
    """Where along the sequence and how the drift is distributed (engine/profile.py), for the
    candidate and, when declared, the noise floor (its perturbations pooled): schema ``drift_profile``."""
    out: dict[str, Any] = {"value_bins": profile_schema(), "position_edges": list(POSITION_EDGES),
                           "candidate": acc.profile.describe()}
    pooled = merged([a.profile for a in floor.accumulators.values()]) if floor else None
    if pooled is not None:
        out["noise_floor"] = pooled.describe()
    return out


def prepare(spec: NumericalSpec) -> tuple[NumericsAccumulator, NoiseFloor | None]:
    """The numerics consumers of a pass: the summaries and (if declared) the noise floor's."""
    return NumericsAccumulator(parameterized=summary_keys(spec.clauses)), (
        NoiseFloor(spec.noise_floor) if spec.noise_floor else None)


def localize_note(found: dict[str, Any]) -> str:
    first = found["first_divergent"]
    if first is None:
        return (f"localize: no module drifts beyond {found['factor']:g}× its own noise floor "
                f"({found['samples']} samples)")
    floor = first["floor"] or 0.0
    times = f"{first['rel'] / floor:.3g}× its floor {floor:.3g}" if floor > 0 else "its floor is exactly 0"
    return (f"localize: first divergent module `{first['module']}` (relative drift {first['rel']:.3g}, {times}; "
            f"{found['samples']} samples)")


def stage_result(spec: NumericalSpec, acc: NumericsAccumulator, duration_s: float, *,
                 floor: NoiseFloor | None = None, kernel_seconds: dict[str, float] | None = None,
                 notes: Sequence[str] = ()) -> StageResult:
    """Judge the clauses on accumulated summaries (one pass, or merged shards) and describe the run;
    ``kernel_seconds`` and ``notes`` are the kernels' (``stages.api.PassRecord``)."""
    clauses = [judge(c, acc, floor) for c in spec.clauses]
    details = {
        "samples": acc.samples,
        "positions": acc.positions,
        "tie_margin": spec.tie_margin,
        "kernel_seconds": {role: round(seconds, 6) for role, seconds in (kernel_seconds or {}).items()},
        "metrics": {m: s.to_dict() for m, s in acc.summaries.items()},
    }
    details["bounds"] = implied_by(acc, spec.implications)
    if spec.implications:
        details["implications"] = dict(spec.implications)
    notes = [*notes, *(floor.notes() if floor else [])]
    if acc.bounded:
        notes.append(bounded_note())
    if floor:
        details["noise_floor"] = floor.describe()
    details["profile"] = drift_profile(acc, floor)
    if acc.tie_flips:
        notes.append(f"{acc.tie_flips} argmax flips happened at near ties (reference top-2 margin < "
                     f"{spec.tie_margin:g})")
    return StageResult(name=STAGE, status=worst_status([c.status for c in clauses]), clauses=clauses,
                       duration_s=duration_s, notes=notes, details=details)
