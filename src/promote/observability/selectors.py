"""What a `metric:` clause's selector and `stat` mean — as PromQL for Prometheus, computed for files.

One definition, two renderings, so a clause passes or fails for the same reason on a snapshot and
on a live server: ``sum``/``min``/``max``/``count`` aggregate the matched series keeping the ``by``
labels (PromQL ``sum by (...)``); ``mean`` is ``_sum / _count``; ``pNN`` is ``histogram_quantile``
over ``_bucket`` with Prometheus' interpolation (linear within a bucket, the lowest bucket starting
at 0, a rank in the ``+Inf`` bucket answered by the highest finite bound).
"""

from __future__ import annotations

import math
from collections import defaultdict

from promote.contract.promql import Selector
from promote.observability.series import Series

QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p99.9": 0.999}
AGGREGATES = ("sum", "min", "max", "count")


def presence_suffix(stat: str) -> str:
    """Which series prove a histogram's presence: its ``_count`` (the base name has no samples)."""
    return "_count" if stat == "mean" or stat in QUANTILES else ""


def promql_for(selector: Selector, stat: str, by: tuple[str, ...]) -> str:
    """The instant PromQL expression of ``stat`` over ``selector``."""
    group = f" by ({', '.join(by)})" if by else ""
    if stat == "value":
        return selector.promql()
    if stat in AGGREGATES:
        return f"{stat}{group} ({selector.promql()})"
    if stat == "mean":
        return f"sum{group} ({selector.promql('_sum')}) / sum{group} ({selector.promql('_count')})"
    le_group = f" by ({', '.join(('le', *by))})"
    return f"histogram_quantile({QUANTILES[stat]}, sum{le_group} ({selector.promql('_bucket')}))"


def _groups(series: list[Series], selector: Selector, suffix: str, by: tuple[str, ...]) -> dict[tuple, list[Series]]:
    out: dict[tuple, list[Series]] = defaultdict(list)
    for s in series:
        if selector.matches(s.name, s.labels, suffix):
            out[tuple((k, s.labels.get(k, "")) for k in by)].append(s)
    return out


def _monotonic(buckets: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Prometheus' fix for cumulative counts that decrease with ``le`` (buckets scraped at slightly
    different moments, or summed over series that reset apart): each count is raised to the largest
    count below it, so both sources answer the same quantile (promql/quantile.go, ensureMonotonic)."""
    out, top = [], -math.inf
    for upper, count in buckets:
        top = max(top, count)
        out.append((upper, top))
    return out


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile on cumulative (upper bound, count) pairs, bucket counts made
    monotonic first as Prometheus does."""
    buckets = _monotonic(sorted(buckets))
    if len(buckets) < 2 or not math.isinf(buckets[-1][0]):
        return math.nan
    total = buckets[-1][1]
    if total <= 0:
        return math.nan
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return buckets[-2][0]
            if upper <= 0 and lower == 0.0:
                return upper
            return lower + (upper - lower) * ((rank - below) / (count - below) if count > below else 0.0)
        lower, below = upper, count
    return buckets[-2][0]


def file_values(series: list[Series], selector: Selector, stat: str, by: tuple[str, ...], at: float) -> list[Series]:
    """``stat`` over the snapshot's series matching ``selector``: one-sample Series, labelled by ``by``."""
    if stat == "value":
        return [Series(dict(s.labels), [s.last]) for s in series if selector.matches(s.name, s.labels)]
    out = []
    if stat in AGGREGATES:
        for key, group in _groups(series, selector, "", by).items():
            values = [s.last[1] for s in group]
            value = {"sum": math.fsum(values), "min": min(values), "max": max(values), "count": len(values)}[stat]
            out.append(Series(dict(key), [(at, float(value))]))
        return out
    if stat == "mean":
        sums, counts = _groups(series, selector, "_sum", by), _groups(series, selector, "_count", by)
        for key in sorted(set(sums) & set(counts)):
            total = math.fsum(s.last[1] for s in counts[key])
            value = math.fsum(s.last[1] for s in sums[key]) / total if total else math.nan
            out.append(Series(dict(key), [(at, value)]))
        return out
    for key, group in _groups(series, selector, "_bucket", (*by,)).items():
        cumulative: dict[float, float] = defaultdict(float)
        for s in group:
            try:
                cumulative[float(s.labels.get("le", "nan"))] += s.last[1]
            except ValueError:
                continue
        out.append(Series(dict(key), [(at, histogram_quantile(QUANTILES[stat], list(cumulative.items())))]))
    return out
