"""Bounds implied by the measured logit drift (docs/metrics.md "Implied bounds"), for the report's
"bounds implied" section.

A release manager reads "KL mean 3e-4" and still asks what it means for the quantities they care
about (total variation, the importance weight of RL post-training, a PPO clip). The computation is
``bounds.implied_entries`` (one chain, property-tested); this module only finds the numerics
stage's logit statistics and the contract's PPO clip (``numerical.implications.clip``) in the results.
"""

from __future__ import annotations

from typing import Any

from promote.bounds import implied_entries, rl_entries
from promote.results import StageResult


def _details(stages: list[StageResult], metric: str) -> tuple[dict[str, Any], dict[str, Any]]:
    for stage in stages:
        summary = (stage.details.get("metrics") or {}).get(metric)
        if isinstance(summary, dict) and isinstance(summary.get("stats"), dict):
            return summary["stats"], stage.details.get("implications") or {}
    return {}, {}


def implied_bounds(stages: list[StageResult]) -> list[dict[str, Any]]:
    """Implied bounds from the numerics stage's logit_osc (preferred) or logit_drift summaries."""
    osc_stats, context = _details(stages, "logit_osc")
    drift_stats, drift_context = _details(stages, "logit_drift")
    clip = (context or drift_context).get("clip")
    clip = clip if isinstance(clip, (int, float)) else None
    entries = implied_entries(osc_stats, drift_stats, clip=clip)
    if entries:
        return entries
    # Sampled-token records (RL rollouts): no logit oscillation, but |log w| of the sampled tokens.
    ratio_stats, context = _details(stages, "abs_log_ratio")
    numbers = {k: v for k, v in context.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return rl_entries(ratio_stats, clip=numbers.get("clip"), advantage_max=numbers.get("advantage_max"),
                      score_norm=numbers.get("score_norm"))
