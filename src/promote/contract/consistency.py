"""Warnings for numerical clauses that contradict the bounds chain (bounds.py).

A logit clause is usually there to protect a distribution clause: "osc ≤ 0.3 per position" is
meant to guarantee "TV ≤ 0.05". If the logit bound is looser than the distribution bound needs, the
protection is illusory, and a reviewer should hear so before a release depends on it. Only pairs
with the same statistic are compared where the implication is valid for that statistic: per-position
bounds carry over to every quantile and the max (monotone maps); TV's tanh is concave, so they also
carry over to the mean; KL's square is convex, so a mean KL is not implied by a mean oscillation.
"""

from __future__ import annotations

import math

from promote.bounds import clip_budget, osc_for_kl, osc_for_tv
from promote.contract.load import LoadedDocument, Problem

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


def acknowledged(data: dict) -> tuple[str, ...]:
    """Warning ids the contract acknowledges: ``consistency.ignore`` at the top level and under
    ``numerical`` (both count), in the order written, without repeats."""
    ids = [*((data.get("consistency") or {}).get("ignore", [])),
           *(((data.get("numerical") or {}).get("consistency") or {}).get("ignore", []))]
    return tuple(dict.fromkeys(ids))


def _acknowledge_with(warning_id: str) -> str:
    return f" [warning id `{warning_id}`; to acknowledge it, add it to `consistency: {{ignore: [{warning_id}]}}`]"


def chain_warnings(doc: LoadedDocument) -> list[Problem]:
    """Warnings (never errors) for logit clauses that cannot imply their sibling clauses.

    Each has a stable id, shown in its message (``chain/<logit clause>/<clause>``,
    ``clip/<logit clause>``); ids listed in ``consistency.ignore`` are not reported, and a listed id
    that matches no warning is reported instead, so a stale acknowledgement cannot hide a new problem.
    """
    numerical = doc.data.get("numerical") or {}
    clauses = numerical.get("clauses", [])
    found: list[tuple[str, Problem]] = []  # (warning id, warning)
    for index, logit, osc in _logit_bounds(clauses):
        for other in clauses:
            rule = _PROTECTED.get(other["metric"])
            if rule is None or "max" not in other or other["stat"] != logit["stat"] or other["stat"] not in rule[0]:
                continue
            needed = rule[1](max(float(other["max"]), 0.0))  # these metrics are ≥ 0: a negative bound needs 0
            if osc > needed * (1 + 1e-9):
                limit = needed / 2.0 if logit["metric"] == "logit_drift" else needed
                warning_id = f"chain/{logit['id']}/{other['id']}"
                found.append((warning_id, doc.problem(
                    ("numerical", "clauses", index, "max"),
                    f"clause `{logit['id']}` allows {logit['stat']}({logit['metric']}) up to {logit['max']:g}, "
                    f"which does not imply clause `{other['id']}` ({other['stat']}({other['metric']}) ≤ "
                    f"{other['max']:g}); the chain needs {logit['metric']} ≤ {limit:.4g} for that"
                    + _acknowledge_with(warning_id), severity="warning")))
    clip = (numerical.get("implications") or {}).get("clip")
    if clip is not None:
        budget = clip_budget(float(clip))
        for index, logit, osc in _logit_bounds(clauses):
            if logit["stat"] == "max" and osc > budget and math.isfinite(budget):
                limit = budget / 2.0 if logit["metric"] == "logit_drift" else budget
                warning_id = f"clip/{logit['id']}"
                found.append((warning_id, doc.problem(
                    ("numerical", "clauses", index, "max"),
                    f"clause `{logit['id']}` allows {logit['metric']} up to {logit['max']:g}, beyond the PPO clip "
                    f"budget of ε = {clip:g} ({logit['metric']} ≤ {limit:.4g})" + _acknowledge_with(warning_id),
                    severity="warning")))
    return _unacknowledged(doc, found)


def _unacknowledged(doc: LoadedDocument, found: list[tuple[str, Problem]]) -> list[Problem]:
    ignored = acknowledged(doc.data)
    out = [problem for warning_id, problem in found if warning_id not in ignored]
    current = {warning_id for warning_id, _ in found}
    for where in (("consistency", "ignore"), ("numerical", "consistency", "ignore")):
        node = doc.data
        for key in where:
            node = node.get(key) if isinstance(node, dict) else None
        for index, warning_id in enumerate(node or []):
            if warning_id not in current:
                out.append(doc.problem((*where, index), f"`{warning_id}` acknowledges no current consistency "
                                       "warning (the clauses changed, or a typo); remove it from "
                                       "`consistency.ignore`", severity="warning"))
    return out
