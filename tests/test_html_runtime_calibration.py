"""The HTML report's runtime figures (a real torch-kernel runtime run) and the calibration heatmap
(`promote calibrate --html`): figures present, marks counted independently from the JSON, statuses
coloured, hostile ids escaped."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser

import jsonschema
from click.testing import CliRunner

from promote.cli import cli
from promote.report.calibration_html import render_calibration_html
from promote.resources import data_dir


class _Marks(HTMLParser):
    """Every element with class `mark`, per enclosing figure id, with its classes and tooltip."""

    def __init__(self) -> None:
        super().__init__()
        self.figure: str | None = None
        self.declared: dict[str, int] = {}
        self.marks: dict[str, list[dict]] = {}
        self.current: dict | None = None
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001, ANN201
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "figure":
            self.figure = a["id"]
            self.declared[a["id"]] = int(a["data-marks"])
            self.marks[a["id"]] = []
        classes = (a.get("class") or "").split()
        if "mark" in classes and self.figure:
            self.current = {"tag": tag, "classes": classes, "title": ""}
            self.marks[self.figure].append(self.current)

    def handle_endtag(self, tag):  # noqa: ANN001, ANN201
        if tag == "title":
            self.current = None if self.current and self.current["title"] else self.current

    def handle_data(self, data):  # noqa: ANN001, ANN201
        if self.current is not None and self.tags and self.tags[-1] == "title":
            self.current["title"] += data


def _parse(html: str) -> _Marks:
    parser = _Marks()
    parser.feed(html)
    for fid, marks in parser.marks.items():
        assert parser.declared[fid] == len(marks), fid
    return parser


def test_runtime_run_draws_latency_cdfs_and_ratio_intervals(mini, tmp_path):
    path = mini.contract(extra={"runtime": {"warmup": 1, "repeats": 1, "concurrency": [1, 3], "resamples": 199,
                                            "clauses": [
        {"id": "ratio-ok", "metric": "latency_ms", "stat": "p50", "max_ratio": 50},
        {"id": "ratio-tight", "metric": "latency_ms", "stat": "p50", "max_ratio": 0.01},
        {"id": "ratio-unpaired", "metric": "latency_ms", "stat": "p50", "max_ratio": 50, "paired": False},
        {"id": "abs", "metric": "latency_ms", "stat": "p90", "max": 60000},
        {"id": "abs-c3", "metric": "latency_ms", "stat": "p50", "max": 60000, "concurrency": 3}]}})
    json_path, html_path = tmp_path / "r.json", tmp_path / "r.html"
    result = CliRunner().invoke(cli, ["check", str(path), "--stage", "runtime", "--output", f"json={json_path}",
                                      "--output", f"html={html_path}"], catch_exceptions=False)
    assert result.exit_code == 1, result.output  # ratio-tight fails
    data = json.loads(json_path.read_text())
    schema = json.loads((data_dir("schemas") / "report.schema.json").read_text())
    jsonschema.validate(data, schema)
    stage = next(s for s in data["stages"] if s["name"] == "runtime")
    measured = stage["details"]["runtime"]["measured"]
    parsed = _parse(html_path.read_text(encoding="utf-8"))

    # latency CDFs: one curve per role with quantiles, one bound per absolute clause at that level
    for level in ("1", "3"):
        fig = parsed.marks[f"latency-c{level}"]
        roles = [r for r in ("baseline", "candidate") if len(measured[r]["levels"][level]["latency_quantiles_ms"]) > 1]
        assert len(roles) == 2 and all(len(measured[r]["levels"][level]["latency_quantiles_ms"]) == 21 for r in roles)
        absolute = [c for c in stage["clauses"] if "ratio" not in c["evidence"] and c["evidence"].get(
            "concurrency") == int(level) for b in c["bounds"] if b["value"] is not None]
        assert sum(m["tag"] == "polyline" for m in fig) == len(roles)
        assert sum("bound" in m["classes"] for m in fig) == len(absolute) == 1
        q = measured["candidate"]["levels"][level]["latency_quantiles_ms"]
        assert q == sorted(q) and q[0] > 0

    # ratio intervals: per ratio clause a point, a bound tick, and a bar when it has an interval
    ratios = [c for c in stage["clauses"] if c["evidence"].get("ratio") and c["observed"] is not None]
    assert {c["id"] for c in ratios} == {"ratio-ok", "ratio-tight", "ratio-unpaired"}
    expected = sum(2 + (c.get("interval") is not None) for c in ratios)
    fig = parsed.marks["runtime-ratios"]
    assert len(fig) == expected
    failing = {c["id"] for c in ratios if c["status"] == "fail"}
    assert failing == {"ratio-tight"}
    red = [m for m in fig if "fail" in m["classes"]]
    assert red and all(m["title"].startswith("ratio-tight") for m in red)
    points = [m for m in fig if m["tag"] == "circle"]
    assert points[0]["title"].startswith("ratio-tight")  # worst margin on top
    assert all(math.isfinite(c["observed"]) for c in ratios)


def _calibration_doc(ids: list[str], variants: list[tuple[str, str, dict[str, str]]]) -> dict:
    status = {"caught": "fail", "missed": "pass", "pass": "pass", "fail": "fail", "inconclusive": "inconclusive",
              "error": "error"}
    rows = []
    for name, kind, cells in variants:
        rows.append({"name": name, "kind": kind, "description": f"{name} <b>row</b>",
                     "covered": kind == "fault" or None,
                     "outcome": next(iter(cells.values())) if cells else "pass",
                     "cells": {cid: {"status": status[r], "result": r, "slice": None, "observed": 0.125 * (i + 1),
                                     "bounds": [{"op": "max", "value": 0.5}], "message": "m",
                                     "slices_failing": 0, "slices": 1}
                               for i, (cid, r) in enumerate(cells.items())}})
    return {"schema": "promote-calibration/1", "contract": {"name": "c <script>", "path": "c.yaml", "sha256": "0" * 64},
            "samples": 8, "clauses": [{"id": i, "stage": "numerics", "metric": "kl", "stat": "mean",
                                       "bounds": [{"op": "max", "value": 0.5}]} for i in ids],
            "variants": rows, "problems": ["fault `x<img>` is covered but missed"], "exit_code": 1}


HOSTILE = '<script>alert(1)</script>"\'&'


def test_heatmap_from_a_hand_made_document_colours_every_cell_and_escapes_ids():
    ids = ["kl-mean", HOSTILE, "osc-max"]
    doc = _calibration_doc(ids, [
        ("honest", "honest", {"kl-mean": "pass", HOSTILE: "pass", "osc-max": "fail"}),
        ("nan-logits", "fault", {"kl-mean": "caught", HOSTILE: "missed", "osc-max": "inconclusive"}),
        (f"fault{HOSTILE}", "fault", {"kl-mean": "missed"}),  # two clauses absent from this row
    ])
    schema = json.loads((data_dir("schemas") / "calibration.schema.json").read_text())
    jsonschema.validate(doc, schema)
    html = render_calibration_html(doc)
    assert "<script" not in html.lower() and "<img" not in html and "<b>" not in html
    parsed = _parse(html)
    cells = parsed.marks["calibration-heatmap"]
    assert len(cells) == len(doc["variants"]) * len(doc["clauses"]) == 9
    for row_index, row in enumerate(doc["variants"]):
        for col, cid in enumerate(ids):
            mark = cells[row_index * len(ids) + col]
            want = row["cells"][cid]["result"] if cid in row["cells"] else "none"
            assert f"h-{want}" in mark["classes"], (row["name"], cid, mark)
            assert cid in mark["title"] and row["name"] in mark["title"]
            if cid in row["cells"]:
                assert format(row["cells"][cid]["observed"], ".3g") in mark["title"]
    assert "alert(1)" in "".join(m["title"] for m in cells)  # the id is shown, as text


def test_calibrate_html_from_a_real_run(mini, tmp_path):
    contract = mini.contract()
    html_path, json_path = tmp_path / "cal.html", tmp_path / "cal.json"
    result = CliRunner().invoke(cli, ["calibrate", str(contract), "--faults", "temperature-0.9", "--html",
                                      str(html_path), "--json", str(json_path)], catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    doc = json.loads(json_path.read_text())
    html = html_path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    cells = _parse(html).marks["calibration-heatmap"]
    assert len(cells) == len(doc["variants"]) * len(doc["clauses"]) > 0
    results = [row["cells"].get(c["id"], {}).get("result", "none") for row in doc["variants"] for c in doc["clauses"]]
    assert [next(k[2:] for k in m["classes"] if k.startswith("h-")) for m in cells] == results
    stdout = CliRunner().invoke(cli, ["calibrate", str(contract), "--faults", "temperature-0.9", "--format", "html"])
    assert stdout.exit_code == result.exit_code and re.search(r'<figure id="calibration-heatmap"', stdout.stdout)
