"""Judge an observed value or interval against a clause's bounds — the one place it happens.

Numerics (exact statistics and sketched quantiles with their rank-error band), tensor outputs,
top-k certified bounds and slice intervals all ask the same question: where does ``[low, high]``
lie relative to ``observed ≤ max`` / ``observed ≥ min``? Wholly inside → ``pass``; wholly beyond a
bound → ``fail``; straddling → ``inconclusive`` (never a guess). A point value is the interval
``[v, v]``; NaN never satisfies a bound. The verdict also says how much headroom the estimate has
(``margin``) and which tolerance would have passed (Polygraphy's "what tolerance would have
passed"), so a report can tell a near miss from a blow-out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from promote.results import Bound


@dataclass(frozen=True)
class Verdict:
    """Three-way outcome of ``[low, high]`` against bounds, with the facts a report needs."""

    status: str  # pass | fail | inconclusive (the caller maps fail to the clause's severity)
    violated: tuple[Bound, ...] = ()  # bounds the whole interval lies beyond
    straddled: tuple[Bound, ...] = ()  # bounds that fall inside the interval
    margin: float | None = None  # signed headroom of the estimate to the tightest bound (+ inside)
    would_pass: dict[str, float] = field(default_factory=dict)  # op → the loosest value that would pass
    relevant_bound: float | None = None  # the bound that decided (or must be resolved)
    half_width: float = 0.0  # distance from the estimate to the interval's edge on that side

    @property
    def outcome(self) -> str:
        """Alias of ``status`` (the slice stage's vocabulary: an outcome before multiplicity)."""
        return self.status


def margin(observed: float | None, bounds: list[Bound]) -> float | None:
    """Signed headroom to the tightest bound: positive inside the bound, negative beyond it."""
    if observed is None or not bounds or math.isnan(observed):
        return None
    return min((b.value - observed) if b.op == "max" else (observed - b.value) for b in bounds)


def judge(bounds: list[Bound], estimate: float, low: float | None = None, high: float | None = None) -> Verdict:
    """Judge ``estimate`` with its interval ``[low, high]`` (default: the point) against ``bounds``.

    A ``max`` bound fails when even ``low`` exceeds it and is straddled when only ``high`` does;
    a ``min`` bound mirrors that. No bounds → ``pass`` (a clause that bounds nothing judges nothing;
    callers decide whether that is allowed).
    """
    lo = estimate if low is None else low
    hi = estimate if high is None else high
    would = {b.op: (hi if b.op == "max" else lo) for b in bounds}
    head = margin(estimate, bounds)
    violated = tuple(b for b in bounds if not b.holds(lo if b.op == "max" else hi))
    if violated:
        first = violated[0]
        width = (estimate - lo) if first.op == "max" else (hi - estimate)
        return Verdict("fail", violated=violated, margin=head, would_pass=would, relevant_bound=first.value,
                       half_width=_finite(width))
    straddled = tuple(b for b in bounds if not b.holds(hi if b.op == "max" else lo))
    if straddled:
        first = straddled[0]
        width = (hi - estimate) if first.op == "max" else (estimate - lo)
        return Verdict("inconclusive", straddled=straddled, margin=head, would_pass=would,
                       relevant_bound=first.value, half_width=_finite(width))
    relevant = next((b.value for b in bounds if b.op == "max"), bounds[0].value if bounds else None)
    return Verdict("pass", margin=head, would_pass=would, relevant_bound=relevant)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.inf
