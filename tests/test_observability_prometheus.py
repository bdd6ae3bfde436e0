"""Stage 4 against a real Prometheus scraping real exporters (tests/prometheus_live.py): healthy
canary passes; a breaching, missing, stale or 1.5×-burning canary fails with the right clause; no
data follows `on_missing`; unreachable, syntax errors, matrices and auth failures are explained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from prometheus_live import AuthProxy, Exporter, LivePrometheus, free_port, wait_for

from promote.cli import cli

REPO = Path(__file__).resolve().parents[1]
MODEL = str(REPO / "examples" / "tiny_lm" / "model.py") + ":build"
TOKEN = "tok-3f9a1c77e2b4"  # noqa: S105 - a test credential for the auth proxy

# stable and canary: 1 % errors; hot: 1.5 % (1.5× stable's burn rate); broken: 10 %.
VERSIONS = {"stable": (200, 2, 0.08), "canary": (200, 2, 0.08), "hot": (200, 3, 0.08), "broken": (200, 20, 0.3),
            "gone": (200, 2, 0.08)}
ERROR_RATIO = ('sum by (version) (rate(serving_requests_total{{outcome="error",version=~"{v}"}}[{{{{window}}}}])) '
               '/ sum by (version) (rate(serving_requests_total{{version=~"{v}"}}[{{{{window}}}}]))')


@pytest.fixture(scope="session")
def prom():
    exporters = [Exporter(v, *args) for v, args in VERSIONS.items()]
    server = None
    try:
        server = LivePrometheus(exporters)
        server.wait_ready()
        yield server
    finally:
        if server is not None:
            server.close()
        for exporter in exporters:
            exporter.close()


def contract(tmp_path: Path, source: dict, clauses: list[dict], name: str = "c.yaml") -> Path:
    doc = {"version": 1, "name": "obs", "reference": {"kind": "torch", "model": MODEL},
           "candidate": {"kind": "torch", "model": MODEL}, "data": {"path": "absent.jsonl"},
           "observability": {"source": source, "clauses": clauses}}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def check(path: Path, env: dict | None = None):
    result = CliRunner().invoke(cli, ["check", str(path), "--stage", "observability", "--format", "json"],
                                env=env, catch_exceptions=False)
    report = json.loads(result.stdout) if result.stdout.startswith("{") else None
    return result, report


def by_id(report: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for clause in report["stages"][0]["clauses"]:
        out.setdefault(clause["id"], []).append(clause)
    return out


def statuses(report: dict) -> dict[str, set[str]]:
    return {k: {c["status"] for c in v} for k, v in by_id(report).items()}


def test_healthy_canary_passes_every_kind_of_clause(prom, tmp_path):
    clauses = [
        {"id": "present", "metric": 'serving_requests_total{version="canary"}', "require": "present"},
        {"id": "fresh", "metric": 'serving_heartbeat{version="canary"}', "max_age": "10s"},
        {"id": "err", "query": ERROR_RATIO.format(v="canary").replace("{{window}}", "20s"), "max": 0.02},
        {"id": "p99", "metric": 'serving_latency_seconds{version="canary"}', "stat": "p99", "max": 0.1},
        {"id": "windowed", "query": 'sum(rate(serving_requests_total{version="canary"}[10s]))', "window": "5s",
         "over_time": "min", "min": 100},
        {"id": "burn", "burn_rate": {"objective": 0.9, "errors": ERROR_RATIO.format(v="canary").split(" / ")[0],
                                     "total": ERROR_RATIO.format(v="canary").split(" / ")[1],
                                     "windows": [{"long": "30s", "short": "10s", "factor": 0.5}]}},
        {"id": "vs-stable", "burn_rate": {"objective": 0.99, "errors": ERROR_RATIO.format(v="canary|stable")
                                          .split(" / ")[0], "total": ERROR_RATIO.format(v="canary|stable")
                                          .split(" / ")[1], "windows": [{"long": "30s", "short": "10s"}]},
         "compare": {"label": "version", "candidate": "canary", "baseline": "stable"}, "max_ratio": 1.2},
        # Error ratios compare across targets; raw rates do not (each target is scraped at its own phase).
        {"id": "vs-stable-query", "query": ERROR_RATIO.format(v="canary").replace("sum by (version)", "sum")
         .replace("{{window}}", "20s"), "baseline_query": ERROR_RATIO.format(v="stable")
         .replace("sum by (version)", "sum").replace("{{window}}", "20s"), "max_ratio": 1.2},
    ]
    result, report = check(contract(tmp_path, {"kind": "prometheus", "url": prom.url}, clauses))
    assert statuses(report) == {c["id"]: {"pass"} for c in clauses}, result.stdout
    assert result.exit_code == 0
    clauses_by_id = by_id(report)
    assert clauses_by_id["err"][0]["evidence"]["labels"] == {"version": "canary"}  # the series' labels reported
    assert clauses_by_id["err"][0]["observed"] == pytest.approx(0.01, rel=0.05)
    assert clauses_by_id["vs-stable"][0]["observed"] == pytest.approx(1.0, rel=0.05)
    assert clauses_by_id["vs-stable"][0]["slice"] == "window=30s/10s"
    assert clauses_by_id["burn"][0]["observed"] == pytest.approx(0.1, rel=0.05)  # 1 % / (1 − 0.9)
    assert report["data"]["read"] is False


def test_breach_missing_and_relative_burn_fail_with_their_clause(prom, tmp_path):
    clauses = [
        {"id": "broken-err", "query": ERROR_RATIO.format(v="broken").replace("{{window}}", "20s"), "max": 0.02},
        {"id": "divergence-exported", "metric": 'serving_token_log_ratio_count{version="canary"}',
         "require": "present"},
        {"id": "hot-vs-stable", "burn_rate": {"objective": 0.99, "errors": ERROR_RATIO.format(v="hot|stable")
                                              .split(" / ")[0], "total": ERROR_RATIO.format(v="hot|stable")
                                              .split(" / ")[1], "windows": [{"long": "30s", "short": "10s"}]},
         "compare": {"label": "version", "candidate": "hot", "baseline": "stable"}, "max_ratio": 1.2},
        {"id": "broken-burn", "burn_rate": {"objective": 0.99, "errors": ERROR_RATIO.format(v="broken")
                                            .split(" / ")[0], "total": ERROR_RATIO.format(v="broken")
                                            .split(" / ")[1], "windows": [{"long": "30s", "short": "10s",
                                                                           "factor": 6}]}},
    ]
    result, report = check(contract(tmp_path, {"kind": "prometheus", "url": prom.url}, clauses))
    assert result.exit_code == 1
    assert statuses(report) == {c["id"]: {"fail"} for c in clauses}
    got = by_id(report)
    assert got["broken-err"][0]["observed"] == pytest.approx(0.1, rel=0.05)
    assert got["hot-vs-stable"][0]["observed"] == pytest.approx(1.5, rel=0.05)
    assert "no data" in got["divergence-exported"][0]["message"]
    assert got["broken-burn"][0]["observed"] == pytest.approx(10.0, rel=0.05)  # 10 % / 1 % budget


def test_stale_series_fails_max_age(prom, tmp_path):
    gone = next(e for e in prom.exporters if e.version == "gone")
    wait_for(lambda: prom.query('serving_heartbeat{version="gone"}'), "the heartbeat to be scraped")
    gone.stop_heartbeat()
    wait_for(lambda: not prom.query('serving_heartbeat{version="gone"}'), "Prometheus to mark the series stale")
    path = contract(tmp_path, {"kind": "prometheus", "url": prom.url, "lookback": "5m"},
                    [{"id": "heartbeat-fresh", "metric": 'serving_heartbeat{version="gone"}', "max_age": "2s"}])
    result, report = wait_for(lambda: (lambda r: r if r[0].exit_code == 1 else None)(check(path)),
                              "the last heartbeat sample to be older than 2 s")
    clause = report["stages"][0]["clauses"][0]
    assert clause["status"] == "fail" and clause["stat"] == "age" and clause["observed"] > 2
    assert "age of the newest sample of serving_heartbeat" in clause["message"]


@pytest.mark.parametrize(("on_missing", "status", "code"), [("fail", "fail", 1), ("inconclusive", "inconclusive", 1),
                                                            ("skip", "skipped", 0)])
def test_on_missing_decides_empty_results(prom, tmp_path, on_missing, status, code):
    path = contract(tmp_path, {"kind": "prometheus", "url": prom.url},
                    [{"id": "nothing", "query": 'sum(rate(serving_requests_total{version="nope"}[20s]))', "max": 1,
                      "on_missing": on_missing},
                     {"id": "something", "metric": 'serving_requests_total{version="canary"}', "require": "present"}])
    result, report = check(path)
    clause = by_id(report)["nothing"][0]
    assert by_id(report)["something"][0]["status"] == "pass"
    assert (clause["status"], result.exit_code) == (status, code)
    assert f"on_missing: {on_missing}" in clause["message"]
    assert clause["status"] != "pass"


def test_unreachable_prometheus_is_exit_3_naming_the_url(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    path = contract(tmp_path, {"kind": "prometheus", "url": url, "timeout": "2s"},
                    [{"id": "a", "query": "up", "max": 1}, {"id": "b", "metric": "up", "require": "present"}])
    result, report = check(path)
    assert result.exit_code == 3
    assert {c["status"] for c in report["stages"][0]["clauses"]} == {"error"}
    assert all(url in c["message"] for c in report["stages"][0]["clauses"])


def test_promql_syntax_error_and_matrix_are_contract_errors(prom, tmp_path):
    path = contract(tmp_path, {"kind": "prometheus", "url": prom.url},
                    [{"id": "typo", "query": "sum(rate(serving_requests_total[1m])", "max": 1},
                     {"id": "range", "query": "serving_requests_total[1m]", "max": 1}])
    result = CliRunner().invoke(cli, ["check", str(path), "--stage", "observability"])
    assert result.exit_code == 2
    assert "parse error: unclosed left parenthesis" in result.stderr  # Prometheus' own message
    assert "c.yaml:" in result.stderr and "clause `typo`" in result.stderr
    assert "clause `range`" in result.stderr and "range vector (matrix)" in result.stderr
    assert "Traceback" not in result.output


def test_auth_failures_are_explained_and_credentials_never_printed(prom, tmp_path):
    proxy = AuthProxy(prom.url, TOKEN)
    try:
        clauses = [{"id": "up", "metric": 'serving_requests_total{version="canary"}', "require": "present"}]
        bearer = {"kind": "prometheus", "url": proxy.url, "auth": {"kind": "bearer", "token_env": "PROM_TOKEN"}}
        result, report = check(contract(tmp_path, {"kind": "prometheus", "url": proxy.url}, clauses))
        message = report["stages"][0]["clauses"][0]["message"]
        assert result.exit_code == 3 and "HTTP 401" in message and "rejected the credentials" in message
        assert "no credentials" in message
        result, report = check(contract(tmp_path, bearer, clauses, "b.yaml"), env={"PROM_TOKEN": "forbidden-token"})
        message = report["stages"][0]["clauses"][0]["message"]
        assert result.exit_code == 3 and "HTTP 403" in message and "$PROM_TOKEN" in message
        assert "forbidden-token" not in result.output
        result, report = check(contract(tmp_path, bearer, clauses, "b.yaml"), env={"PROM_TOKEN": TOKEN})
        assert result.exit_code == 0, result.output
        assert TOKEN not in result.output
        result, report = check(contract(tmp_path, bearer, clauses, "b.yaml"), env={"PROM_TOKEN": ""})
        assert result.exit_code == 3 and "PROM_TOKEN but it is not set" in report["stages"][0]["clauses"][0]["message"]
    finally:
        proxy.close()
