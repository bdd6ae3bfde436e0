"""Write `canary.prom`: the /metrics exposition of a canary and a stable serving replica, as
prometheus_client renders it, for the file-source example of stage 4 (`contract.yaml`).

The numbers are those of a healthy canary: the same request mix on both versions, an error ratio of
0.2 % on the canary vs 0.25 % on stable, latency histograms a few milliseconds apart, and a
sampled-token |log-ratio| histogram (docs/observability.md) near 0. Deterministic (a fixed
seed), so the committed file and a regenerated one are byte-identical.

Run: python examples/observability/make_snapshot.py
"""

from __future__ import annotations

import random
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LOG_RATIO_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.5)  # non-negative: a histogram with negative bounds has no _sum


def build(path: Path) -> None:
    disable_created_metrics()  # `_created` samples hold the wall clock: the file would never be reproducible
    rng = random.Random(0)
    registry = CollectorRegistry()
    requests = Counter("serving_requests", "Finished requests by version and outcome.", ["version", "outcome"],
                       registry=registry)
    latency = Histogram("serving_e2e_latency_seconds", "End-to-end request latency.", ["version"],
                        buckets=LATENCY_BUCKETS, registry=registry)
    log_ratio = Histogram("serving_sampled_token_abs_log_ratio", "|log p_ref(y) - log p_serve(y)| of sampled "
                          "tokens, from a shadow scorer.", ["version"], buckets=LOG_RATIO_BUCKETS, registry=registry)
    running = Gauge("serving_requests_running", "Requests in flight.", ["version"], registry=registry)
    for version, errors, slow in (("stable", 5, 0.0), ("canary", 4, 0.01)):
        requests.labels(version, "ok").inc(2000 - errors)
        requests.labels(version, "error").inc(errors)
        for _ in range(2000):
            latency.labels(version).observe(rng.lognormvariate(-1.6, 0.5) + slow)
            log_ratio.labels(version).observe(abs(rng.gauss(0.0, 0.004)))
        running.labels(version).set(3)
    path.write_bytes(generate_latest(registry))


if __name__ == "__main__":
    out = Path(__file__).with_name("canary.prom")
    build(out)
    print(f"wrote {out}")
