"""Stage 3 with local (torch) kernels, and the judge on fixed measurements: paired ratios with
bootstrap CIs, Mann–Whitney for unpaired traffic, alpha spent over looks. The real vLLM server's
runtime tests are in tests/test_vllm_runtime.py."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
from click.testing import CliRunner

from promote.cli import cli
from promote.stages.runtime.judge import judge_clause
from promote.stages.runtime.measure import KernelRuntime, Level


def clause(**kw):
    base = {"id": "c", "metric": "latency_ms", "stat": "p50", "max": None, "min": None, "max_ratio": None,
            "require": None, "line": 1}
    base.update(kw)
    return SimpleNamespace(**base, raw={k: v for k, v in kw.items() if k in ("concurrency", "paired")})


def runtime(latencies, tokens=8) -> KernelRuntime:
    rt = KernelRuntime("k")
    rt.levels[1] = Level(1, latencies=list(latencies), tokens=[tokens] * len(latencies), wall_s=sum(latencies))
    return rt


def noisy(n: int, seed: int) -> np.ndarray:
    return 0.02 * np.exp(np.random.default_rng(seed).normal(0, 0.2, n))


def test_paired_slowdown_fails_and_self_passes():
    base = noisy(40, 0)
    slow = base * 1.3 * np.exp(np.random.default_rng(1).normal(0, 0.02, 40))
    got = judge_clause(clause(max_ratio=1.15), runtime(slow), runtime(base), alpha=0.05, resamples=999, seed=0)
    assert got.status == "fail" and got.interval[0] > 1.15, got.message
    same = judge_clause(clause(max_ratio=1.15), runtime(base), runtime(base), alpha=0.05, resamples=999, seed=0)
    assert same.status == "pass" and same.observed == 1.0


def test_unpaired_mann_whitney():
    base, slow = noisy(60, 2), noisy(60, 3) * 1.6
    got = judge_clause(clause(max_ratio=1.1, paired=False), runtime(slow), runtime(base), alpha=0.05,
                       resamples=999, seed=0)
    assert got.status == "fail" and got.p_value < 0.05 and "Mann–Whitney" in got.message
    fast = judge_clause(clause(max_ratio=1.5, paired=False), runtime(noisy(60, 4)), runtime(base), alpha=0.05,
                        resamples=999, seed=0)
    assert fast.status == "pass"


def test_fewer_looks_decide_sooner():
    """Alpha spent over 50 looks widens each look's interval: a borderline effect is inconclusive."""
    base = noisy(30, 5)
    slow = base * 1.2 * np.exp(np.random.default_rng(6).normal(0, 0.1, 30))
    one = judge_clause(clause(max_ratio=1.1), runtime(slow), runtime(base), alpha=0.05, resamples=1999, seed=0)
    many = judge_clause(clause(max_ratio=1.1), runtime(slow), runtime(base), alpha=0.05 / 50, resamples=1999, seed=0)
    assert one.interval[0] > many.interval[0]


def test_determinism_clauses_and_missing_values():
    rt = runtime([0.01] * 5)
    rt.rerun_drift, rt.batch_drift = 0.0, 2e-3
    assert judge_clause(clause(metric="rerun_equal", require=True), rt, None, alpha=0.05, resamples=99,
                        seed=0).status == "pass"
    assert judge_clause(clause(metric="batch_invariance", max=1e-3), rt, None, alpha=0.05, resamples=99,
                        seed=0).status == "fail"
    nothing = judge_clause(clause(metric="peak_memory_mb", max=10), rt, None, alpha=0.05, resamples=99, seed=0)
    assert nothing.status == "error" and "not measurable" in nothing.message
    no_base = judge_clause(clause(max_ratio=1.2), rt, None, alpha=0.05, resamples=99, seed=0)
    assert no_base.status == "error" and "baseline" in no_base.message


def test_runtime_stage_with_torch_kernels(mini, tmp_path):
    path = mini.contract(extra={"runtime": {"warmup": 2, "repeats": 2, "concurrency": [1, 3], "clauses": [
        {"id": "rerun", "metric": "rerun_equal", "require": True},
        {"id": "batch", "metric": "batch_invariance", "concurrency": 3, "max": 1e-3},
        {"id": "errors", "metric": "error_rate", "max": 0},
        {"id": "memory", "metric": "peak_memory_mb", "max": 1_000_000},
        {"id": "tps", "metric": "throughput_tps", "min": 1}]}})
    metrics = tmp_path / "m.prom"
    result = CliRunner().invoke(cli, ["check", str(path), "--stage", "runtime", "--format", "json",
                                      "--metrics-out", str(metrics)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    stage = next(s for s in json.loads(result.stdout)["stages"] if s["name"] == "runtime")
    assert {c["id"]: c["status"] for c in stage["clauses"]} == dict.fromkeys(
        ("rerun", "batch", "errors", "memory", "tps"), "pass")
    measured = stage["details"]["runtime"]["measured"]["candidate"]
    assert measured["peak_rss_mb"] > 10 and measured["levels"]["3"]["requests"] == 48
    errors = next(c for c in stage["clauses"] if c["id"] == "errors")
    assert errors["message"] == "error rate 0: 0 of 48 requests failed"  # once `error rate 0 ({})`
    assert len(measured["levels"]["1"]["warmup_ms"]) == 2
    assert "promote_runtime_peak_rss_bytes" in metrics.read_text()


def test_error_rate_message_counts_requests_and_names_each_kind():
    from promote.stages.runtime.judge import _error_text

    summary = {"error_rate": 0.03, "errors": 3, "requests": 100, "error_kinds": {"timeout": 2, "HTTP 500": 1}}
    assert _error_text(summary) == "error rate 0.03: 3 of 100 requests failed (HTTP 500 ×1, timeout ×2)"


def test_time_to_first_token_of_a_kernel_that_cannot_stream_is_an_error_not_a_pass(mini):
    path = mini.contract(extra={"runtime": {"warmup": 0, "repeats": 1, "clauses": [
        {"id": "ttft", "metric": "ttft_ms", "max": 1e9},
        {"id": "ttft-ratio", "metric": "ttft_ms", "max_ratio": 1e9}]}})
    result = CliRunner().invoke(cli, ["check", str(path), "--stage", "runtime", "--format", "json"],
                                catch_exceptions=False)
    assert result.exit_code == 3, result.output
    stage = next(s for s in json.loads(result.stdout)["stages"] if s["name"] == "runtime")
    for c in stage["clauses"]:
        assert c["status"] == "error" and "does not stream" in c["message"], c
    assert stage["details"]["runtime"]["measured"]["candidate"]["streams"] is False


class _WireKernel:
    """An HTTP-like kernel (it declares the `http` capability) whose call takes longer than its request's
    wire time: the difference stands for promote's own JSON decoding, which stage 3 must not time."""

    kind = "openai"
    capabilities = frozenset({"http"})
    label = "candidate"

    def __init__(self, wire: float) -> None:
        self.wire = wire

    def server_rss_bytes(self):
        return 2.0**30  # what its server's /metrics would say: 1 GiB

    def run(self, batch):
        import time

        from promote.kernels.base import Outputs

        time.sleep(0.05)  # the "decoding": longer than every wire time below
        b, t = batch.input_ids.shape
        return Outputs(logits=np.zeros((b, t, 4), np.float32), request_s=np.full(b, self.wire))


def test_http_latency_is_the_wire_time_not_the_decoding():
    from promote.data import Sample
    from promote.stages.runtime.measure import measure

    samples = [Sample(id=f"s{i}", input_ids=tuple(range(5)), tags={}, line=i + 1) for i in range(4)]
    runtimes = measure([_WireKernel(0.003), _WireKernel(0.004)], samples, levels=(1, 2), warmup=0, repeats=1)
    for rt, wire in zip(runtimes, (0.003, 0.004), strict=True):
        assert rt.levels[1].latencies == [wire] * 4 and rt.levels[2].latencies == [wire] * 4
        assert rt.peak_rss_mb == 1024 and "/metrics" in rt.memory_source  # the server's memory, not ours


def test_client_post_timed_stops_the_clock_before_decoding(httpserver, monkeypatch):
    import time

    from promote.kernels import http_client

    httpserver.expect_request("/v1/completions", method="POST").respond_with_json({"ok": True})
    decode = http_client._decode

    def slow_decode(raw, url):
        time.sleep(0.5)
        return decode(raw, url)

    monkeypatch.setattr(http_client, "_decode", slow_decode)
    started = time.perf_counter()
    answer, seconds = http_client.Client().post_timed(httpserver.url_for("/v1/completions"), {"a": 1})
    assert answer == {"ok": True}
    assert seconds < 0.5 <= time.perf_counter() - started
