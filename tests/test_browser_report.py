"""The example's HTML report in a real browser (headless Chromium over the DevTools protocol): no
console errors, every figure an SVG with the number of marks its data calls for, failing slices
drawn in the failing colour, dark and print themes applied, and a screenshot taken.

Chromium is required under CI=true (``.ci/run`` installs it); elsewhere the test skips without it.
``PROMOTE_SCREENSHOT=PATH`` also writes the light-theme screenshot there (docs/report-example.png).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from browser import Browser, chromium_path
from conftest import unavailable

FAILING_SLICES = {"script=cyrillic", "lang=ru", "lang=uk"}


@pytest.fixture(scope="module")
def browser():
    binary = chromium_path()
    if binary is None:
        unavailable("chromium not installed (apt-get install -y chromium)")
    b = Browser(binary)
    try:
        yield b
    finally:
        b.close()


def _expected_marks(report: dict) -> dict[str, int]:
    """Marks each figure must have, counted from the JSON report independently of the plot code."""
    out: dict[str, int] = {}
    clauses = [c for s in report["stages"] for c in s["clauses"]]
    for cid in dict.fromkeys(c["id"] for c in clauses if c.get("slice") is not None):
        rows = [c for c in clauses if c["id"] == cid and c.get("slice") is not None and c["observed"] is not None]
        shown = rows[:40]
        own = {tuple((b["op"], b["value"]) for b in c["bounds"]) for c in shown}  # one rule, else a tick per row
        bounds = len(shown[0]["bounds"]) if len(own) == 1 else sum(len(c["bounds"]) for c in shown)
        out[f"forest-{cid}"] = sum(1 + ("interval" in c) for c in shown) + bounds
    numerics = next(s for s in report["stages"] if s["name"] == "numerics")
    profile = numerics["details"]["profile"]
    low = profile["value_bins"]["low"]  # a p99 in the lowest bin is only known to be below it: not drawn
    for metric in ("kl", "logit_osc"):
        marks = 0
        for who in ("candidate", "noise_floor"):
            for stat in ("mean", "p99"):
                least = low if stat == "p99" else 0
                drawn = sum(1 for r in profile[who][metric]["positions"] if (r[stat] or 0) > least)
                marks += drawn + (drawn > 1)
        out[f"drift-{metric}"] = marks
        bounds = sum(len(c["bounds"]) for c in numerics["clauses"] if c["metric"] == metric)
        out[f"cdf-{metric}"] = 2 + bounds
    return out


def test_example_report_renders_in_chromium(cyrillic_fault_run, browser, tmp_path):
    report, html = cyrillic_fault_run["report"], cyrillic_fault_run["html"]
    browser.load(html.resolve().as_uri())
    assert browser.errors() == []
    figures = browser.evaluate("""Array.from(document.querySelectorAll('figure')).map(f => ({
        id: f.id, svgs: f.querySelectorAll('svg').length, marks: f.querySelectorAll('svg .mark').length,
        declared: Number(f.dataset.marks), caption: f.querySelector('figcaption').textContent.trim(),
        width: f.querySelector('svg').getBoundingClientRect().width,
        height: f.querySelector('svg').getBoundingClientRect().height}))""")
    expected = _expected_marks(report)
    assert {f["id"]: f["marks"] for f in figures} == expected
    for f in figures:
        assert f["svgs"] == 1 and f["marks"] == f["declared"] > 0 and f["caption"], f
        assert f["width"] > 300 and f["height"] > 50, f  # laid out, not collapsed
    failing = browser.evaluate("""Array.from(document.querySelectorAll('#forest-slice-kl text.row.fail'))
        .map(t => t.textContent)""")
    assert set(failing) == FAILING_SLICES
    colours = browser.evaluate("""(() => {
        const fill = sel => getComputedStyle(document.querySelector(sel)).fill;
        return {fail: fill('#forest-slice-kl circle.est.fail'), pass: fill('#forest-slice-kl circle.est.pass'),
                band: document.querySelectorAll('#forest-slice-kl rect.fail-band').length,
                top: Array.from(document.querySelectorAll('#forest-slice-kl circle.est')).slice(0, 3)
                     .map(c => c.classList.contains('fail'))}; })()""")
    assert colours["fail"] != colours["pass"] and colours["band"] == len(FAILING_SLICES)
    assert colours["top"] == [True, True, True]  # sorted by margin: the failing slices come first

    shot = tmp_path / "report.png"
    png = browser.screenshot(shot)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width >= 1000 and height > 2000
    if os.environ.get("PROMOTE_SCREENSHOT"):
        Path(os.environ["PROMOTE_SCREENSHOT"]).write_bytes(png)

    browser.screenshot(tmp_path / "dark.png", dark=True)
    dark = browser.evaluate("getComputedStyle(document.body).backgroundColor")
    browser.call("Emulation.setEmulatedMedia", media="print", features=[])
    printed = browser.evaluate("getComputedStyle(document.body).backgroundColor")
    assert dark == "rgb(13, 17, 23)" and printed == "rgb(255, 255, 255)"
    assert browser.errors() == []
