"""Warnings for numerical clauses that contradict the bounds chain (metrics/bounds.py).

A logit clause is usually there to protect a distribution clause: "osc ≤ 0.3 per position" is
meant to guarantee "TV ≤ 0.05". If the logit bound is looser than the distribution bound needs, the
protection is illusory, and a reviewer should hear so before a release depends on it. Only pairs
with the same statistic are compared where the implication is valid for that statistic: per-position
bounds carry over to every quantile and the max (monotone maps); TV's tanh is concave, so they also
carry over to the mean; KL's square is convex, so a mean KL is not implied by a mean oscillation.
"""

from __future__ import annotations

import math

from promote.contract.load import LoadedDocument, Problem
from promote.metrics.bounds import clip_budget, osc_for_kl, osc_for_tv

_PER_POSITION_STATS = ("p50", "p90", "p99", "p99.9", "max")
# metric → (stats for which a logit bound implies it, inverse: the osc that metric's bound needs)
_PROTECTED = {
    "tv": ((*_PER_POSITION_STATS, "mean"), osc_for_tv),
    "kl": (_PER_POSITION_STATS, osc_for_kl),
    "abs_log_ratio": ((*_PER_POSITION_STATS, "mean"), lambda bound: bound),
}


def _logit_bounds(clauses: list[dict]) -> list[tuple[int, dict, float]]:
    """(index, clause, the oscillation bound it states) for logit_osc / logit_drift max-clauses."""
    out = []
    for index, clause in enumerate(clauses):
        if "max" not in clause:
            continue
        if clause["metric"] == "logit_osc":
            out.append((index, clause, float(clause["max"])))
        elif clause["metric"] == "logit_drift":
            out.append((index, clause, 2.0 * float(clause["max"])))  # osc ≤ 2·drift
    return out


def chain_warnings(doc: LoadedDocument) -> list[Problem]:
    """Warnings (never errors) for logit clauses that cannot imply their sibling clauses."""
    numerical = doc.data.get("numerical") or {}
    clauses = numerical.get("clauses", [])
    problems: list[Problem] = []
    for index, logit, osc in _logit_bounds(clauses):
        for other in clauses:
            rule = _PROTECTED.get(other["metric"])
            if rule is None or "max" not in other or other["stat"] != logit["stat"] or other["stat"] not in rule[0]:
                continue
            needed = rule[1](max(float(other["max"]), 0.0))  # these metrics are ≥ 0: a negative bound needs 0
            if osc > needed * (1 + 1e-9):
                limit = needed / 2.0 if logit["metric"] == "logit_drift" else needed
                problems.append(doc.problem(
                    ("numerical", "clauses", index, "max"),
                    f"clause `{logit['id']}` allows {logit['stat']}({logit['metric']}) up to {logit['max']:g}, "
                    f"which does not imply clause `{other['id']}` ({other['stat']}({other['metric']}) ≤ "
                    f"{other['max']:g}); the chain needs {logit['metric']} ≤ {limit:.4g} for that",
                    severity="warning"))
    clip = (numerical.get("implications") or {}).get("clip")
    if clip is not None:
        budget = clip_budget(float(clip))
        for index, logit, osc in _logit_bounds(clauses):
            if logit["stat"] == "max" and osc > budget and math.isfinite(budget):
                limit = budget / 2.0 if logit["metric"] == "logit_drift" else budget
                problems.append(doc.problem(
                    ("numerical", "clauses", index, "max"),
                    f"clause `{logit['id']}` allows {logit['metric']} up to {logit['max']:g}, beyond the PPO clip "
                    f"budget of ε = {clip:g} ({logit['metric']} ≤ {limit:.4g})", severity="warning"))
    return problems
