"""Stage 4 on the real stack: a real Prometheus (tests/prometheus_live.py) scrapes the real vLLM server's
/metrics every second (the session's `vllm_fp32`, shared with the other vLLM tests); after traffic the
shipped examples/tiny_llama/observability.yaml signs off with observed values, and a tightened latency
bound or a series vLLM does not export fails exactly that clause."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from click.testing import CliRunner
from prometheus_live import LivePrometheus, ScrapeTarget, wait_for

from promote.cli import cli

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "tiny_llama" / "observability.yaml"
REQUESTS = 6
COUNT = 'sum(vllm:e2e_request_latency_seconds_count{model_name="tiny-llama"})'


@pytest.fixture(scope="module")
def scraped_vllm(vllm_fp32):
    """Prometheus scraping vLLM, which then serves REQUESTS completions (token-id prompts) that
    Prometheus has seen: the 5 m rates of the example's clauses are defined and non-zero."""
    server = None
    try:
        server = LivePrometheus([], targets=[ScrapeTarget("vllm", urlsplit(vllm_fp32.base).netloc,
                                                          {"version": "canary"})])
        server.wait_ready()
        # One scrape before the traffic, so the window holds a sample before and one after it.
        before = float(wait_for(lambda: server.query(COUNT), "a first scrape of vLLM")[0]["value"][1])
        for i in range(REQUESTS):
            answer = requests.post(f"{vllm_fp32.url}/completions", timeout=120, json={
                "model": vllm_fp32.name, "prompt": [1, 5 + i, 9, 13, 21], "max_tokens": 4, "temperature": 0})
            assert answer.status_code == 200, answer.text
        wait_for(lambda: float((server.query(COUNT) or [{"value": [0, "0"]}])[0]["value"][1]) >= before + REQUESTS,
                 "Prometheus to scrape the new requests")
        yield server
    finally:
        if server is not None:
            server.close()


def check(path: Path, prometheus_url: str):
    result = CliRunner().invoke(cli, ["check", str(path), "--stage", "observability", "--format", "json"],
                                env={"PROMETHEUS_URL": prometheus_url}, catch_exceptions=False)
    assert result.stdout.startswith("{"), result.output
    return result, json.loads(result.stdout)


def clauses(report: dict) -> dict[str, list[dict]]:
    """Results by clause id; a `metric:` clause has one result per series (vLLM's finish reasons)."""
    (stage,) = report["stages"]
    assert stage["name"] == "observability"
    out: dict[str, list[dict]] = {}
    for clause in stage["clauses"]:
        out.setdefault(clause["id"], []).append(clause)
    return out


def statuses(found: dict[str, list[dict]], *ids: str) -> set[str]:
    return {c["status"] for i in ids for c in found[i]}


def test_shipped_contract_signs_off_on_the_real_server(scraped_vllm):
    result, report = check(EXAMPLE, scraped_vllm.url)
    assert result.exit_code == 0, result.output
    assert report["kernels"] is None and report["data"] is None  # only the contract was needed
    found = clauses(report)
    assert set(found) == {"latency-exported", "requests-exported", "p99-latency", "error-ratio"}
    assert statuses(found, *found) == {"pass"}
    # Observed values, not vacuous passes: a real latency quantile, an error ratio of exactly 0, and
    # fresh samples of every finish reason vLLM counts (the label values the error ratio selects).
    (p99,) = found["p99-latency"]
    assert 0 < p99["observed"] <= 5.0
    (errors,) = found["error-ratio"]
    assert errors["observed"] == 0.0
    reasons = {c["evidence"]["labels"]["finished_reason"] for c in found["requests-exported"]}
    assert {"stop", "length", "abort", "error"} <= reasons
    for presence in ("latency-exported", "requests-exported"):
        assert all(0 <= c["observed"] <= 30 for c in found[presence])  # sample age in seconds


def test_tightened_latency_and_unexported_series_fail_their_clauses(scraped_vllm, tmp_path):
    doc = yaml.safe_load(EXAMPLE.read_text())
    for clause in doc["observability"]["clauses"]:
        if clause["id"] == "p99-latency":
            clause["max"] = 1e-6  # no real request is that fast
    doc["observability"]["clauses"].append(
        {"id": "divergence-exported", "metric": 'vllm:sampled_token_abs_log_ratio_count{model_name="tiny-llama"}',
         "require": "present"})
    path = tmp_path / "tight.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result, report = check(path, scraped_vllm.url)
    assert result.exit_code == 1, result.output
    found = clauses(report)
    (p99,) = found["p99-latency"]
    assert p99["status"] == "fail" and p99["observed"] > 1e-6
    assert statuses(found, "divergence-exported") == {"fail"}
    assert statuses(found, "latency-exported", "requests-exported", "error-ratio") == {"pass"}
