"""`promote calibrate --html`: the calibration document (schemas/calibration.schema.json) as one
self-contained HTML page, a heatmap variant × clause with the report's page shell and CSS.

Every cell is a mark coloured by its result (caught, missed, inconclusive, pass, fail, error; ``none``
where a clause gave no result in that variant), with the observed value, bound and slice in its
tooltip; row and column names are labels, autoescaped like every report string.
"""

from __future__ import annotations

import math
from typing import Any

import jinja2

from promote.redact import redact, redact_data
from promote.report.svg import Figure, Label, Mark, shorten

LEFT, RIGHT, TOP, ROW = 200, 16, 34, 26
LEGEND = [("h-caught", "fault caught"), ("h-missed", "fault missed"), ("h-pass", "pass"), ("h-fail", "fail"),
          ("h-inconclusive", "inconclusive"), ("h-none", "no result")]
OUTCOME_CLASS = {"caught": "pass", "pass": "pass", "missed": "fail", "fail": "fail", "error": "error",
                 "inconclusive": "inconclusive"}


def cell_value(x: Any) -> str:
    """A calibration table cell's number as the markdown table and the heatmap tooltips show it."""
    if x is None:
        return "–"
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        shown = f"{x:.3g}"
        return f"{x:.6g}" if shown in ("1", "-1") and x != round(x) else shown  # 0.99981 is not "1"
    return str(x)


def _tooltip(row: dict[str, Any], cid: str, cell: dict[str, Any] | None) -> str:
    if cell is None:
        return f"{row['name']} × {cid}: no result"
    bound = ", ".join(f"{'≤' if b['op'] == 'max' else '≥'} {cell_value(b['value'])}"
                      for b in cell["bounds"]) or "no bound"
    where = f" in slice {cell['slice']}" if cell.get("slice") else ""
    return (f"{row['name']} × {cid}: {cell['result']} ({cell['status']}), observed {cell_value(cell['observed'])}"
            f"{where}, bound {bound}")


def heatmap(doc: dict[str, Any]) -> Figure:
    """One cell per variant × clause, rows in the document's order (honest, legitimate, faults)."""
    ids = [c["id"] for c in doc["clauses"]]
    rows = doc["variants"]
    width = 720
    col = (width - LEFT - RIGHT) / max(len(ids), 1)
    height = TOP + ROW * len(rows) + 12
    fig = Figure(id="calibration-heatmap", title="faults × clauses", height=height, width=width,
                 caption=("Each row is a variant, each column a clause. Faults should be caught (red row = missed "
                          "everywhere); honest and legitimate variants should pass in every column. Hover a cell "
                          "for the observed value and bound."),
                 legend=list(LEGEND))
    chars = max(3, int(col / 6.5))
    for j, cid in enumerate(ids):
        fig.labels.append(Label(LEFT + col * (j + 0.5), TOP - 8, shorten(cid, chars), full=cid))
    for i, row in enumerate(rows):
        y = TOP + ROW * i
        name = row["name"] + (" (covered)" if row.get("covered") else "")
        unclaimed = row["kind"] == "fault" and not row.get("covered")  # missing it is no problem
        cls = "row fail" if row["outcome"] in ("fail", "error") or (row["outcome"] == "missed" and not unclaimed) \
            else "row"
        fig.labels.append(Label(LEFT - 8, y + ROW / 2 + 4, shorten(f"{name} · {row['kind']}", 30), anchor="end",
                                cls=cls, full=f"{name} · {row['kind']}: {row['description']}"))
        for j, cid in enumerate(ids):
            cell = row["cells"].get(cid)
            result = cell["result"] if cell is not None else "none"
            fig.marks.append(Mark("rect", f"cell h-{result}", _tooltip(row, cid, cell), round(LEFT + col * j, 2), y,
                                  round(col, 2), ROW))
    return fig


def render_calibration_html(doc: dict[str, Any]) -> str:
    """The page: heading, the heatmap, the problems, every variant's outcome; secrets masked."""
    from promote.report.render import _environment

    doc = redact_data(doc)
    env = _environment(False)
    env.autoescape = True
    outcomes: dict[str, int] = {}
    for row in doc["variants"]:
        outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + 1
    context = {"doc": doc, "figure_model": heatmap(doc), "outcomes": sorted(outcomes.items()),
               "outcome_class": OUTCOME_CLASS,
               "verdict_class": "verdict-bad" if doc["exit_code"] else "verdict-pass"}
    try:
        text = env.get_template("calibration.html.j2").render(**context)
    except jinja2.TemplateError as exc:
        from promote.report.render import RenderError

        raise RenderError(f"calibration.html.j2: {exc}") from exc
    return redact(text)
