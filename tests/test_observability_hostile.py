"""Issue 19 items 9 and 21: stage 4 numbers an attacker (or a broken exporter) can plant — samples from
the future, infinities, negative values in a ratio, scalar or instant answers to presence queries,
histogram buckets that are not monotonic — never pass, and both sources mean the same thing. Snapshot
files are real files; the Prometheus answers come from the hostile server (tests/hostile_http.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hostile_http import Hostile, json_reply, status
from prometheus_live import LivePrometheus, ScrapeTarget, wait_for
from test_observability_file import write_contract

from promote.cli import cli
from promote.observability.selectors import histogram_quantile


def run(path: Path):
    result = CliRunner().invoke(cli, ["check", str(path), "--stage", "observability", "--format", "json"],
                                catch_exceptions=False)
    return result, (json.loads(result.stdout) if result.stdout.startswith("{") else None)


def clauses_of(report: dict) -> dict[str, list[dict]]:
    got: dict[str, list[dict]] = {}
    for c in report["stages"][0]["clauses"]:
        got.setdefault(c["id"], []).append(c)
    return got


# -- item 9: a sample from the future is not fresh


@pytest.mark.parametrize("fmt", ["text-future", "openmetrics-ms-as-s"])
def test_a_sample_from_the_future_fails_naming_its_timestamp(tmp_path, fmt):
    now = time.time()
    if fmt == "text-future":  # text format: milliseconds, one hour ahead (a skewed exporter clock)
        stamp = now + 3600
        (tmp_path / "m.prom").write_text(f"beat 1 {int(stamp * 1000)}\n")
    else:  # OpenMetrics: seconds; an exporter that wrote milliseconds lands 50 000 years ahead
        stamp = int(now * 1000)
        (tmp_path / "m.prom").write_text(f"# TYPE beat gauge\nbeat 1 {stamp}\n# EOF\n")
    result, report = run(write_contract(tmp_path, {"kind": "file", "path": "m.prom"},
                                        [{"id": "fresh", "metric": "beat", "max_age": "5m"}]))
    clause = clauses_of(report)["fresh"][0]
    assert clause["status"] == "fail" and clause["stat"] == "age_future"
    assert "after the evaluation time" in clause["message"] and str(int(stamp))[:6] in clause["message"]
    assert result.exit_code == 1


def test_a_few_seconds_of_clock_skew_still_count_as_fresh(tmp_path):
    (tmp_path / "m.prom").write_text(f"beat 1 {int((time.time() + 5) * 1000)}\n")
    result, report = run(write_contract(tmp_path, {"kind": "file", "path": "m.prom"},
                                        [{"id": "fresh", "metric": "beat", "max_age": "5m"}]))
    clause = clauses_of(report)["fresh"][0]
    assert clause["status"] == "pass" and clause["observed"] == 0.0


def test_prometheus_samples_from_the_future_fail_too(tmp_path):
    with Hostile() as server:
        ahead = time.time() + 7200
        server.route("/api/v1/query", json_reply({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"__name__": "beat"}, "values": [[ahead, "1"]]}]}}))
        result, report = run(write_contract(tmp_path, {"kind": "prometheus", "url": server.url()},
                                            [{"id": "fresh", "metric": "beat", "max_age": "5m"}]))
    clause = clauses_of(report)["fresh"][0]
    assert clause["status"] == "fail" and "after the evaluation time" in clause["message"]


# -- item 21: infinities, negative ratios, presence answers, bucket monotonicity


def test_infinite_values_pass_no_bound(tmp_path):
    (tmp_path / "m.prom").write_text("lat -Inf\nthroughput +Inf\nerrs +Inf\n")
    result, report = run(write_contract(tmp_path, {"kind": "file", "path": "m.prom"}, [
        {"id": "lat", "metric": "lat", "max": 1.0},
        {"id": "tput", "metric": "throughput", "min": 10.0},
        {"id": "errs", "metric": "errs", "max": 1.0}]))
    got = clauses_of(report)
    assert got["lat"][0]["status"] == "inconclusive" and "infinite" in got["lat"][0]["message"]
    assert got["tput"][0]["status"] == "inconclusive"
    assert got["errs"][0]["status"] == "fail"  # +Inf above a max: a breach, as before
    assert result.exit_code == 1


def test_a_ratio_of_negative_values_is_not_within_bounds(tmp_path):
    (tmp_path / "m.prom").write_text('load{version="canary"} -5\nload{version="stable"} 0.001\n')
    result, report = run(write_contract(tmp_path, {"kind": "file", "path": "m.prom"}, [
        {"id": "ratio", "metric": "load", "max_ratio": 1.5,
         "compare": {"label": "version", "candidate": "canary", "baseline": "stable"}}]))
    clause = clauses_of(report)["ratio"][0]
    assert clause["status"] == "inconclusive" and "negative" in clause["message"]


def test_an_instant_answer_to_the_presence_range_query_is_not_presence(tmp_path):
    with Hostile() as server:
        server.route("/api/v1/query", json_reply({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"__name__": "beat"}, "value": [time.time(), "1"]}]}}))
        result, report = run(write_contract(tmp_path, {"kind": "prometheus", "url": server.url()},
                                            [{"id": "here", "metric": "beat", "require": "present"}]))
    assert result.exit_code == 3
    assert "not a range vector" in result.stderr + json.dumps(report or {})


def test_a_scalar_answer_to_a_presence_query_is_the_contracts_mistake(tmp_path):
    with Hostile() as server:
        server.route("/api/v1/query", json_reply({"status": "success", "data": {"resultType": "scalar",
                                                                                "result": [time.time(), "1"]}}))
        result, _ = run(write_contract(tmp_path, {"kind": "prometheus", "url": server.url()},
                                       [{"id": "here", "query": "scalar(up)", "require": "present"}]))
    assert result.exit_code == 2 and "a scalar is never absent" in result.stderr


def test_snapshot_quantiles_make_buckets_monotonic_as_prometheus_does():
    """Cumulative counts that dip (le=1 below le=0.001) are raised to the largest count below them
    before interpolating (Prometheus promql/quantile.go); without that the file source answered 4.95e-4
    where Prometheus answers 9.9e-4 for the same buckets."""
    buckets = [(0.001, 200.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.001 * 198 / 200)
    # le=0.2 dips to 5 → raised to 10: rank 15 interpolates in (0.2, 0.4] from 10, not from 5 (0.333)
    assert histogram_quantile(0.75, [(0.1, 10.0), (0.2, 5.0), (0.4, 20.0), (float("inf"), 20.0)]) == \
        pytest.approx(0.2 + 0.2 * (15 - 10) / (20 - 10))


def test_snapshot_and_prometheus_agree_on_buckets_that_are_not_monotonic(tmp_path):
    """The same non-monotonic buckets, once as a snapshot file and once scraped by a real Prometheus
    (tests/prometheus_live.py) from the hostile server: the `p99` clause observes the same value."""
    text = ('# TYPE lat histogram\nlat_bucket{le="0.001"} 200\nlat_bucket{le="1"} 100\nlat_bucket{le="+Inf"} 100\n'
            "lat_sum 1\nlat_count 100\n")
    (tmp_path / "m.prom").write_text(text)
    clause = [{"id": "p99", "metric": "lat", "stat": "p99", "max": 10}]
    _, from_file = run(write_contract(tmp_path, {"kind": "file", "path": "m.prom"}, clause))
    with Hostile() as exporter:
        exporter.route("/metrics", status(200, text.encode(), {"Content-Type": "text/plain; version=0.0.4"}))
        server = LivePrometheus([], [ScrapeTarget("hist", f"127.0.0.1:{exporter.port}")])
        try:
            server.wait_ready()
            wait_for(lambda: server.query("lat_count"), "a scrape of the hostile exporter")
            _, from_prometheus = run(write_contract(tmp_path, {"kind": "prometheus", "url": server.url}, clause))
        finally:
            server.close()
    observed = [clauses_of(r)["p99"][0]["observed"] for r in (from_file, from_prometheus)]
    assert observed[0] == pytest.approx(observed[1], rel=1e-9) and observed[0] == pytest.approx(0.001 * 198 / 200)
