"""The HTML report (issue 15) without a browser: the drift profile's counts and merge, the plot model's
marks, escaping of hostile names, `check --output html=` and `promote render`."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner
from reports import clause, make_report

from promote.cli import cli
from promote.engine.profile import DriftProfile, bin_range, value_bins
from promote.report.figures import sections
from promote.report.render import render_html, render_markdown, render_text
from promote.resources import load_schema
from promote.results import format_value

HOSTILE = ['<script>alert(1)</script>', '</svg><img src=x onerror=alert(1)>', '"quoted" & \'single\'',
           '@octocat please', 'two\nlines']


def _profile(values: np.ndarray, positions: np.ndarray) -> DriftProfile:
    profile = DriftProfile()
    profile.update({"kl": values, "logit_osc": values * 10}, positions)
    return profile


def test_value_bins_are_log_spaced_and_cover_edges():
    edges = [bin_range(int(b)) for b in value_bins(np.array([0.0, -1e-20, 1e-13, 1e-12, 1.5e-3, 1e4, 1e9]))]
    assert edges[0] == edges[1] == (0.0, 1e-12)  # zero and tiny negatives: the underflow bin
    assert edges[2] == (0.0, 1e-12)
    assert math.isclose(edges[3][0], 1e-12)
    low, high = edges[4]
    assert low <= 1.5e-3 < high and math.isclose(high / low, 10 ** (1 / 8))
    assert edges[5][0] <= 1e4 and edges[6][1] == math.inf


def test_profile_means_exact_p99_an_upper_bound_within_one_bin_and_shards_merge_exactly():
    rng = np.random.default_rng(0)
    values = rng.lognormal(-9, 1.5, 5000)
    positions = rng.integers(0, 300, 5000)
    whole = _profile(values, positions).describe()
    halves = _profile(values[:2000], positions[:2000]).merge(_profile(values[2000:], positions[2000:])).describe()
    assert halves["kl"]["histogram"] == whole["kl"]["histogram"]
    assert [r["count"] for r in halves["kl"]["positions"]] == [r["count"] for r in whole["kl"]["positions"]]
    rows = whole["kl"]["positions"]
    assert [r["start"] for r in rows] == list(range(0, 300, 32)) and sum(r["count"] for r in rows) == 5000
    for row in rows:
        mine = values[(positions >= row["start"]) & (positions < row["end"])]
        assert math.isclose(row["mean"], mine.mean(), rel_tol=1e-12)
        exact = np.quantile(mine, 0.99, method="inverted_cdf")
        assert exact <= row["p99"] <= exact * 10 ** (1 / 8) * (1 + 1e-12)
        assert row["max"] == mine.max()
    blob = _profile(values, positions).to_bytes()
    assert DriftProfile().load_bytes(blob).describe() == whole


def _report_with_profile(names: list[str] | None = None):
    names = names or ["script=latin", "script=cyrillic", "script=cjk"]
    slices = [clause("slice-kl", "fail" if i == 1 else "pass", 5e-4 + 2e-3 * (i == 1), bound=1e-3, stage="slices",
                     slice=name) for i, name in enumerate(names)]
    for i, c in enumerate(slices):
        c.interval = [c.observed * 0.8, c.observed * 1.2]
        c.margin = 1e-3 - c.interval[1] if i != 1 else 1e-3 - c.interval[0]
    rng = np.random.default_rng(1)
    cand = _profile(rng.lognormal(-9, 1, 2000), rng.integers(0, 200, 2000))
    floor = _profile(rng.lognormal(-20, 1, 2000), rng.integers(0, 200, 2000))
    profile = {"value_bins": {"per_decade": 8, "low": 1e-12, "high": 1e4, "bins": 130},
               "position_edges": [0, 32], "candidate": cand.describe(), "noise_floor": floor.describe()}
    numerics = [clause("kl-p99", "pass", 3e-4, bound=2e-2, stat="p99"),
                clause("osc-max", "pass", 0.3, bound=2.0, metric="logit_osc", stat="max")]
    return make_report(numerics + slices, name=names[0], details={"profile": profile}), profile


def test_figures_draw_every_slice_bucket_and_bound_worst_margin_first():
    report, profile = _report_with_profile()
    jsonschema.validate(report.to_dict(), load_schema("report"))
    found = {f.id: f for s in sections(report) for f in s.figures}
    assert set(found) == {"forest-slice-kl", "drift-kl", "drift-logit_osc", "cdf-kl", "cdf-logit_osc"}
    forest = found["forest-slice-kl"]
    assert forest.mark_count == 3 * 2 + 1  # interval + estimate per slice, one bound
    assert [m.cls for m in forest.marks if m.kind == "point"] == ["est fail", "est pass", "est pass"]
    buckets = len(profile["candidate"]["kl"]["positions"])
    assert found["drift-kl"].mark_count == 4 * (buckets + 1)  # 4 series: a line and a dot per bucket
    assert found["cdf-kl"].mark_count == 2 + 1  # candidate and floor curves, the kl-p99 bound
    assert found["cdf-logit_osc"].mark_count == 2 + 1


def test_forest_draws_each_slices_own_bound_on_its_row():
    """slice_bounds give slices their own bounds: a shared rule would put passing dots beyond "the" bound
    (the example's report once drew only code's 8.2e-5 while 6 of 8 green dots sat past it)."""
    bounds = {"script=code": 8.2e-5, "script=latin": 9.2e-5, "script=cjk": 1.3e-4, "script=cyrillic": 1.3e-4}
    observed = {"script=code": 6.8e-5, "script=latin": 7.4e-5, "script=cjk": 8.8e-5, "script=cyrillic": 1.05e-4}
    slices = [clause("slice-kl", "pass", observed[name], bound=bound, stage="slices", slice=name)
              for name, bound in bounds.items()]
    for c in slices:
        c.interval = [c.observed * 0.98, c.observed * 1.02]
    report = make_report(slices)
    forest = next(f for s in sections(report) for f in s.figures if f.id == "forest-slice-kl")
    rows = {label.full: label.y - 4 for label in forest.labels if "row" in label.cls}
    ticks = [m for m in forest.marks if m.cls == "bound"]
    assert len(ticks) == 4 and "own bound" in forest.caption
    dots = {m.title.split(":")[0]: m for m in forest.marks if m.kind == "point"}
    for name, bound in bounds.items():
        tick = next(t for t in ticks if t.title.startswith(f"{name}:"))
        assert tick.y1 < rows[name] < tick.y2 and tick.y2 - tick.y1 < 20  # on its own row only
        assert tick.x1 == tick.x2 and dots[name].x1 < tick.x1  # every passing dot inside its own bound
        assert tick.title == f"{name}: bound ≤ {format_value(bound)}"
    shared = make_report([clause("slice-kl", "pass", v, bound=1.3e-4, stage="slices", slice=k)
                          for k, v in observed.items()])
    one = next(f for s in sections(shared) for f in s.figures if f.id == "forest-slice-kl")
    assert len([m for m in one.marks if m.cls == "bound"]) == 1 and "dashed line = bound" in one.caption


def test_drift_p99_is_shown_as_the_bin_edge_it_is_and_a_missing_floor_is_explained():
    """A profile p99 is its bin's upper edge: `≤ x`, and `< 1e-12` for the lowest bin (once printed as a
    measured "p99 1.00e-12"); a contract without `noise_floor` gets a reason, not "noise floor n/a"."""
    report, profile = _report_with_profile()
    exact = _profile(np.zeros(600), np.arange(600) % 200).describe()  # a bitwise-reproducible floor
    profile["noise_floor"] = exact
    text = render_text(report)
    line = next(x for x in text.splitlines() if x.strip().startswith("kl at positions"))
    assert "p99 ≤ " in line and "noise floor mean 0, p99 < 1e-12)" in line, line
    assert "1.00e-12" not in text
    cdf = next(f for s in sections(report) for f in s.figures if f.id == "drift-kl")
    assert not any("noise floor p99" in m.title for m in cdf.marks) and "below 1e-12" in cdf.note
    del profile["noise_floor"]
    for rendered in (render_text(report), render_markdown(report)):
        assert "No noise floor: the contract sets no `numerical.noise_floor`" in rendered
    assert "noise floor mean n/a" not in render_text(report)
    figure = next(f for s in sections(report) for f in s.figures if f.id == "drift-kl")
    assert "No noise floor" in figure.note


def test_no_profile_no_drift_sections():
    report = make_report([clause("kl-mean", "pass", 1e-4, bound=1e-3)])
    assert sections(report) == []
    html = render_html(report)
    assert "<svg" not in html and "kl-mean" in html


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001, ANN201
        self.tags.append(tag)

    def handle_data(self, data):  # noqa: ANN001, ANN201
        self.text.append(data)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_names_stay_text_in_html_markdown_and_text(hostile):
    report, _ = _report_with_profile([hostile, f"x{hostile}", f"y{hostile}"])
    html = render_html(report)
    parser = _Collect()
    parser.feed(html)
    assert "script" not in parser.tags and "img" not in parser.tags
    assert parser.tags.count("svg") == html.count("</svg>") == 5  # no name closed an SVG early
    assert "<script" not in html.lower() and "<img" not in html
    assert any(hostile.replace("\n", " ") in t.replace("\n", " ") or hostile in t for t in parser.text)
    markdown = render_markdown(report)
    assert "<script>" not in markdown and "</svg>" not in markdown and "@octocat" not in markdown
    assert render_text(report)


def test_check_writes_html_and_render_rerenders_every_format(mini, tmp_path):
    # bf16: a candidate that drifts (identical fp32 kernels have KL 0 everywhere, and nothing to plot)
    contract = mini.contract(precision="bf16",
                             numerical={"noise_floor": {"perturb": ["odd_batch"], "odd_batch_size": 3}})
    json_path, html_path = tmp_path / "r.json", tmp_path / "out" / "r.html"
    runner = CliRunner()
    result = runner.invoke(cli, ["check", str(contract), "--output", f"json={json_path}", "--output",
                                 f"html={html_path}"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    html = html_path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert re.search(r'<figure id="drift-kl" data-marks="\d+">', html)
    data = json.loads(json_path.read_text())
    profile = data["stages"][0]["details"]["profile"]
    assert {"candidate", "noise_floor"} <= set(profile)
    again = runner.invoke(cli, ["render", str(json_path), "--format", "html"], catch_exceptions=False)
    assert again.exit_code == 0 and again.stdout == html  # the JSON alone gives the same page
    for fmt in ("markdown", "text", "junit", "json"):
        out = runner.invoke(cli, ["render", str(json_path), "--format", fmt], catch_exceptions=False)
        assert out.exit_code == 0 and out.stdout.strip(), fmt
    assert json.loads(runner.invoke(cli, ["render", str(json_path), "--format", "json"]).stdout) == data


def test_render_rejects_a_file_that_is_not_a_report(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 1}')
    result = CliRunner().invoke(cli, ["render", str(bad)])
    assert result.exit_code == 2 and "is not a promote report" in result.output
    missing = CliRunner().invoke(cli, ["render", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2 and "cannot read" in missing.output


def test_comment_links_the_artifact_and_refuses_a_url_that_could_break_the_link(tmp_path):
    report, _ = _report_with_profile()
    path = tmp_path / "r.json"
    path.write_text(report.to_json())
    url = "https://github.com/o/r/actions/runs/1/artifacts/2"
    args = ["comment", "--report", str(path), "--dry-run", "--repo", "o/r", "--pr", "1"]
    result = CliRunner().invoke(cli, [*args, "--artifact-url", url], env={"GITHUB_TOKEN": "t"})
    assert result.exit_code == 0, result.output
    assert f"[Full report: plots (HTML) and JSON]({url})" in result.output
    for bad in ("https://x.io/a) [evil](https://e.vil", "javascript:alert(1)", "https://x.io/a b"):
        refused = CliRunner().invoke(cli, [*args, "--artifact-url", bad], env={"GITHUB_TOKEN": "t"})
        assert refused.exit_code == 2 and "--artifact-url" in refused.output, bad
    plain = CliRunner().invoke(cli, args, env={"GITHUB_TOKEN": "t"})
    assert plain.exit_code == 0 and "Full report" not in plain.output


def test_markdown_and_text_show_the_same_drift_profile():
    report, profile = _report_with_profile()
    markdown, text = render_markdown(report), render_text(report)
    rows = profile["candidate"]["kl"]["positions"]
    worst = max(rows, key=lambda r: r["mean"])
    assert markdown.count("\n| kl | [") == len(rows)
    assert f"kl at positions [{worst['start']}, {worst['end']}): mean" in text
    plain = make_report([clause("kl-mean", "pass", 1e-4, bound=1e-3)])
    assert "Drift along" not in render_markdown(plain) and "drift along" not in render_text(plain)
