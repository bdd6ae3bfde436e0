"""Stage 3 against the REAL vLLM server: a 30 % slowdown planted by a delaying reverse proxy fails, the
same server compared with itself five times never fails, determinism and batch invariance are
measured, and ``--metrics-out`` writes Prometheus exposition format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from http_proxy import Proxy

from promote.cli import cli

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "tiny_llama"


@pytest.fixture(scope="module")
def short_evalset(tmp_path_factory) -> Path:
    """8 short prompts: full-vocabulary answers stay small, so timed passes take seconds."""
    path = tmp_path_factory.mktemp("rt") / "eval.jsonl"
    lines = (EXAMPLE / "eval.jsonl").read_text().splitlines()[:8]
    with open(path, "w") as out:
        for line in lines:
            record = json.loads(line)
            record["input_ids"] = record["input_ids"][:12]
            out.write(json.dumps(record) + "\n")
    return path


@pytest.fixture(scope="module")
def proxies(vllm_fp32):
    """Baseline and canary both behind a proxy (same path, same overhead); only the canary is slowed."""
    base, canary = Proxy(vllm_fp32.base), Proxy(vllm_fp32.base)
    yield base, canary
    base.close()
    canary.close()


def runtime_contract(tmp_path: Path, evalset: Path, cand_url: str, base_url: str, *, looks: int = 1,
                     clauses: list | None = None, repeats: int = 3, levels: tuple = (1,)) -> Path:
    doc = {
        "version": 1, "name": "runtime-test",
        "reference": {"kind": "torch", "model": str(EXAMPLE / "model.py") + ":build"},
        "candidate": {"kind": "openai", "url": cand_url, "model": "tiny-llama", "top_k": "all"},
        "data": {"path": str(evalset)},
        "runtime": {
            "baseline": {"kind": "openai", "url": base_url, "model": "tiny-llama", "top_k": "all"},
            "warmup": 2, "repeats": repeats, "concurrency": list(levels), "looks": looks, "resamples": 999,
            "clauses": clauses or [{"id": "p50-ratio", "metric": "latency_ms", "stat": "p50", "max_ratio": 1.1}],
        },
    }
    path = tmp_path / "runtime.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run(path: Path, tmp_path: Path, *extra: str):
    report = tmp_path / "report.json"
    result = CliRunner().invoke(cli, ["check", str(path), "--stage", "runtime", "--no-progress", "--output",
                                      f"json={report}", *extra], catch_exceptions=False)
    return result, json.loads(report.read_text())


def clause(report: dict, cid: str) -> dict:
    stage = next(s for s in report["stages"] if s["name"] == "runtime")
    return next(c for c in stage["clauses"] if c["id"] == cid)


def test_planted_30_percent_slowdown_fails(proxies, short_evalset, tmp_path):
    base, canary = proxies
    canary.faults.slowdown = 0.3
    try:
        # 64 requests a side: with 32, a CI run on the shared 2 cores once measured 1.166 [1.047, 1.237] for the
        # planted 1.3 (inconclusive, not fail); on a quiet machine 64 give 1.29 [1.27, 1.31].
        result, report = run(runtime_contract(tmp_path, short_evalset, canary.url, base.url, repeats=8), tmp_path)
    finally:
        canary.reset()
    assert result.exit_code == 1, result.output
    verdict = clause(report, "p50-ratio")
    assert verdict["status"] == "fail", verdict["message"]
    assert verdict["interval"][0] > 1.1


def test_same_server_against_itself_five_times_never_fails(proxies, short_evalset, tmp_path):
    base, _ = proxies
    clauses = [{"id": "p50-ratio", "metric": "latency_ms", "stat": "p50", "max_ratio": 1.5},
               {"id": "p90-ratio", "metric": "latency_ms", "stat": "p90", "max_ratio": 2.0},
               {"id": "errors", "metric": "error_rate", "max": 0.0}]
    statuses = []
    for _look in range(5):
        path = runtime_contract(tmp_path, short_evalset, base.url, base.url, looks=5, clauses=clauses, repeats=2)
        result, report = run(path, tmp_path)
        statuses += [clause(report, c["id"])["status"] for c in clauses]
        assert result.exit_code in (0, 1), result.output
    assert "fail" not in statuses, statuses
    assert statuses.count("pass") >= len(statuses) // 2, statuses  # the judge is not merely silent


def test_determinism_batch_invariance_and_metrics_out(vllm_fp32, short_evalset, tmp_path):
    clauses = [{"id": "rerun", "metric": "rerun_equal", "max": 1e-3},
               {"id": "batch", "metric": "batch_invariance", "concurrency": 3, "max": 1e-2},
               {"id": "tps", "metric": "throughput_tps", "concurrency": 3, "min": 1.0},
               {"id": "per-token", "metric": "latency_per_token_ms", "stat": "p99", "max": 60_000},
               {"id": "ttft", "metric": "ttft_ms", "stat": "p90", "max": 60_000},
               {"id": "ttft-ratio", "metric": "ttft_ms", "stat": "p50", "max_ratio": 100.0},
               {"id": "memory", "metric": "peak_memory_mb", "max": 1_000_000},
               {"id": "memory-ratio", "metric": "peak_memory_mb", "max_ratio": 1.5}]
    path = runtime_contract(tmp_path, short_evalset, vllm_fp32.url, vllm_fp32.url, clauses=clauses, repeats=1,
                            levels=(1, 3))
    metrics = tmp_path / "runtime.prom"
    result, report = run(path, tmp_path, "--metrics-out", str(metrics))
    assert result.exit_code == 0, result.output
    assert clause(report, "rerun")["observed"] is not None and clause(report, "batch")["observed"] is not None
    # Time to first token from streamed generations, measured for both kernels at both levels.
    ttft = clause(report, "ttft")
    assert ttft["status"] == "pass" and 0 < ttft["observed"] < 60_000, ttft
    assert clause(report, "ttft-ratio")["status"] == "pass"
    measured = next(s for s in report["stages"] if s["name"] == "runtime")["details"]["runtime"]["measured"]
    for role in ("baseline", "candidate"):
        for level in ("1", "3"):
            assert measured[role]["levels"][level]["ttft_ms"]["p50"] > 0, (role, level)
    # Memory behind HTTP: the server's own RSS from its /metrics page (one server here: ratio ~1).
    memory = clause(report, "memory")
    assert memory["status"] == "pass" and 50 < memory["observed"] < 1_000_000, memory
    assert "/metrics process_resident_memory_bytes" in measured["candidate"]["memory_source"]
    assert clause(report, "memory-ratio")["status"] == "pass"
    text = metrics.read_text()
    assert 'promote_runtime_latency_seconds{concurrency="3",kernel="candidate",quantile="0.5"}' in text
    assert "promote_runtime_rerun_drift" in text
    assert 'promote_runtime_ttft_seconds{concurrency="3",kernel="candidate",quantile="0.9"}' in text
    from prometheus_client.parser import text_string_to_metric_families

    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"promote_runtime_latency_seconds", "promote_runtime_throughput_tokens_per_second",
            "promote_runtime_error_rate"} <= names
