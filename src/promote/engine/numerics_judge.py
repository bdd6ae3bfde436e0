"""Judging a numerical clause on accumulated summaries: pass / fail (or warn) / inconclusive /
vacuous, with evidence. Below the stages so the numerics stage (``stages/numerics``) and the RL monitor
(``rl/monitor.py``, in a training loop) judge a clause the same way from the same state.

Outcomes that could read as a pass but prove nothing (no scored position, outputs constant on both
sides) are ``vacuous``; a NaN statistic fails its clause.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from promote import judgement
from promote.bounds import float_resolution
from promote.contract.numerical import NumericalClause
from promote.engine.accumulate import NumericsAccumulator
from promote.metrics.rl import ESS_PARTS, ess
from promote.metrics.topk import BOUNDED_METRICS
from promote.results import (
    Bound,
    ClauseResult,
    bounds_text,
    comparison_digits,
    finite_or_none,
    format_value,
    worst_status,
)
from promote.vocabulary import PARAMETERIZED_METRICS, RL_METRICS, parameterized_key

STAGE = "numerics"
BOUNDED_NOTE = ("metrics {names} come from top-k records and are certified bounds, summarised as `NAME_lower` / "
                "`NAME_upper`: `max` clauses are judged on the upper bound, `min` clauses on the lower bound")


def bounded_note() -> str:
    return BOUNDED_NOTE.format(names=", ".join(f"`{m}`" for m in BOUNDED_METRICS))


def judge(clause: NumericalClause, acc: NumericsAccumulator, floor: Any = None) -> ClauseResult:
    """One clause against the summaries: pass / fail (or warn) / inconclusive / vacuous, with evidence.

    A sketched quantile is judged by its rank-error band: entirely within the bound → pass, entirely
    beyond → fail, straddling → inconclusive (never a guess). ``max_floor_ratio`` is judged against
    the noise floor; a floor of exactly 0 is reported as such, never divided by.
    """
    bounds = [Bound(op, getattr(clause, op)) for op in ("max", "min") if getattr(clause, op) is not None]
    base = dict(id=clause.id, stage=STAGE, metric=clause.metric, stat=clause.stat, bounds=bounds, line=clause.line)
    reason = acc.vacuous_reason
    if reason:
        return ClauseResult(status="vacuous", message=reason, **base)
    if clause.metric in acc.bounded:
        return judge_bounded(clause, acc)
    key = parameterized_key(clause.metric, clause.param)
    if key in acc.unavailable:
        why = ("sampled-token records hold only the sampled token's log-prob, not the distribution it needs"
               if acc.sampled else "it needs full logits on both sides; top-k records only bound it")
        return ClauseResult(status="error", **base, message=f"`{clause.metric}` cannot be computed from these "
                            f"outputs ({why})")
    if clause.metric == "ess":
        return judge_ess(clause, acc, base, bounds)
    summary = acc.summaries[key]
    low, observed, high = summary.band(clause.stat)
    evidence: dict[str, Any] = {"positions": summary.count, "worst": [p.to_dict() for p in summary.worst]}
    if clause.metric == "argmax_agree":
        evidence["tie_flips"] = acc.tie_flips
    digits = comparison_digits(observed, bounds)  # enough to see why it passed or failed its bound

    def fmt(value: float) -> str:
        return format_value(value, digits)

    shown = f"{clause.stat}({clause.metric}) = {fmt(observed)}"
    if low < high:
        evidence["band"] = [low, high]
        shown += f" (sketch rank-error band [{fmt(low)}, {fmt(high)}])"
    if math.isnan(observed):
        nonfinite = acc.summaries["nonfinite"].total
        return ClauseResult(status=clause.severity, observed=observed, evidence=evidence, **base,
                            message=f"{shown}: non-finite values at {summary.nan} positions "
                                    f"({int(nonfinite)} non-finite logits); see clause `nonfinite`")
    verdict = judgement.judge(bounds, observed, low, high) if bounds else None
    verdicts = [_bounds_text(clause, bounds, verdict, fmt)]
    if clause.max_floor_ratio is not None and floor is not None:
        verdicts.append(_judge_floor(clause, floor, observed, evidence, acc.ref_abs_max))
    status = worst_status([v[0] for v in verdicts])
    message = "; ".join(text for _, text in verdicts if text)
    return ClauseResult(status=status, observed=observed, evidence=evidence, **base,
                        message=f"{shown}{': ' if message else ''}{message}").judged(
        verdict, low=low, high=high, samples=summary.count)


def _bounds_text(clause: NumericalClause, bounds: list[Bound], verdict: judgement.Verdict | None,
                 fmt: Callable[[float], str] = format_value) -> tuple[str, str]:
    if verdict is None:
        return "pass", ""
    if verdict.status == "fail":
        return clause.severity, f"required {bounds_text(list(verdict.violated), fmt=fmt)}"
    if verdict.status == "inconclusive":
        return "inconclusive", (f"the bound {bounds_text(list(verdict.straddled), fmt=fmt)} lies inside the quantile "
                                "sketch's error band; raise the exact-quantile limit or use fewer positions")
    return "pass", f"within {bounds_text(bounds, fmt=fmt)}"


def _judge_floor(clause: NumericalClause, floor: Any, observed: float,
                 evidence: dict[str, Any], logit_abs_max: float = 0.0) -> tuple[str, str]:
    value = floor.floor(clause.metric, clause.stat)
    evidence["noise_floor"] = value
    if value == 0:
        # A bitwise-reproducible reference: no ratio exists, but any drift above what float32 outputs
        # can resolve is the candidate's own (docs/metrics.md, "Noise floor"), so it fails.
        resolution = float_resolution(clause.metric, logit_abs_max)
        evidence["float_resolution"] = resolution
        if observed <= resolution:
            evidence["floor_ratio"] = 0.0
            return "pass", (f"noise floor is exactly 0 and the drift is within the float32 resolution "
                            f"{format_value(resolution)} of the outputs")
        return clause.severity, (f"noise floor is exactly 0 (the reference is bitwise reproducible) and the drift "
                                 f"exceeds the float32 resolution {format_value(resolution)} of the outputs: any "
                                 f"drift above it is the candidate's own")
    ratio = observed / value
    evidence["floor_ratio"] = ratio
    text = f"{format_value(ratio)}× the noise floor {format_value(value)}"
    if ratio <= clause.max_floor_ratio:
        return "pass", f"{text} (≤ {format_value(clause.max_floor_ratio)}×)"
    return clause.severity, f"{text}, required ≤ {format_value(clause.max_floor_ratio)}×"


def judge_bounded(clause: NumericalClause, acc: NumericsAccumulator, stage: str = STAGE) -> ClauseResult:
    """Judge a clause whose metric is only bounded (top-k records), on the conservative side of each
    bound: the upper bound for a ``max`` clause, the lower for a ``min`` clause; a bound is never
    presented as a measured value."""
    bounds = [Bound(op, getattr(clause, op)) for op in ("max", "min") if getattr(clause, op) is not None]
    base = dict(id=clause.id, stage=stage, metric=clause.metric, stat=clause.stat, bounds=bounds, line=clause.line)
    reason = acc.vacuous_reason
    if reason:
        return ClauseResult(status="vacuous", message=reason, **base)
    lower, upper = acc.summaries[f"{clause.metric}_lower"], acc.summaries[f"{clause.metric}_upper"]
    low, high = lower.stat(clause.stat), upper.stat(clause.stat)
    side = "upper" if bounds and bounds[0].op == "max" else "lower"
    observed = high if side == "upper" else low
    judged = upper if side == "upper" else lower
    evidence: dict[str, Any] = {
        "bounded": True, "judged_on": f"{side} bound", "lower": finite_or_none(low), "upper": finite_or_none(high),
        "lower_text": format_value(low), "upper_text": format_value(high),
        "positions": judged.count, "worst": [p.to_dict() for p in judged.worst],
    }
    shown = (f"{clause.stat}({clause.metric}) ∈ [{format_value(low)}, {format_value(high)}] "
             f"(certified bounds from top-k records; judged on the {side} bound)")
    if math.isnan(observed):
        return ClauseResult(status=clause.severity, observed=observed, evidence=evidence, **base,
                            message=f"{shown}: non-finite records at {judged.nonfinite} positions; see `nonfinite`")
    verdict = judgement.judge(bounds, observed, low, high)
    result = ClauseResult(status="pass", observed=observed, evidence=evidence, **base, message="").judged(
        verdict, low=low, high=high, samples=judged.count)
    if verdict.status == "pass":
        result.message = f"{shown} {bounds_text(bounds)}"
        return result
    why = ("violated whatever the unrecorded tail holds" if verdict.violated else
           "not certified: the unrecorded tail could put it beyond the bound (record more top-k, or full logits)")
    result.status = clause.severity
    beyond = [b for b in bounds if not b.holds(high if b.op == "max" else low)]  # on the conservative side
    result.message = f"{shown}, required {bounds_text(beyond)}: {why}"
    return result


def judge_ess(clause: NumericalClause, acc: NumericsAccumulator, base: dict[str, Any],
              bounds: list[Bound]) -> ClauseResult:
    """``ess``: one number per run, (Σw)² / (n·Σw²), from two exact sums (any order of shards)."""
    w, w2 = acc.summaries["is_ratio"], acc.summaries["is_ratio_sq"]
    value = ess(w.total, w2.total, w.count)
    evidence: dict[str, Any] = {"positions": w.count, "sum_w": w.total, "sum_w2": w2.total}
    shown = f"ess = {format_value(value)} (normalised effective sample size of the importance weights)"
    if math.isnan(value):
        return ClauseResult(status=clause.severity, observed=value, evidence=evidence, **base,
                            message=f"{shown}: non-finite importance weights; see clause `nonfinite`")
    verdict = judgement.judge(bounds, value, value, value)
    status, text = _bounds_text(clause, bounds, verdict)
    return ClauseResult(status=status, observed=value, evidence=evidence, **base,
                        message=f"{shown}: {text}").judged(verdict, low=value, high=value, samples=w.count)


def summary_keys(clauses: Sequence[NumericalClause]) -> tuple[str, ...]:
    """Summary keys beyond ``METRIC_NAMES`` that the clauses need: parameterised and RL metrics."""
    keys: set[str] = set()
    for c in clauses:
        if c.metric == "ess":
            keys.update(ESS_PARTS)
        elif c.metric in PARAMETERIZED_METRICS or c.metric in RL_METRICS:
            keys.add(parameterized_key(c.metric, c.param))
    return tuple(sorted(keys))
