"""How `promote watch` spends the level α over windows, so judging a canary again and again keeps the
chance of any false alarm at most α (docs/watch.md, "Statistics").

Every statistical clause is a (1 − 2α)-interval test (TOST) at a level its stage reads from the contract
(`runtime.alpha` / `runtime.looks`, `statistical.alpha`). Window i is judged at level α_i with
Σ α_i ≤ α, so by the union bound the probability that an honest candidate fails *any* window is at
most α, whatever the dependence between windows (they share prompts and servers):

- a horizon of N windows (``--windows N`` or ``watch.windows``): α_i = α / N, today's ``looks``
  Bonferroni split with ``looks = N``;
- open-ended: α_i = α / (i (i + 1)) for i = 1, 2, … (Σ = α exactly, telescoping), i.e. window i counts
  as ``looks = i (i + 1)``; early windows get the most of α, as a canary is likeliest to break early.

Both are integers of ``looks``, so the stages judge each window exactly as `promote check` would with
that ``looks`` — no stage is changed.

A bootstrap of R resamples cannot place an interval end at a tail probability much below 1/R (the
percentile is then the most extreme resample, which is anti-conservative), so each window's sections get
``resamples`` ≥ ``MIN_TAIL_DRAWS / α_i``, capped at ``MAX_RESAMPLES``; ``resolved`` says whether the cap
was enough (window evidence records it; docs/watch.md says when it is not).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

MIN_TAIL_DRAWS = 20  # resamples expected beyond an interval end
MAX_RESAMPLES = 200_000  # ~50 MB of indices for 32 requests; beyond it α_i is not resolved


def looks_for_window(index: int, horizon: int | None) -> int:
    """The ``looks`` that window ``index`` (1-based) is judged with: α_i = α / looks."""
    if index < 1:
        raise ValueError(f"windows are numbered from 1, not {index}")
    if horizon is not None:
        if index > horizon:
            raise ValueError(f"window {index} is past the horizon of {horizon} windows: α is spent")
        return horizon
    return index * (index + 1)


def alpha_for_window(alpha: float, index: int, horizon: int | None) -> float:
    return alpha / looks_for_window(index, horizon)


def spent(alpha: float, windows: int, horizon: int | None) -> float:
    """Σ α_i over the first ``windows`` windows: the bound on the false-alarm probability so far."""
    return sum(alpha_for_window(alpha, i, horizon) for i in range(1, windows + 1))


def resamples_for(alpha_i: float, resamples: int) -> int:
    """Enough bootstrap resamples to resolve a tail of ``alpha_i`` (at least ``resamples``, at most the cap)."""
    return min(max(resamples, math.ceil(MIN_TAIL_DRAWS / alpha_i)), max(resamples, MAX_RESAMPLES))


def resolved(contract: Any) -> bool:
    """Whether every statistical section's resamples resolve its level (see the module docstring)."""
    runtime, statistical = contract.sections.get("runtime"), contract.sections.get("statistical")
    levels = [(runtime.alpha / runtime.looks, runtime.resamples)] if runtime is not None else []
    levels += [(statistical.alpha, statistical.resamples)] if statistical is not None else []
    return all(r * a >= MIN_TAIL_DRAWS * (1 - 1e-9) for a, r in levels)


def contract_for_window(contract: Any, index: int, horizon: int | None) -> Any:
    """``contract`` with each statistical section judged at window ``index``'s level: `runtime` gets
    ``looks`` (its stage divides its own ``alpha`` by it), `statistical` gets ``alpha / looks``; both get
    the resamples that level needs."""
    looks = looks_for_window(index, horizon)
    runtime = contract.sections.get("runtime")
    if runtime is not None:
        contract = contract.with_section("runtime", replace(
            runtime, looks=looks, resamples=resamples_for(runtime.alpha / looks, runtime.resamples)))
    statistical = contract.sections.get("statistical")
    if statistical is not None:
        alpha_i = statistical.alpha / looks
        contract = contract.with_section("statistical", replace(
            statistical, alpha=alpha_i, resamples=resamples_for(alpha_i, statistical.resamples)))
    return contract
