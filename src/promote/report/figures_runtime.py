"""The runtime stage's figures, built from its structured results (``details.runtime`` and the clauses):

- latency distribution per concurrency level: the CDF of per-request latency, one curve per kernel
  role (baseline, candidate), from the 21 quantiles the stage stores (``latency_quantiles_ms``), with
  absolute latency bounds of clauses at that level marked;
- paired-ratio intervals: one row per ``max_ratio`` clause, estimate and interval of candidate/baseline
  with that clause's bound as a tick, failing clauses highlighted, worst margin on top (like the
  slice forest plot).

Each builder returns None without data, so the section appears only for a report with a runtime stage.
"""

from __future__ import annotations

import math
from typing import Any

from promote.report.model import Report
from promote.report.svg import (
    FAILING,
    Figure,
    Label,
    Linear,
    Mark,
    Section,
    estimate_row,
    padded,
    shorten,
    tick,
    x_axis,
    y_axis,
)
from promote.results import ClauseResult, format_value

LEFT, RIGHT, TOP, BOTTOM, ROW = 190, 24, 18, 46, 24
ROLES = (("baseline", "floor", "baseline"), ("candidate", "cand", "candidate"))
CHARTED_LATENCY = "latency_ms"  # the one latency metric the latency chart draws bound lines for


def runtime_of(report: Report) -> dict[str, Any] | None:
    for stage in report.stages:
        details = stage.details.get("runtime") if stage.name == "runtime" else None
        if isinstance(details, dict) and isinstance(details.get("measured"), dict):
            return details
    return None


def _quantiles(details: dict[str, Any], role: str, level: str) -> list[float]:
    values = details["measured"].get(role, {}).get("levels", {}).get(level, {}).get("latency_quantiles_ms") or []
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def latency_cdf(details: dict[str, Any], level: str, report: Report) -> Figure | None:
    """Per-request latency CDF at one concurrency level: one curve per role, absolute bounds dashed."""
    curves = [(cls, label, q) for role, cls, label in ROLES if len(q := _quantiles(details, role, level)) > 1]
    if not curves:
        return None
    bounds = [(c.id, b) for c in latency_bounds(report, int(level)) for b in c.bounds]
    data = [v for _, _, q in curves for v in q]
    lo, hi = padded(data + [b.value for _, b in bounds if near(b.value, data)])
    height = 260
    bottom = height - BOTTOM
    x = Linear(max(lo, 0.0), hi, 70, 720 - RIGHT)
    y = Linear(0, 1, bottom, TOP)
    fig = Figure(id=f"latency-c{level}", title=f"per-request latency at concurrency {level}", height=height,
                 caption=("Share of requests answered within x ms (CDF from 21 quantiles, p0 to p100). A candidate "
                          "curve right of the baseline is slower; a curve that bends right late is a tail. "
                          "Dashed: latency bounds of clauses at this concurrency."),
                 legend=[(cls, label) for cls, label, _ in curves] + ([("bound", "clause bound")] if bounds else []))
    x_axis(fig, x, x.ticks(), y=bottom, top=TOP, title="latency (ms)")
    y_axis(fig, y, [0, 0.25, 0.5, 0.75, 1.0], x0=70, x1=720 - RIGHT, title="share of requests")
    for cls, label, q in curves:
        shares = [i / (len(q) - 1) for i in range(len(q))]
        fig.marks.append(Mark("path", f"line {cls}", f"{label}: p50 {format_value(q[len(q) // 2])} ms, "
                              f"max {format_value(q[-1])} ms", points=" ".join(
                                  f"{x(v)},{y(s)}" for v, s in zip(q, shares, strict=True))))
    for cid, b in bounds:
        at, beyond = clamp(x, b.value)
        fig.marks.append(Mark("segment", "bound", f"{cid}: {'≤' if b.op == 'max' else '≥'} {tick(b.value)} ms{beyond}",
                              at, TOP, at, bottom))
    far = [f"{cid} {tick(b.value)} ms" for cid, b in bounds if not near(b.value, data)]
    if far:
        fig.note = f"bounds far beyond the measured latencies, drawn at the edge: {', '.join(far)}"
    return fig


def near(value: float, data: list[float]) -> bool:
    """Whether a bound belongs on the data's axis: within twice the largest value (else it would
    squash the distribution into one pixel column; it is drawn at the edge instead)."""
    return 0 <= value <= 2 * max(max(data), 1e-12)


def clamp(x: Linear, value: float) -> tuple[float, str]:
    """The pixel of ``value``, or of the axis end it lies beyond (with a tooltip suffix saying so)."""
    lo, hi = sorted((x.p0, x.p1))
    px = x(value)
    return (min(max(px, lo), hi), "" if lo <= px <= hi else " (beyond the axis, drawn at its edge)")


def latency_bounds(report: Report, level: int) -> list[ClauseResult]:
    """Absolute (not ratio) latency clauses judged at ``level``, with only their finite bounds kept."""
    out = []
    for c in report.clauses():
        ev = c.evidence if isinstance(c.evidence, dict) else {}
        if (c.stage == "runtime" and c.metric == CHARTED_LATENCY and "ratio" not in ev
                and ev.get("concurrency", 1) == level):
            kept = [b for b in c.bounds if math.isfinite(b.value)]
            if kept:
                out.append(ClauseResult(id=c.id, stage=c.stage, status=c.status, message="", bounds=kept))
    return out


def ratio_clauses(report: Report) -> list[ClauseResult]:
    """Runtime clauses judged as candidate/baseline ratios (``max_ratio``) that produced an estimate."""
    return [c for c in report.clauses() if c.stage == "runtime" and isinstance(c.evidence, dict)
            and c.evidence.get("ratio") and c.observed is not None and math.isfinite(c.observed)]


def _margin(c: ClauseResult) -> float:
    bound = min((b.value for b in c.bounds if b.op == "max"), default=math.inf)
    top = c.interval[1] if c.interval and c.interval[1] is not None else c.observed
    return bound - top if math.isfinite(bound) else math.inf


def ratio_forest(report: Report) -> Figure | None:
    """One row per ratio clause: interval, estimate, and the clause's own bound as a tick."""
    rows = sorted(ratio_clauses(report), key=lambda c: (_margin(c), c.id))
    if not rows:
        return None
    span = [v for c in rows for v in [c.observed, *(c.interval or [])] if v is not None and math.isfinite(v)]
    lo, hi = padded(span + [1.0] + [b.value for c in rows for b in c.bounds
                                    if math.isfinite(b.value) and near(b.value, span + [1.0])])
    height = TOP + ROW * len(rows) + BOTTOM
    bottom = TOP + ROW * len(rows)
    x = Linear(lo, hi, LEFT, 720 - RIGHT)
    failing = sum(c.status in FAILING for c in rows)
    fig = Figure(id="runtime-ratios", title="latency ratio candidate / baseline per clause", height=height,
                 caption=("Each row is a `max_ratio` clause: dot = ratio estimate, bar = its confidence interval "
                          "(paired bootstrap; none for unpaired traffic), dashed tick = the clause's max_ratio. "
                          "Left of 1 the candidate is faster. Worst margin on top; failing clauses in red."
                          + (f" {failing} of {len(rows)} fail." if failing else "")),
                 legend=[("pass", "within bound"), ("fail", "failing clause"), ("bound", "max_ratio")])
    x_axis(fig, x, x.ticks(), y=bottom, top=TOP, title="ratio candidate / baseline")
    for i, c in enumerate(rows):
        y = TOP + ROW * i + ROW / 2
        cls = "fail" if c.status in FAILING else ("pass" if c.status == "pass" else "warn")
        what = f"{c.stat}({c.metric})" if c.metric else c.id
        fig.labels.append(Label(LEFT - 8, y + 4, shorten(f"{c.id} · {what}", 28), anchor="end", cls=f"row {cls}",
                                full=f"{c.id} · {what}"))
        estimate_row(fig, x, y, ROW, status=c.status, observed=c.observed, interval=c.interval, cls=cls,
                     where=f"{c.id}: {what} ratio = {format_value(c.observed)}")
        for b in c.bounds:
            if math.isfinite(b.value):
                at, beyond = clamp(x, b.value)
                fig.marks.append(Mark("segment", "bound", f"{c.id}: max_ratio {format_value(b.value)}{beyond}",
                                      at, y - ROW / 2 + 2, at, y + ROW / 2 - 2))
    return fig


def runtime_sections(report: Report) -> list[Section]:
    """The runtime section (latency CDFs, ratio intervals), or nothing without a runtime stage."""
    details = runtime_of(report)
    figures: list[Figure] = []
    if details is not None:
        levels = sorted({lv for role in details["measured"].values() if isinstance(role, dict)
                         for lv in role.get("levels", {})}, key=int)
        figures += [f for f in (latency_cdf(details, lv, report) for lv in levels) if f is not None]
    ratios = ratio_forest(report)
    if ratios is not None:
        figures.append(ratios)
    return [Section("runtime", "Runtime: latency distributions and paired ratios", figures)] if figures else []
