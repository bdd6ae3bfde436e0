"""The report's figures, built from the Report's structured results (never from messages):

- per-slice forest plots: estimate and interval per slice, the bound as a rule, sorted by margin;
- drift along the sequence: mean and p99 of KL / logit oscillation per position bucket, the noise
  floor beside it (numerics ``details.profile``);
- distribution of per-token drift: the CDF of KL / logit oscillation, candidate and noise floor,
  with the bounds of clauses on that metric marked.

Each builder returns None when its data is absent, so a section appears only when there is
something to draw. The runtime stage's figures are in figures_runtime.py; the calibration heatmap
(its own page, `promote calibrate --html`) in calibration_html.py.
"""

from __future__ import annotations

import math
from typing import Any

from promote.judgement import margin as margin_of
from promote.report.figures_runtime import runtime_sections
from promote.report.model import Report
from promote.report.svg import (
    FAILING,
    Figure,
    Label,
    Linear,
    Log,
    Mark,
    Section,
    estimate_row,
    padded,
    shorten,
    tick,
    x_axis,
    y_axis,
)
from promote.results import GREEN, Bound, ClauseResult, format_value

MAX_FOREST_ROWS = 40
MAX_FORESTS = 8
ROW = 20
LEFT, RIGHT, TOP, BOTTOM = 190, 24, 18, 46
METRIC_NAMES = {"kl": "KL(reference ‖ candidate)", "logit_osc": "logit oscillation"}
NO_FLOOR = ("No noise floor: the contract sets no `numerical.noise_floor`, so nothing shows how far the reference "
            "drifts from itself (add e.g. `noise_floor: {perturb: [rerun, odd_batch]}`; docs/metrics.md)")


def _margin(c: ClauseResult) -> float:
    m = c.margin if c.margin is not None else margin_of(c.observed, c.bounds)
    return m if m is not None and math.isfinite(m) else -math.inf


def forest(clause_id: str, clauses: list[ClauseResult]) -> Figure | None:
    """One row per slice: the interval as a segment, the estimate as a point, worst margin on top.

    The bound is one dashed rule when every slice has the same; when slices have bounds of their own
    (``slice_bounds``), each row gets its own bound as a dashed tick, so no dot is read against another
    slice's bound."""
    rows = sorted((c for c in clauses if c.observed is not None and math.isfinite(c.observed)),
                  key=lambda c: (_margin(c), c.slice or ""))
    if not rows:
        return None
    omitted = len(rows) - MAX_FOREST_ROWS
    rows = rows[:MAX_FOREST_ROWS]
    first = rows[0]
    shared = len({tuple((b.op, b.value) for b in _finite_bounds(c)) for c in rows}) == 1
    span = [v for c in rows for v in (c.interval or [c.observed]) if v is not None and math.isfinite(v)]
    lo, hi = padded(span + [c.observed for c in rows] + [b.value for c in rows for b in _finite_bounds(c)])
    height = TOP + ROW * len(rows) + BOTTOM
    x = Linear(lo, hi, LEFT, 720 - RIGHT)
    what = f"{first.stat}({first.metric})" if first.metric else "estimate"
    failing = sum(c.status in FAILING for c in rows)
    rule = "dashed line = bound" if shared else "dashed tick = that slice's own bound"
    fig = Figure(id=f"forest-{clause_id}", title=f"{clause_id}: {what} per slice",
                 caption=(f"Each row is a slice: dot = estimate, bar = {_interval_name(first)}; {rule}. "
                          "Worst margin on top; failing slices in red."),
                 height=height, legend=[("pass", "within bound"), ("fail", "failing slice"), ("bound", "bound")])
    if omitted > 0:
        fig.note = f"{omitted} more slices with larger margins not shown"
    bottom = TOP + ROW * len(rows)
    x_axis(fig, x, x.ticks(), y=bottom, top=TOP, title=what)
    for i, c in enumerate(rows):
        y = TOP + ROW * i + ROW / 2
        cls = "fail" if c.status in FAILING else ("warn" if c.status not in GREEN else "pass")
        label = c.slice or c.id
        fig.labels.append(Label(LEFT - 8, y + 4, shorten(label, 26), anchor="end", cls=f"row {cls}", full=label))
        estimate_row(fig, x, y, ROW, status=c.status, observed=c.observed, interval=c.interval, cls=cls,
                     where=f"{label}: {what} = {format_value(c.observed)}")
        if not shared:
            for b in _finite_bounds(c):
                fig.marks.append(Mark("segment", "bound", f"{label}: {_bound_text(b)}", x(b.value), y - ROW / 2 + 1,
                                      x(b.value), y + ROW / 2 - 1))
    for b in _finite_bounds(first) if shared else ():
        fig.marks.append(Mark("segment", "bound", _bound_text(b), x(b.value), TOP - 6, x(b.value), bottom))
    fig.caption += f" {failing} of {len(rows)} shown fail." if failing else ""
    return fig


def _finite_bounds(c: ClauseResult) -> tuple[Bound, ...]:
    return tuple(b for b in c.bounds if math.isfinite(b.value))


def _bound_text(b: Bound) -> str:
    return f"bound {'≤' if b.op == 'max' else '≥'} {format_value(b.value)}"


def _interval_name(c: ClauseResult) -> str:
    level = c.evidence.get("ci_level") if isinstance(c.evidence, dict) else None
    return f"{level:.0%} confidence interval" if isinstance(level, (int, float)) else "interval judged"


def forests(report: Report) -> list[Figure]:
    groups: dict[str, list[ClauseResult]] = {}
    for c in report.clauses():
        if c.slice is not None:
            groups.setdefault(c.id, []).append(c)
    figures = [forest(cid, cs) for cid, cs in groups.items()]
    return [f for f in figures if f is not None][:MAX_FORESTS]


def profile_of(report: Report) -> dict[str, Any] | None:
    for stage in report.stages:
        profile = stage.details.get("profile") if stage.name == "numerics" else None
        if isinstance(profile, dict) and profile.get("candidate"):
            return profile
    return None


SERIES = (("candidate", "mean", "cand", "candidate mean"), ("candidate", "p99", "cand p99", "candidate p99"),
          ("noise_floor", "mean", "floor", "noise floor mean"), ("noise_floor", "p99", "floor p99", "noise floor p99"))


def drift_along(profile: dict[str, Any], metric: str) -> Figure | None:
    """Mean and p99 per position bucket on a log axis, candidate and noise floor as separate lines."""
    buckets = sorted({(r["start"], r["end"]) for who in ("candidate", "noise_floor")
                      for r in profile.get(who, {}).get(metric, {}).get("positions", [])})
    if not buckets:
        return None
    series = []
    low = float(profile.get("value_bins", {}).get("low") or 0.0)
    underflow = False  # a p99 in the histogram's lowest bin: only "below `low`" is known, nothing to draw
    for who, stat, cls, name in SERIES:
        rows = {(r["start"], r["end"]): r.get(stat) for r in profile.get(who, {}).get(metric, {}).get("positions", [])}
        if rows:
            values = [rows.get(b) for b in buckets]
            if stat == "p99":
                underflow |= any(v is not None and 0 < v <= low for v in values)
                values = [None if v is not None and v <= low else v for v in values]
            series.append((cls, name, values))
    positive = [v for _, _, vals in series for v in vals if v is not None and v > 0]
    if not positive:
        return None
    height = 300
    bottom = height - BOTTOM
    x = Linear(-0.5, len(buckets) - 0.5, 70, 720 - RIGHT)
    y = Log(min(positive), max(positive), bottom, TOP)
    name = METRIC_NAMES.get(metric, metric)
    fig = Figure(id=f"drift-{metric}", title=f"{name} along the sequence", height=height,
                 caption=(f"Mean (solid) and p99 (dashed) of per-token {name} by position bucket, log scale; "
                          "the noise floor is the reference against itself. A line rising at some position is a "
                          "position-dependent bug (RoPE, long context)."),
                 legend=[(cls, label) for cls, label, _ in series])
    y_axis(fig, y, y.ticks(), x0=70, x1=720 - RIGHT, title=name)
    step = max(1, len(buckets) // 12)
    for i, (start, _end) in enumerate(buckets):
        if i % step == 0:
            fig.labels.append(Label(x(i), bottom + 14, str(start)))
    fig.labels.append(Label((70 + 720 - RIGHT) / 2, bottom + 32, "position (bucket start)", cls="axis"))
    zero_floor = False
    for cls, label, values in series:
        pts = [(x(i), y(v), buckets[i], v) for i, v in enumerate(values) if v is not None and v > 0]
        zero_floor |= cls.startswith("floor") and any(v == 0 for v in values)
        if len(pts) > 1:
            fig.marks.append(Mark("path", f"line {cls}", label, points=" ".join(f"{px},{py}" for px, py, _, _ in pts)))
        for px, py, (start, end), v in pts:
            where = f"[{start}, {end if end is not None else '∞'})"
            bound = "≤ " if "p99" in cls else ""  # a p99 is its histogram bin's upper edge
            fig.marks.append(Mark("point", f"dot {cls}", f"{label} at positions {where}: {bound}{format_value(v)}",
                                  px, py, r=2.5))
    notes = ["the noise floor is exactly 0 in some buckets (bitwise reproducible); 0 has no place on a log axis"
             ] if zero_floor else []
    if underflow:
        notes.append(f"a p99 below {tick(low)} (the profile's lowest bin) is not drawn")
    if "noise_floor" not in profile:
        notes.append(NO_FLOOR)
    fig.note = "; ".join(notes)
    return fig


def distribution(profile: dict[str, Any], metric: str, report: Report) -> Figure | None:
    """The CDF of per-token values from the fixed log bins, candidate and noise floor, bounds marked."""
    bins = profile["value_bins"]
    curves = []
    for who, cls, label in (("candidate", "cand", "candidate"), ("noise_floor", "floor", "noise floor")):
        hist = profile.get(who, {}).get(metric, {}).get("histogram")
        if hist and sum(hist["counts"]):
            curves.append((cls, label, hist))
    if not curves:
        return None

    def edge(index: int) -> float:  # upper edge of bin `index` (bin 0 ends at `low`)
        return bins["low"] * 10.0 ** (index / bins["per_decade"])

    bounds = [(c.id, b) for c in report.clauses() if c.metric == metric and c.slice is None and c.stage == "numerics"
              for b in c.bounds if b.value > 0 and math.isfinite(b.value)]
    xs = [edge(h["offset"] + k) for _, _, h in curves for k in (-1, len(h["counts"]))] + [b.value for _, b in bounds]
    xs = [v for v in xs if v > 0]
    height = 280
    bottom = height - BOTTOM
    x = Log(min(xs), max(xs), 70, 720 - RIGHT)
    y = Linear(0, 1, bottom, TOP)
    name = METRIC_NAMES.get(metric, metric)
    fig = Figure(id=f"cdf-{metric}", title=f"distribution of per-token {name}", height=height,
                 caption=(f"Share of positions with {name} at most x (CDF, log x). A curve shifted right is drift "
                          "everywhere; a long flat top is a tail. Dashed: clause bounds on this metric."),
                 legend=[(cls, label) for cls, label, _ in curves] + ([("bound", "clause bound")] if bounds else []))
    x_axis(fig, x, x.ticks(), y=bottom, top=TOP, title=name)
    y_axis(fig, y, [0, 0.25, 0.5, 0.75, 1.0], x0=70, x1=720 - RIGHT, title="share of positions")
    for cls, label, hist in curves:
        total = sum(hist["counts"])
        cum, pts = 0, [(x(edge(hist["offset"] - 1)), y(0))]
        for k, count in enumerate(hist["counts"]):
            cum += count
            right = x(edge(hist["offset"] + k))
            pts += [(right, pts[-1][1]), (right, y(cum / total))]
        fig.marks.append(Mark("path", f"line {cls}", f"{label}: {total} positions",
                              points=" ".join(f"{px},{py}" for px, py in pts)))
    for cid, b in bounds:
        fig.marks.append(Mark("segment", "bound", f"{cid}: {'≤' if b.op == 'max' else '≥'} {tick(b.value)}",
                              x(b.value), TOP, x(b.value), bottom))
    return fig


def sections(report: Report) -> list[Section]:
    """Every section with something to draw, in reading order."""
    out = []
    slices = forests(report)
    if slices:
        out.append(Section("slices", "Slices: estimate and interval against the bound", slices))
    profile = profile_of(report)
    if profile:
        metrics = [m for m in METRIC_NAMES if m in profile["candidate"]]
        along = [f for f in (drift_along(profile, m) for m in metrics) if f is not None]
        if along:
            out.append(Section("drift", "Drift along the sequence", along))
        dist = [f for f in (distribution(profile, m, report) for m in metrics) if f is not None]
        if dist:
            out.append(Section("distribution", "Distribution of per-token drift", dist))
    return out + runtime_sections(report)
