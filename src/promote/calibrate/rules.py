"""The rules `promote calibrate --derive` sets one `numerical` bound by, from the per-position values of
the honest kernels on the calibration split (docs/calibration.md states each rule with an example).

Every derived bound lies inside its metric's range and can fail (some value the metric can take
violates it); when a rule cannot give such a bound (too few calibration samples, non-finite values,
no rule for the statistic) the clause is listed as **not derivable**, with why, and keeps its
written bound. ``RULES`` and ``REASONS`` hold the exact texts printed; the doc quotes each one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from promote.bounds import PRECISION_EPS, float_resolution
from promote.calibrate.tail import pot_max_bound
from promote.metrics import stats
from promote.metrics.stats import quantile_statistic
from promote.metrics.summary import QUANTILE_STATS
from promote.vocabulary import can_fail, parameterized_key, range_text

CONFIDENCE = 0.95
RESAMPLES = 1000

# The rule texts as printed (`rule` of each derived row); docs/calibration.md quotes every template.
RULES = {
    "ucb": "95 % UCB of {stat} (sequence bootstrap) × (1 + margin)",
    "lcb": "95 % LCB of {stat} (sequence bootstrap) × (1 − margin)",
    "neutral": "distance from 1: the farthest end of the 95 % interval of {stat} from 1, d; 1 {sign} d × (1 + margin)",
    "neutral_pot": "distance from 1: peaks-over-threshold max of each position's distance from 1 for {total} "
                   "positions at 95 % ({tail}), d; 1 {sign} d × (1 + margin)",
    "rule_of_three": "no disagreement in {n} positions: rule of three, 1 − (3/n) × (1 + margin)",
    "rate_of_three": "no such position in {n}: rule of three, (3/n) × (1 + margin)",
    "pot": "peaks-over-threshold max for {total} positions at 95 % ({tail}) × (1 + margin)",
    "resolution": "zero drift on the calibration split (bitwise-equal outputs): float resolution of {precision} "
                  "outputs, ε = {eps} at the largest reference logit magnitude Z = {z} (docs/metrics.md), "
                  "× (1 + margin)",
    "exact": "exact: no non-finite value is allowed",
    "slice_clause": "largest per-slice 95 % UCB of the mean × (1 + margin); slices whose own bound is over "
                    "(1 + margin)× smaller get it (`slice_bounds`)",
    "slice": "95 % UCB of the slice mean × (1 + margin)",
    "not_derivable": "not derivable: {reason}; the written bound is kept",
}
REASONS = {
    "floor": "`max_floor_ratio` is relative to the noise floor each run measures",
    "no_bound": "the clause has neither `max` nor `min`",
    "no_values": "`{metric}` has no per-position values on these outputs",
    "stat": "no derivation rule for stat `{stat}` with `{op}`",
    "nonfinite": "{bad} of {n} calibration values are not finite: the honest kernels give no usable `{metric}`",
    "small": "the calibration split is too small for this rule: it gives {op} {bound}, which no value of "
             "`{metric}` (in {range}) can violate",
    "no_resolution": "every calibration value is {value} (bitwise-equal outputs) and `{metric}` has no "
                     "float-resolution rule",
    "slice_kind": "task margins and lower bounds on slices have no derivation rule",
    "no_slice": "no slice could be judged on the calibration split",
}

# Metrics whose "no difference" value is 1: bounds are derived on the distance from 1.
NEUTRAL_ONE = frozenset({"argmax_agree", "topk_overlap", "entropy_ratio", "is_ratio", "seq_geo_ratio"})
# Neutral-1 metrics that count agreements (≤ 1): perfect agreement gets the rule of three.
AGREEMENT = frozenset({"argmax_agree", "topk_overlap"})
# Rates of rare events in [0, 1]: none seen gets the rule of three.
RATES = frozenset({"ratio_outside", "ratio_above", "ratio_below", "seq_masked"})
# Metrics with a float-resolution rule (bounds.float_resolution).
RESOLVED = frozenset({"kl", "kl_rev", "tv", "logit_drift", "logit_osc", "abs_log_ratio"})


def round_up(x: float) -> float:
    """Two significant digits, rounded away from the data (a derived bound never shrinks in print)."""
    if x == 0 or not math.isfinite(x):
        return x
    e = math.floor(math.log10(abs(x))) - 1
    return float(f"{math.ceil(round(x / 10**e, 9))}e{e}")  # toward +inf; printed without binary noise


def round_down(x: float) -> float:
    return -round_up(-x)








def sequence_interval(values: np.ndarray, seq: np.ndarray, stat: str) -> tuple[float, float, float]:
    """(estimate, one-sided 95 % lower bound, one-sided 95 % upper bound) of ``stat`` by a sequence
    bootstrap; fewer than two sequences give (−∞, ∞)."""
    used, inverse = np.unique(seq, return_inverse=True)
    if stat == "mean":
        counts = np.bincount(inverse).astype(np.float64)
        sums = np.bincount(inverse, weights=values)

        def statistic(idx: np.ndarray) -> np.ndarray:
            return sums[idx].sum(axis=-1) / counts[idx].sum(axis=-1)
        width = used.size
    else:
        statistic = quantile_statistic(values, inverse, used.size, QUANTILE_STATS[stat])
        width = values.size
    iv = stats.sequence_bootstrap(used.size, statistic, confidence=1 - 2 * (1 - CONFIDENCE), n_resamples=RESAMPLES,
                                  seed=0, batch=max(1, 2_000_000 // max(width, 1)))
    return iv.estimate, iv.lo, iv.hi


def _tail_text(detail: dict[str, Any]) -> str:
    return "exponential tail" if detail["shape"] == 0 else f"generalised Pareto tail ξ = {detail['shape']:.2f}"


def not_derivable(row: dict[str, Any], reason: str, **fields: Any) -> dict[str, Any]:
    """The row of a clause no rule can bound: the reason, and the written bound kept."""
    return {**row, **fields, "derived": False, "reason": reason,
            "rule": RULES["not_derivable"].format(reason=reason), "bound": row["written"]}


def derive_numerical(clause: Any, seq: np.ndarray, values: dict[str, np.ndarray], total: int, margin: float, *,
                     precision: str = "fp32", ref_abs_max: float = 1.0) -> dict[str, Any]:
    """One `numerical` clause's derived row (docs/calibration.md): rule, calibration value, confidence
    bound, bound; or not derivable, with why. The bound always lies inside the metric's range and can fail."""
    op = "max" if clause.max is not None else "min"
    row: dict[str, Any] = {"clause": clause.id, "stage": "numerics", "metric": clause.metric, "stat": clause.stat,
                           "op": op, "written": clause.max if clause.max is not None else clause.min}
    v = values.get(parameterized_key(clause.metric, getattr(clause, "param", None)))
    if clause.max_floor_ratio is not None:
        return not_derivable(row, REASONS["floor"])
    if clause.max is None and clause.min is None:
        return not_derivable(row, REASONS["no_bound"])
    if v is None:
        return not_derivable(row, REASONS["no_values"].format(metric=clause.metric))
    if clause.metric == "nonfinite" and op == "max":
        return {**row, "derived": True, "rule": RULES["exact"], "calibration": float(v.max()) if v.size else 0.0,
                "bound": 0}
    bad = int((~np.isfinite(v)).sum())
    if bad:
        return not_derivable(row, REASONS["nonfinite"].format(bad=bad, n=v.size, metric=clause.metric))
    if v.size == 0:
        return not_derivable(row, REASONS["small"].format(op=op, bound="nothing", metric=clause.metric,
                                                          range=range_text(clause.metric)))
    if clause.metric in NEUTRAL_ONE:
        out = _neutral(row, clause, seq, v, total, margin)
    elif clause.stat == "max" and op == "max":
        b, detail = pot_max_bound(v, total)
        out = {**row, "rule": RULES["pot"].format(total=total, tail=_tail_text(detail)), "calibration": float(v.max()),
               "detail": detail, "bound": round_up(b * (1 + margin)), "zero": b == 0}
    elif clause.stat == "mean" or clause.stat in QUANTILE_STATS:
        est, lo, hi = sequence_interval(v, seq, clause.stat)
        if op == "max":
            out = {**row, "rule": RULES["ucb"].format(stat=clause.stat), "calibration": est, "confidence_bound": hi,
                   "bound": round_up(hi * (1 + margin)), "zero": hi == 0}
        else:
            out = {**row, "rule": RULES["lcb"].format(stat=clause.stat), "calibration": est, "confidence_bound": lo,
                   "bound": round_down(lo * (1 - margin) if lo >= 0 else lo * (1 + margin))}
    else:
        return not_derivable(row, REASONS["stat"].format(stat=clause.stat, op=op))
    if out.pop("zero", False):
        out = _zero(out, clause, v, margin, precision, ref_abs_max)
    if out.get("derived") is False or can_fail(op, out["bound"], clause.metric):
        return {"derived": True, **out}
    return not_derivable(row, REASONS["small"].format(op=op, bound=f"{out['bound']:g}", metric=clause.metric,
                                                      range=range_text(clause.metric)),
                         calibration=out.get("calibration"), confidence_bound=out.get("confidence_bound"))


def _neutral(row: dict[str, Any], clause: Any, seq: np.ndarray, v: np.ndarray, total: int,
             margin: float) -> dict[str, Any]:
    """A metric whose neutral value is 1: the distance d from 1 the calibration reaches, × (1 + margin),
    on the clause's side (so `entropy_ratio` bounds are as tight above 1 as below), rounded by distance."""
    op, sign = row["op"], ("+" if row["op"] == "max" else "−")
    if clause.stat in ("max", "min"):
        d, detail = pot_max_bound(np.abs(v - 1.0), total)
        fields: dict[str, Any] = {"rule": RULES["neutral_pot"].format(total=total, tail=_tail_text(detail), sign=sign),
                                  "calibration": float(v.max() if op == "max" else v.min()), "detail": detail}
    elif clause.stat == "mean" or clause.stat in QUANTILE_STATS:
        est, lo, hi = sequence_interval(v, seq, clause.stat)
        d = max(abs(lo - 1.0), abs(hi - 1.0))
        fields = {"rule": RULES["neutral"].format(stat=clause.stat, sign=sign), "calibration": est,
                  "confidence_bound": lo if op == "min" else hi}
    else:
        return not_derivable(row, REASONS["stat"].format(stat=clause.stat, op=op))
    if d == 0:
        if clause.metric in AGREEMENT and op == "min":
            return {**row, "rule": RULES["rule_of_three"].format(n=v.size), "calibration": float(v.mean()),
                    "confidence_bound": 1.0 - 3.0 / v.size,
                    "bound": _from_one("min", round_up(3.0 / v.size * (1 + margin)))}
        return not_derivable(row, REASONS["no_resolution"].format(value=1, metric=clause.metric),
                             calibration=fields["calibration"])
    step = round_up(d * (1 + margin)) if math.isfinite(d) else d
    return {**row, **fields, "bound": _from_one(op, step)}


def _from_one(op: str, step: float) -> float:
    """1 ± a distance rounded up, printed without binary noise (1 − 0.021 is 0.979, not 0.9790000000000001)."""
    value = 1.0 + step if op == "max" else 1.0 - step
    return float(f"{value:.12g}") if math.isfinite(value) else value


def _zero(out: dict[str, Any], clause: Any, v: np.ndarray, margin: float, precision: str,
          ref_abs_max: float) -> dict[str, Any]:
    """A statistic of exactly 0 (bitwise-equal outputs): never `max: 0`, which would block any honest
    kernel that is not bit-identical. Divergences get the float resolution of the candidate's precision
    (the noise-floor rule of docs/metrics.md); rates of rare events the rule of three; others are not
    derivable."""
    row = {k: out[k] for k in ("clause", "stage", "metric", "stat", "op", "written")}
    if clause.metric in RESOLVED:
        eps = PRECISION_EPS.get(precision, PRECISION_EPS["fp32"])
        z = max(ref_abs_max, 1.0)
        res = float_resolution(clause.metric, z, eps)
        name = precision if precision in PRECISION_EPS else "fp32"
        return {**out, "rule": RULES["resolution"].format(precision=name, eps=f"2^{round(math.log2(eps))}",
                                                          z=f"{z:.3g}"),
                "confidence_bound": res, "bound": round_up(res * (1 + margin))}
    if clause.metric in RATES:
        return {**out, "rule": RULES["rate_of_three"].format(n=v.size), "confidence_bound": 3.0 / v.size,
                "bound": round_up(3.0 / v.size * (1 + margin))}
    return not_derivable(row, REASONS["no_resolution"].format(value=0, metric=clause.metric),
                         calibration=out.get("calibration"))
