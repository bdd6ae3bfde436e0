"""Evaluate one observability clause into results: presence, freshness, bounds, canary vs stable,
multiwindow burn rates. The source (``observability.Source``) hides whether numbers came from a
live Prometheus or a snapshot file; everything here is the judgement.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from promote.contract.observability_spec import ObservabilityClause
from promote.contract.promql import format_duration
from promote.observability.series import Series
from promote.results import Bound, ClauseResult, format_value
from promote.stages.observability_source import (
    Source,
    _labels_slice,
    _result,
    bounded,
    clause_bounds,
    missing,
    pairs,
    ratio,
    split,
)

#: How far in the future a sample's timestamp may lie and still count as age 0 (clocks are never exact).
MAX_CLOCK_SKEW_S = 60.0


def evaluate(clause: ObservabilityClause, source: Source) -> list[ClauseResult]:
    """All results of one clause (several when it checks presence, age and a bound, or many series)."""
    if clause.burn_rate is not None:
        return _burn(clause, source)
    out: list[ClauseResult] = []
    if clause.require or clause.max_age_s is not None:
        out.extend(_fresh(clause, source))
    if clause.relative:
        out.extend(_relative(clause, source))
    elif clause.max is not None or clause.min is not None:
        out.extend(_absolute(clause, source))
    return out


def _values(clause: ObservabilityClause, source: Source) -> tuple[list[Series], str]:
    by = tuple(dict.fromkeys((*clause.by, *((clause.compare.label,) if clause.compare else ()))))
    if clause.selector is not None:
        return source.metric(clause, by)
    assert clause.query is not None
    if clause.window_s is not None:
        return source.windowed(clause.query, clause.window_s, clause.step_s, clause.over_time), clause.query
    return source.instant(clause.query), clause.query


def _what(clause: ObservabilityClause, expr: str) -> str:
    if clause.window_s is not None:
        return f"{clause.over_time} over {format_duration(clause.window_s)} of `{expr}`"
    if clause.selector is not None and clause.stat != "value":
        return f"{clause.stat} of `{clause.metric}`"
    return f"`{expr}`"


def _fresh(clause: ObservabilityClause, source: Source) -> list[ClauseResult]:
    if clause.selector is not None:
        found, expr = source.newest(clause)
    else:
        found, expr = source.present(clause.query or ""), clause.query or ""
    evidence = {"query": expr, "source": source.where}
    if not found:
        where = f"within {format_duration(source.spec.lookback_s)} " if source.client and clause.selector else ""
        return [missing(clause, f"no series matches `{expr}` {where}at {source.where}", evidence, stat="present")]
    out = []
    if clause.require and clause.max_age_s is None:
        out.append(_result(clause, "pass", f"present: {len(found)} series match `{expr}`", stat="present",
                           observed=float(len(found)), evidence={**evidence, "series": len(found)}))
    if clause.max_age_s is not None:
        out.extend(_age(clause, source, s, evidence) for s in found)
    return out


def _age(clause: ObservabilityClause, source: Source, s: Series, evidence: dict[str, Any]) -> ClauseResult:
    """The newest sample's age against ``max_age``. A sample dated after the evaluation time by more
    than :data:`MAX_CLOCK_SKEW_S` is not "fresh": a skewed exporter clock, or milliseconds read as
    seconds, would otherwise pass every ``max_age`` (age 0). It fails on its own, naming the timestamp."""
    when = s.last[0]
    facts = {**evidence, "labels": s.labels, "last_sample_unix": when}
    name = f"{s.name}{s.label_text()}"
    ahead = when - source.at
    if not math.isfinite(when) or ahead > MAX_CLOCK_SKEW_S:
        status = clause.severity
        return _result(clause, status, f"the newest sample of {name} is dated {_stamp(when)}, "
                       f"{format_value(ahead)} s after the evaluation time {_stamp(source.at)}: a clock "
                       "that is off, or a timestamp in milliseconds read as seconds; its age cannot be known",
                       stat="age_future", observed=ahead, slice=_labels_slice(s), evidence=facts)
    age = max(0.0, source.at - when)
    return bounded(clause, [Bound("max", clause.max_age_s or 0.0)], age, f"age of the newest sample of {name} "
                   "(seconds)", slice_=_labels_slice(s), stat="age", evidence=facts)


def _stamp(when: float) -> str:
    """A unix time as the user can compare it: the number as given, and UTC when it is a real date."""
    try:
        utc = datetime.fromtimestamp(when, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{when:.3f} (unix s)"
    return f"{when:.3f} (unix s, {utc})"


def _absolute(clause: ObservabilityClause, source: Source) -> list[ClauseResult]:
    series, expr = _values(clause, source)
    evidence: dict[str, Any] = {"query": expr, "source": source.where}
    if not series:
        return [missing(clause, f"{_what(clause, expr)} returned no series at {source.where}", evidence)]
    out = []
    for s in series:
        value = s.last[1]
        labels = {**evidence, "labels": s.labels}
        if math.isnan(value):
            out.append(missing(clause, f"{_what(clause, expr)}{s.label_text()} is NaN (0/0: no traffic?)", labels))
            continue
        out.append(bounded(clause, clause_bounds(clause, False), value, f"{_what(clause, expr)}{s.label_text()}",
                           slice_=_labels_slice(s), stat=clause.stat, evidence=labels))
    return out


def _relative(clause: ObservabilityClause, source: Source) -> list[ClauseResult]:
    series, expr = _values(clause, source)
    if clause.compare is not None:
        candidates, baselines = split(clause, series)
        base_expr = f"{expr} with {clause.compare.label}=\"{clause.compare.baseline}\""
    else:
        candidates, baselines = series, source.instant(clause.baseline_query or "")
        base_expr = clause.baseline_query or ""
    evidence = {"query": expr, "baseline_query": base_expr, "source": source.where}
    return _judge_pairs(clause, candidates, baselines, _what(clause, expr), evidence, window=None)


def _judge_pairs(clause: ObservabilityClause, candidates: list[Series], baselines: list[Series], what: str,
                 evidence: dict[str, Any], window: str | None) -> list[ClauseResult]:
    drop = (clause.compare.label,) if clause.compare else ()
    if not candidates or not baselines:
        side = "candidate" if not candidates else "baseline"
        return [missing(clause, f"{what}: no {side} series to compare", evidence)]
    matched, alone = pairs(clause, candidates, baselines)
    out = [missing(clause, f"{what}{c.label_text()}: no baseline series with the same labels", evidence)
           for c in alone]
    for cand, base in matched:
        c, b = cand.last[1], base.last[1]
        where = ",".join(p for p in (window and f"window={window}", _labels_slice(cand, drop)) if p) or None
        facts = {**evidence, "labels": cand.labels, "candidate": c, "baseline": b}
        if math.isnan(c) or math.isnan(b):
            side = "candidate" if math.isnan(c) else "baseline"
            out.append(missing(clause, f"{what}{cand.label_text()}: NaN on the {side} side (0/0: no traffic?)", facts))
            continue
        if c < 0 or b < 0:
            out.append(_result(clause, "inconclusive", f"{what}{cand.label_text()}: a ratio of negative values "
                               f"({format_value(c)} / {format_value(b)}) means nothing; compare a quantity that "
                               "cannot be negative (a rate, a latency, a count)", slice=where, stat="ratio",
                               evidence=facts))
            continue
        text = f"candidate / baseline of {what}{cand.label_text()} ({format_value(c)} / {format_value(b)})"
        out.append(bounded(clause, clause_bounds(clause, True), ratio(c, b), text, slice_=where, stat="ratio",
                           evidence=facts))
    return out


def _burn_series(clause: ObservabilityClause, source: Source, window_s: float) -> tuple[list[Series], dict]:
    """Burn rate of each series over one window: (errors / total) / (1 − objective)."""
    burn = clause.burn_rate
    assert burn is not None
    window = format_duration(window_s)
    errors_q, total_q = (q.replace("{{window}}", window) for q in (burn.errors, burn.total))
    errors, totals = source.instant(errors_q), source.instant(total_q)
    by_key = {t.key(): t for t in totals}
    single = totals[0] if len(totals) == 1 and not totals[0].key() else None
    out = []
    for e in errors:
        total = by_key.get(e.key()) or single
        if total is None or total.last[1] == 0 or math.isnan(total.last[1]) or math.isnan(e.last[1]):
            continue  # no traffic in this window: no evidence either way
        out.append(Series(e.labels, [(e.last[0], e.last[1] / total.last[1] / (1 - burn.objective))]))
    return out, {"errors": errors_q, "total": total_q}


def _burn(clause: ObservabilityClause, source: Source) -> list[ClauseResult]:
    burn = clause.burn_rate
    assert burn is not None
    out: list[ClauseResult] = []
    for pair in burn.windows:
        name = f"{format_duration(pair.long_s)}/{format_duration(pair.short_s)}"
        long_s, long_q = _burn_series(clause, source, pair.long_s)
        short_s, short_q = _burn_series(clause, source, pair.short_s)
        evidence = {"long": long_q, "short": short_q, "objective": burn.objective, "source": source.where}
        if clause.compare is not None:
            out.extend(_relative_burn(clause, name, long_s, short_s, evidence))
            continue
        shorts = {s.key(): s for s in short_s}
        if not long_s:
            out.append(missing(clause, f"burn rate over {name}: no series with traffic", evidence))
        for s in long_s:
            short = shorts.get(s.key())
            if short is None:
                out.append(missing(clause, f"burn rate over {name}{s.label_text()}: no traffic in the short "
                                           "window", evidence))
                continue
            # The pair alerts only when both windows burn too fast: judge the smaller of the two.
            value = min(s.last[1], short.last[1])
            facts = {**evidence, "labels": s.labels, "burn_long": s.last[1], "burn_short": short.last[1]}
            where = ",".join(p for p in (f"window={name}", _labels_slice(s)) if p)
            out.append(bounded(clause, [Bound("max", float(pair.factor or 0))], value,
                               f"burn rate over {name}{s.label_text()} (long {format_value(s.last[1])}, short "
                               f"{format_value(short.last[1])}; the smaller is judged)", slice_=where,
                               stat="burn_rate", evidence=facts))
    return out


def _relative_burn(clause: ObservabilityClause, name: str, long_s: list[Series], short_s: list[Series],
                   evidence: dict[str, Any]) -> list[ClauseResult]:
    """Canary / stable burn rate in both windows of a pair; the smaller ratio is judged."""
    long_r = _judge_pairs(clause, *split(clause, long_s), f"burn rate over {name}",
                          evidence, window=name)
    short_r = {r.slice: r for r in _judge_pairs(clause, *split(clause, short_s), f"burn rate over {name}",
                                                evidence, window=name)}
    out = []
    for lr in long_r:
        sr = short_r.get(lr.slice)
        if lr.observed is None or sr is None or sr.observed is None:
            out.append(lr if lr.observed is None else sr or lr)
            continue
        pick = lr if lr.observed <= sr.observed else sr
        pick.message = (f"canary / stable burn rate over {name}: long {format_value(lr.observed)}, short "
                        f"{format_value(sr.observed)} (the smaller is judged) — {pick.message}")
        out.append(pick)
    return out

