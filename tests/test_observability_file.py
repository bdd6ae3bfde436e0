"""Stage 4 on snapshot files (the embedded default): the shipped example, selectors and stats, freshness
from timestamps, no-data handling, a file that is not exposition format, and contract mistakes."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from promote.cli import cli
from promote.contract.promql import format_duration, parse_duration, parse_selector
from promote.observability.selectors import histogram_quantile, promql_for

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "observability"
MODEL = str(REPO / "examples" / "tiny_lm" / "model.py") + ":build"

SNAPSHOT = """\
# TYPE req counter
req_total{version="stable",outcome="ok"} 990
req_total{version="stable",outcome="error"} 10
req_total{version="canary",outcome="ok"} 985
req_total{version="canary",outcome="error"} 15
# TYPE beat gauge
beat{version="canary"} 1 %d
beat{version="stable"} 1 %d
"""


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def write_contract(tmp_path: Path, source: dict, clauses: list[dict]) -> Path:
    doc = {"version": 1, "name": "obs", "reference": {"kind": "torch", "model": MODEL},
           "candidate": {"kind": "torch", "model": MODEL}, "data": {"path": "absent.jsonl"},
           "observability": {"source": source, "clauses": clauses}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run(path: Path):
    result = invoke("check", str(path), "--stage", "observability", "--format", "json")
    return result, (json.loads(result.stdout) if result.stdout.startswith("{") else None)


def test_shipped_example_passes_and_its_snapshot_is_reproducible(tmp_path):
    result, report = run(EXAMPLE / "contract.yaml")
    assert result.exit_code == 0, result.stdout
    assert {c["status"] for c in report["stages"][0]["clauses"]} == {"pass"}
    assert len(report["stages"][0]["clauses"]) == 6
    assert report["kernels"] is None and report["data"] is None  # the contract declares neither
    copy = tmp_path / "make_snapshot.py"
    shutil.copy(EXAMPLE / "make_snapshot.py", copy)
    subprocess.run([sys.executable, str(copy)], check=True, capture_output=True)
    assert (tmp_path / "canary.prom").read_bytes() == (EXAMPLE / "canary.prom").read_bytes()


def test_selectors_stats_relative_and_freshness_on_a_file(tmp_path):
    now_ms = int(time.time() * 1000)
    (tmp_path / "m.prom").write_text(SNAPSHOT % (now_ms, now_ms - 600_000))
    clauses = [
        {"id": "errors", "metric": 'req_total{outcome="error"}', "stat": "sum", "by": ["version"], "max": 12},
        {"id": "vs-stable", "metric": 'req_total{outcome="error"}', "stat": "sum", "max_ratio": 1.2,
         "compare": {"label": "version", "candidate": "canary", "baseline": "stable"}},
        {"id": "fresh", "metric": "beat", "max_age": "5m"},
        {"id": "absent", "metric": 'req_total{version="nope"}', "require": "present", "on_missing": "inconclusive"},
    ]
    result, report = run(write_contract(tmp_path, {"kind": "file", "path": "m.prom"}, clauses))
    got: dict[str, list] = {}
    for c in report["stages"][0]["clauses"]:
        got.setdefault(c["id"], []).append(c)
    assert {c["slice"]: c["status"] for c in got["errors"]} == {"version=stable": "pass", "version=canary": "fail"}
    assert got["vs-stable"][0]["observed"] == pytest.approx(1.5) and got["vs-stable"][0]["status"] == "fail"
    ages = {c["slice"].split("version=")[1]: c for c in got["fresh"]}
    assert ages["canary"]["status"] == "pass" and ages["stable"]["status"] == "fail"  # 10 minutes old
    assert ages["stable"]["observed"] > 300
    assert got["absent"][0]["status"] == "inconclusive" and "no data" in got["absent"][0]["message"]
    assert result.exit_code == 1


def test_a_sample_without_timestamp_is_as_old_as_the_file(tmp_path):
    snap = tmp_path / "m.prom"
    snap.write_text("beat 1\n")
    old = time.time() - 3600
    os.utime(snap, (old, old))
    result, report = run(write_contract(tmp_path, {"kind": "file", "path": "m.prom"},
                                        [{"id": "fresh", "metric": "beat", "max_age": "30m"}]))
    clause = report["stages"][0]["clauses"][0]
    assert clause["status"] == "fail" and clause["observed"] == pytest.approx(3600, abs=60)


def test_a_file_that_is_not_exposition_format_names_its_line(tmp_path):
    (tmp_path / "m.prom").write_text('# TYPE ok counter\nok_total 1\n{"not": "metrics"}\n')
    result = invoke("check", str(write_contract(tmp_path, {"kind": "file", "path": "m.prom"},
                                                [{"id": "a", "metric": "ok_total", "require": "present"}])),
                    "--stage", "observability")
    assert result.exit_code == 2
    assert "m.prom:3: not a valid Prometheus text format snapshot" in result.stderr
    assert '{"not": "metrics"}' in result.stderr and "Traceback" not in result.output


def test_contract_mistakes_are_located_at_validate(tmp_path):
    clauses = [
        {"id": "q-on-file", "query": "up", "max": 1},
        {"id": "age-of-query", "query": "up", "max_age": "5m"},
        {"id": "nothing", "metric": "up"},
        {"id": "ratio-alone", "metric": "up", "max_ratio": 2},
        {"id": "bad-selector", "metric": "up{job}", "require": "present"},
    ]
    result = invoke("validate", str(write_contract(tmp_path, {"kind": "file", "path": "m.prom"}, clauses)))
    assert result.exit_code == 2
    err = result.stderr
    assert "`query` needs a Prometheus source" in err
    assert "`max_age` needs `metric:`" in err
    assert "clause `nothing` bounds nothing" in err
    assert "`max_ratio` compares with a baseline" in err
    assert "cannot read a label matcher at `job`" in err
    assert all(":" in line.split(" ")[0] for line in err.strip().splitlines())  # FILE:LINE:COL: each


def test_selector_promql_and_histogram_quantile_agree_with_prometheus():
    sel = parse_selector('lat{version="canary", pod=~"a.*"}')
    assert promql_for(sel, "p99", ("version",)) == ('histogram_quantile(0.99, sum by (le, version) '
                                                   '(lat_bucket{version="canary",pod=~"a.*"}))')
    assert promql_for(sel, "mean", ()) == ('sum (lat_sum{version="canary",pod=~"a.*"}) / '
                                           'sum (lat_count{version="canary",pod=~"a.*"})')
    assert sel.matches("lat", {"version": "canary", "pod": "abc"}) and not sel.matches("lat", {"version": "canary"})
    # Prometheus: rank 0.5·100 = 50 falls in (0.1, 0.2] holding 40..80 → 0.1 + 0.1·(50−40)/40.
    assert histogram_quantile(0.5, [(0.1, 40), (0.2, 80), (math.inf, 100)]) == pytest.approx(0.125)
    assert histogram_quantile(0.99, [(0.1, 40), (0.2, 80), (math.inf, 100)]) == 0.2  # in +Inf: highest bound
    assert math.isnan(histogram_quantile(0.5, [(math.inf, 0)]))
    assert parse_duration("1h30m") == 5400 and format_duration(5400) == "1h30m"


def test_a_stage_of_only_skipped_clauses_is_not_a_pass(tmp_path):
    (tmp_path / "m.prom").write_text("beat 1\n")
    result, report = run(write_contract(tmp_path, {"kind": "file", "path": "m.prom"},
                                        [{"id": "gone", "metric": "absent_metric", "require": "present",
                                          "on_missing": "skip"}]))
    assert report["stages"][0]["clauses"][0]["status"] == "skipped"
    assert result.exit_code == 3 and report["verdict"] == "error"


def test_credentials_are_named_by_variable_and_checked_at_validate(tmp_path):
    source = {"kind": "prometheus", "url": "http://127.0.0.1:9", "auth": {"kind": "bearer", "password_env": "X"}}
    result = invoke("validate", str(write_contract(tmp_path, source, [{"id": "a", "metric": "up",
                                                                        "require": "present"}])))
    assert result.exit_code == 2
    assert "needs `token_env:`" in result.stderr and "`password_env` does not apply" in result.stderr
