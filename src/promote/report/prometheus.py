"""`--metrics-out FILE`: what stage 3 measured, in Prometheus text exposition format.

Written with ``prometheus_client`` (its own registry, never the process default) so stage 4 — or a
Prometheus textfile collector — can read the canary's numbers as ordinary series. Every series is
labelled with the kernel (``baseline``/``candidate``) and the concurrency it was measured at.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from promote.atomic import write_text_atomic


def exposition(report: Any) -> str | None:
    """The exposition text of a report's runtime measurements; None when no runtime stage ran."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    stage = next((s for s in report.stages if s.name == "runtime" and s.details.get("runtime")), None)
    if stage is None:
        return None
    measured = stage.details["runtime"]["measured"]
    registry = CollectorRegistry()
    labels = ["kernel", "concurrency"]
    latency = Gauge("promote_runtime_latency_seconds", "Per-request latency quantile (client side).",
                    [*labels, "quantile"], registry=registry)
    per_token = Gauge("promote_runtime_latency_per_token_seconds", "Per-request latency / prompt tokens, quantile.",
                      [*labels, "quantile"], registry=registry)
    ttft = Gauge("promote_runtime_ttft_seconds", "Time to first token of a streamed generation, quantile.",
                 [*labels, "quantile"], registry=registry)
    tps = Gauge("promote_runtime_throughput_tokens_per_second", "Prompt tokens per second.", labels,
                registry=registry)
    errors = Gauge("promote_runtime_error_rate", "Fraction of timed requests that failed.", labels,
                   registry=registry)
    requests = Gauge("promote_runtime_requests", "Timed requests.", labels, registry=registry)
    rerun = Gauge("promote_runtime_rerun_drift", "Largest drift between two runs of the same prompts.", ["kernel"],
                  registry=registry)
    batch = Gauge("promote_runtime_batch_drift", "Largest drift of a prompt alone vs in a concurrent batch.",
                  ["kernel"], registry=registry)
    rss = Gauge("promote_runtime_peak_rss_bytes", "Peak resident memory of promote's process (local kernels).",
                ["kernel"], registry=registry)
    for kernel, facts in measured.items():
        for level, summary in facts["levels"].items():
            for q, value in summary["latency_ms"].items():
                if q.startswith("p") and value is not None:
                    latency.labels(kernel, level, str(int(q[1:]) / 100)).set(value / 1e3)
            for q, value in summary["latency_per_token_ms"].items():
                if value is not None:
                    per_token.labels(kernel, level, str(int(q[1:]) / 100)).set(value / 1e3)
            for q, value in (summary.get("ttft_ms") or {}).items():
                if q.startswith("p") and value is not None:
                    ttft.labels(kernel, level, str(int(q[1:]) / 100)).set(value / 1e3)
            for gauge, key in ((tps, "throughput_tps"), (errors, "error_rate"), (requests, "requests")):
                if summary.get(key) is not None:
                    gauge.labels(kernel, level).set(summary[key])
        for gauge, key, scale in ((rerun, "rerun_drift", 1), (batch, "batch_drift", 1), (rss, "peak_rss_mb", 2**20)):
            if facts.get(key) is not None:
                gauge.labels(kernel).set(facts[key] * scale)
    return generate_latest(registry).decode()


def write_metrics(report: Any, path: Path) -> bool:
    """Write the exposition file atomically; False when the report has no runtime measurements."""
    text = exposition(report)
    if text is None:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
    return True
