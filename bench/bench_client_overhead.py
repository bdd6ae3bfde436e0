"""Benchmark: promote's `openai` client overhead per request against the server's own latency.

The server's view is vLLM's ``vllm:e2e_request_latency_seconds`` histogram (``/metrics``: the
increase of ``_sum`` over the increase of ``_count`` during the run is its mean per request); the
client's view is the `openai` kernel's per-request wire time (sent → last byte received: what stage 3
times) plus promote's own decoding and mapping to arrays (`client_decode_parse_ms`, timed apart).
The wire time minus the server's e2e is the HTTP transfer and the server's rendering of the answer.
Run against a server already up (tools/vllm_server.py), or let the script start one:

    python bench/bench_client_overhead.py --url http://127.0.0.1:PORT/v1 [--top-k all|5] [--requests 40]
    python bench/bench_client_overhead.py --start   # starts and stops the tiny_llama fp32 server
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.request
from pathlib import Path

import numpy as np

from promote.contract.kernel_specs import OpenAIKernelSpec
from promote.data import batches, read_jsonl
from promote.kernels.openai_kernel import OpenAIKernel

REPO = Path(__file__).resolve().parents[1]


def server_e2e(base: str) -> tuple[float, float]:
    """(sum, count) of vllm:e2e_request_latency_seconds on the server now."""
    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    total = count = 0.0
    for line in text.splitlines():
        m = re.match(r"vllm:e2e_request_latency_seconds_(sum|count)\{[^}]*\} ([0-9.eE+-]+)", line)
        if m:
            if m.group(1) == "sum":
                total += float(m.group(2))
            else:
                count += float(m.group(2))
    return total, count


def run(url: str, top_k: str, requests: int) -> dict:
    spec = OpenAIKernelSpec(kind="openai", url=url, model="tiny-llama", top_k=top_k if top_k == "all" else int(top_k),
                            concurrency=1)
    samples = list(read_jsonl(REPO / "examples" / "tiny_llama" / "eval.jsonl").samples)
    kernel = OpenAIKernel(spec, role="candidate")
    base = url.rstrip("/").removesuffix("/v1")
    with kernel:
        kernel.run(next(batches(samples[:2], 2)))  # warm-up
        before = server_e2e(base)
        wire = np.concatenate([kernel.run(next(batches([samples[i % len(samples)]], 1))).request_s
                               for i in range(requests)])
        after = server_e2e(base)
    decode = decode_ms(kernel, samples[0])
    n = after[1] - before[1]
    server_mean = (after[0] - before[0]) / n if n else float("nan")
    return {"top_k": top_k, "requests": requests, "wire_mean_ms": wire.mean() * 1e3,
            "wire_p50_ms": float(np.median(wire)) * 1e3, "server_e2e_mean_ms": server_mean * 1e3,
            "transfer_and_rendering_ms": (wire.mean() - server_mean) * 1e3,
            "client_decode_parse_ms": decode,
            "promote_share": decode / (wire.mean() * 1e3 + decode)}


def decode_ms(kernel: OpenAIKernel, sample) -> float:  # noqa: ANN001 - a Sample
    """promote's own share: json.loads + mapping one answer to outputs (the rest is HTTP and the server)."""
    import time

    from promote.kernels import openai_api as apis

    ids = list(sample.input_ids)
    body = apis.request_body(kernel.spec.api, kernel.spec.model, ids, kernel.spec.top_k)
    request = urllib.request.Request(kernel.endpoint, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    raw = urllib.request.urlopen(request, timeout=60).read()
    start = time.perf_counter()
    for _ in range(5):
        apis.parse(kernel.spec.api, json.loads(raw), ids, kernel.spec.top_k)
    return (time.perf_counter() - start) / 5 * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url")
    parser.add_argument("--start", action="store_true", help="start the tiny_llama fp32 server for the run")
    parser.add_argument("--top-k", default="all")
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    server = None
    if args.start:
        sys.path.insert(0, str(REPO / "tools"))
        import vllm_server

        server = vllm_server.start(REPO / "examples" / "tiny_llama" / "model")
        args.url = server.url
    try:
        print(json.dumps(run(args.url, args.top_k, args.requests), indent=2))
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
