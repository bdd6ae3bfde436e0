"""Bounds implied by the measured logit drift (DESIGN.md §5), for the report's "bounds implied" section.

A release manager reads "KL mean 3e-4" and still asks what it means for the quantities they care
about (total variation, the importance weight of RL post-training, a PPO clip). The chain
TV ≤ tanh(osc/4), KL ≤ osc²/8, |log p_y − log q_y| ≤ osc and osc ≤ 2·d answers that from the
largest (or a percentile of) per-position logit oscillation ``osc`` or drift ``d``. From ``max`` a
bound holds at every scored position; from ``p99`` at 99% of them — the scope says which.

The formulas live in ``metrics/bounds.py`` (one chain, property-tested); this module only picks the
statistic and lays the links out for the report.
"""

from __future__ import annotations

import math
from typing import Any

from promote.metrics.bounds import clip_budget, kl_bound, log_ratio_bound, tv_bound
from promote.results import StageResult

_SCOPES = {"max": "every scored position", "p99.9": "99.9% of scored positions", "p99": "99% of scored positions"}
PPO_CLIP = 0.2


def _stats(stages: list[StageResult], metric: str) -> dict[str, Any]:
    for stage in stages:
        summary = (stage.details.get("metrics") or {}).get(metric)
        if isinstance(summary, dict) and isinstance(summary.get("stats"), dict):
            return summary["stats"]
    return {}


def _entry(quantity: str, bound: float | None, source: str, value: float | None, formula: str,
           scope: str) -> dict[str, Any]:
    finite = bound is not None and math.isfinite(bound)
    return {"quantity": quantity, "bound": bound if finite else None, "source": source, "source_value": value,
            "formula": formula, "scope": scope}


def implied_bounds(stages: list[StageResult]) -> list[dict[str, Any]]:
    """Implied bounds from the numerics stage's logit_osc (preferred) or logit_drift summaries."""
    osc_stats, drift_stats = _stats(stages, "logit_osc"), _stats(stages, "logit_drift")
    out: list[dict[str, Any]] = []
    for stat, scope in _SCOPES.items():
        if osc_stats.get(stat) is not None:
            osc, source, via = float(osc_stats[stat]), f"logit_osc {stat}", "osc"
        elif drift_stats.get(stat) is not None:
            osc, source, via = 2.0 * float(drift_stats[stat]), f"logit_drift {stat}", "2·d"
        else:
            continue
        value = osc if via == "osc" else osc / 2.0
        out += [
            _entry("tv", tv_bound(osc), source, value, f"TV ≤ tanh({via}/4)", scope),
            _entry("kl", kl_bound(osc), source, value, f"KL ≤ ({via})²/8", scope),
            _entry("abs_log_ratio", log_ratio_bound(osc), source, value, f"|log p_y − log q_y| ≤ {via}", scope),
            _entry("importance_weight_bias", math.expm1(osc) if osc < 700 else None, source, value,
                   f"policy-gradient bias ≤ A_max·G·(e^({via}) − 1), factor shown", scope),
        ]
        if stat == "max":
            budget = clip_budget(PPO_CLIP)
            out.append(_entry("ppo_clip_budget_used", osc / budget, source, value,
                              f"({via}) / log(1 + ε_clip), ε_clip = {PPO_CLIP}; above 1 the drift alone can "
                              "reach the clip", scope))
        break  # the tightest available statistic only: one block, not three near-duplicates
    return out
