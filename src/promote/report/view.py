"""The view of a Report that the templates render: rows worst first, charts, provenance, annotations.

Sorting, grouping and counting live here (plain Python, unit-testable), so templates only lay out
and escape. Nothing here knows about GitHub: annotation items are plain dicts that the CLI hands to
``github/workflow.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from promote.judgement import margin
from promote.policy import ACTION_SEVERITY, Action
from promote.report.model import Report
from promote.report.svg import tick
from promote.results import GREEN, STATUS_SEVERITY, ClauseResult, format_value

MAX_CHARTS = 6
MAX_CHART_SLICES = 30


@dataclass
class Row:
    """One clause with the action the policy took on it."""

    clause: ClauseResult
    action: Action | None
    margin: float | None

    @property
    def attention(self) -> bool:
        """Shown in the failing/warning table: not green, or the policy did something with it."""
        return self.clause.status not in GREEN or (self.action is not None and self.action.action != "pass")

    def sort_key(self) -> tuple:
        act = ACTION_SEVERITY.get(self.action.action, 0) if self.action else 0
        m = self.margin if self.margin is not None and math.isfinite(self.margin) else -math.inf
        return (-act, -STATUS_SEVERITY.get(self.clause.status, 0), m, self.clause.id, self.clause.slice or "")


@dataclass
class Chart:
    """A per-slice bar chart of one clause's observed values, with its bound as a line."""

    clause: str
    title: str
    y_label: str
    labels: list[str]
    values: list[float]
    bound: float | None
    omitted: int = 0


@dataclass
class DriftRow:
    """One position bucket of the drift profile, formatted for the markdown and text reports."""

    metric: str
    positions: str
    cand_mean: str
    cand_p99: str
    floor_mean: str
    floor_p99: str
    worst: bool = False  # the bucket with the highest candidate mean of its metric


@dataclass
class View:
    report: Report
    attention: list[Row]
    passing: list[Row]
    charts: list[Chart]
    counts: dict[str, int]
    provenance: dict[str, Any]
    stats: dict[str, int] = field(default_factory=dict)
    drift: list[DriftRow] = field(default_factory=list)
    floor_note: str = ""  # why the drift rows have no noise floor (none declared)


def _rows(report: Report) -> list[Row]:
    actions = list(report.decision.actions)
    rows = []
    for i, clause in enumerate(report.clauses()):
        # Actions are made clause by clause in the same order; fall back to matching by id and slice
        # for reports merged or edited by hand.
        action = actions[i] if i < len(actions) and actions[i].clause == clause.id \
            and actions[i].slice == clause.slice else next(
                (a for a in actions if a.clause == clause.id and a.slice == clause.slice), None)
        rows.append(Row(clause, action, margin(clause.observed, clause.bounds)))
    return rows


def _charts(report: Report) -> list[Chart]:
    groups: dict[str, list[ClauseResult]] = {}
    for clause in report.clauses():
        if clause.slice is not None:
            groups.setdefault(clause.id, []).append(clause)
    charts = []
    for clause_id, clauses in list(groups.items())[:MAX_CHARTS]:
        finite = [c for c in clauses if c.observed is not None and math.isfinite(c.observed)]
        # Worst first when there are more slices than a chart can show.
        finite.sort(key=lambda c: margin(c.observed, c.bounds) if c.bounds else -abs(c.observed or 0))
        shown = sorted(finite[:MAX_CHART_SLICES], key=lambda c: c.slice or "")
        first = clauses[0]
        bound = first.bounds[0].value if len(first.bounds) == 1 and math.isfinite(first.bounds[0].value) else None
        what = f"{first.stat}({first.metric})" if first.metric else "observed"
        charts.append(Chart(clause=clause_id, title=f"{clause_id}: {what} per slice", y_label=what,
                            labels=[c.slice or "" for c in shown], values=[float(c.observed) for c in shown],
                            bound=bound, omitted=len(clauses) - len(shown)))
    return [c for c in charts if c.values]


def _drift_rows(report: Report) -> list[DriftRow]:
    """The numerics drift profile (``details.profile``) as rows: the same data as the HTML figures."""
    from promote.report.figures import METRIC_NAMES, profile_of

    profile = profile_of(report)
    if profile is None:
        return []
    rows = []
    low = float(profile.get("value_bins", {}).get("low") or 0.0)
    for metric in METRIC_NAMES:
        cand = profile["candidate"].get(metric, {}).get("positions", [])
        floor = {(r["start"], r["end"]): r for r in profile.get("noise_floor", {}).get(metric, {}).get("positions", [])}
        means = [r["mean"] for r in cand if r["mean"] is not None]
        top = max(means, default=None)
        for r in cand:
            f = floor.get((r["start"], r["end"]), {})
            end = "∞" if r["end"] is None else str(r["end"])
            rows.append(DriftRow(metric, f"[{r['start']}, {end})", format_value(r["mean"], 3),
                                 _p99_text(r["p99"], low), format_value(f.get("mean"), 3),
                                 _p99_text(f.get("p99"), low), worst=r["mean"] == top))
    return rows


def _p99_text(value: float | None, low: float) -> str:
    """A profile p99 is the upper edge of its histogram bin (engine/profile.py), so it is shown as the bound
    it is: ``≤ 4.22e-04``, and ``< 1e-12`` for the lowest bin, whose edge says only "below"."""
    if value is None or not math.isfinite(value):
        return format_value(value, 3)
    if value <= low:
        return f"< {tick(value)}"
    return f"≤ {format_value(value, 3)}"


def _floor_note(report: Report) -> str:
    """Why the drift rows have no noise floor, when the contract declared none (else empty)."""
    from promote.report.figures import NO_FLOOR, profile_of

    profile = profile_of(report)
    return NO_FLOOR if profile is not None and "noise_floor" not in profile else ""


def build_view(report: Report, *, commit: str | None = None) -> View:
    """Everything a template needs, computed once."""
    rows = _rows(report)
    attention = sorted((r for r in rows if r.attention), key=Row.sort_key)
    passing = [r for r in rows if not r.attention]
    provenance = {
        "version": report.tool_version,
        "contract": report.contract["name"],
        "contract_sha256": report.contract["sha256"],
        "report_sha256": report.sha256(),
        "commit": commit or report.commit,
        "time": report.finished_at,
    }
    return View(report=report, attention=attention, passing=passing, charts=_charts(report),
                counts=report.counts(), provenance=provenance,
                stats={"clauses": len(rows), "attention": len(attention), "passing": len(passing)},
                drift=_drift_rows(report), floor_note=_floor_note(report))


def annotation_items(report: Report) -> list[dict[str, Any]]:
    """Annotations worst first: ``error`` for blocking actions or clauses that could not be evaluated,
    ``warning`` for warn actions, ``notice`` for non-green clauses the policy let pass; the identity
    findings come first (``error`` for an invalid one, ``notice`` for a note)."""
    items = [{"level": "error" if f.severity == "invalid" else "notice", "line": None,
              "title": f"promote identity {f.severity}: {f.check} [{f.side}]", "message": f"{f.message}; fix: {f.fix}"}
             for f in report.findings]
    for row in sorted(_rows(report), key=Row.sort_key):
        c, a = row.clause, row.action
        action = a.action if a else "pass"
        if c.status == "error" or ACTION_SEVERITY.get(action, 0) >= ACTION_SEVERITY["shadow-only"]:
            level = "error"
        elif action == "warn":
            level = "warning"
        elif c.status not in GREEN:
            level = "notice"
        else:
            continue
        where = f" [{c.slice}]" if c.slice else ""
        why = f" → {action}: {a.reason}" if a else ""
        items.append({"level": level, "title": f"promote {c.status}: {c.id}{where}", "line": c.line,
                      "message": f"{c.message}{why}"})
    return items
