"""Stage 3's measurements: timed requests of a kernel at declared load levels (docs/runtime.md).

One *request* is one eval sample. An `openai` kernel sends ``c`` requests at once (concurrency ``c``:
the server batches them as it would live traffic); a local kernel (torch, onnx) runs ``c`` samples as
one batch, so its "concurrency" is its batch size and each sample's latency is that batch's time.
Clocks are monotonic (``time.perf_counter``). An HTTP request's latency is its wire time (sent → last
byte of the answer, ``Outputs.request_s``): promote's JSON decoding would add the same constant to
both sides and pull every ratio towards 1. Warm-up requests run first and are reported apart.

Baseline and candidate are measured *paired*: the same samples, chunk by chunk, alternating which
kernel goes first, so machine load that drifts during the run hits both sides alike and the
per-request ratios (judge.py) cancel it.

Time to first token needs a generation, which prompt scoring is not (vLLM refuses ``prompt_logprobs``
with ``stream``): when a clause asks for ``ttft_ms``, each level gets ``repeats`` extra passes of
streamed one-token generations, paired the same way, timed to the first server-sent event.

Determinism falls out of the same runs: every request's values (logits or log-probs) are kept per
sample from the first pass at concurrency 1; a second pass at concurrency 1 gives ``rerun_equal``'s
drift, passes at higher concurrency give ``batch_invariance``'s drift (vllm-project/vllm#11778).
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from promote.contract.kinds import HTTP
from promote.data import Sample, batches
from promote.errors import PromoteError
from promote.kernels.base import Kernel, Outputs, host_logits

QUANTILE_STEPS = tuple(range(0, 101, 5))  # percent; compact enough for every level of every kernel


@dataclass
class Level:
    """One kernel at one concurrency: per-request latencies (s; NaN for a failed request) aligned
    with ``samples`` × repeats, prompt tokens per request, wall time of the timed part, errors."""

    concurrency: int
    latencies: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    wall_s: float = 0.0
    errors: Counter = field(default_factory=Counter)
    warmup_s: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)  # s per streamed request (NaN: failed); empty: not measured

    @property
    def ok(self) -> np.ndarray:
        return np.array([x for x in self.latencies if x == x], dtype=np.float64)

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies, dtype=np.float64)
        tok = np.asarray(self.tokens, dtype=np.float64)
        good = ~np.isnan(lat)
        def q(a, p):
            return (float(np.percentile(a, p)) if a.size else None)
        per_token = lat[good] / np.maximum(tok[good], 1) * 1e3
        return {
            "concurrency": self.concurrency, "requests": int(lat.size), "errors": int((~good).sum()),
            "error_kinds": dict(self.errors), "error_rate": float((~good).mean()) if lat.size else None,
            "latency_ms": _ms_summary(lat),
            "latency_per_token_ms": {f"p{p}": q(per_token, p) for p in (50, 90, 99)},
            "throughput_tps": float(tok[good].sum() / self.wall_s) if self.wall_s > 0 else None,
            **({"ttft_ms": _ms_summary(np.asarray(self.ttft, dtype=np.float64))} if self.ttft else {}),
            "warmup_ms": [w * 1e3 for w in self.warmup_s],
            # the distribution the HTML report draws (report/figures_runtime.py): 21 quantiles, p0..p100
            "latency_quantiles_ms": [float(v) for v in np.percentile(lat[good] * 1e3, QUANTILE_STEPS)]
            if good.any() else [],
        }


def _ms_summary(seconds: np.ndarray) -> dict[str, float | None]:
    """p50/p90/p99/mean in ms of the successful (non-NaN) values."""
    ok = seconds[~np.isnan(seconds)] * 1e3
    return {**{f"p{p}": float(np.percentile(ok, p)) if ok.size else None for p in (50, 90, 99)},
            "mean": float(ok.mean()) if ok.size else None}


@dataclass
class KernelRuntime:
    label: str
    levels: dict[int, Level] = field(default_factory=dict)
    rerun_drift: float | None = None
    batch_drift: float | None = None
    peak_rss_mb: float | None = None
    peak_gpu_mb: float | None = None  # torch.cuda.max_memory_allocated, when torch runs on a GPU here
    streams: bool = True  # False: the kernel cannot stream, so ttft_ms is not measurable
    memory_source: str | None = None  # what peak_rss_mb is: promote's process, or the server's /metrics
    server_rss: list[float] = field(default_factory=list)  # bytes, sampled between passes (HTTP kernels)
    first: dict[str, np.ndarray] = field(default_factory=dict)  # sample id → values at concurrency 1


def _values(outputs: Outputs, row: int, n: int) -> np.ndarray:
    """The numbers a rerun must reproduce: logits, or top-k and target log-probs, of the scored positions."""
    if outputs.logits is not None:
        return np.asarray(host_logits(outputs.logits[row, : max(n - 1, 0)]), dtype=np.float64).ravel()
    parts = [outputs.topk_logprobs[row, : n - 1].ravel(), outputs.target_logprobs[row, : n - 1].ravel()]
    return np.concatenate(parts).astype(np.float64)


def _local(kernel: Kernel) -> bool:
    return HTTP not in kernel.capabilities


def _chunk(kernel: Kernel, chunk: list[Sample], rt: KernelRuntime, level: Level, *, record: str | None) -> None:
    """Run one chunk (concurrent requests, or one batch for a local kernel); record latencies and values."""
    def one(samples: list[Sample]) -> tuple[float, Outputs | None, str | None]:
        batch = next(batches(samples, len(samples)))
        start = time.perf_counter()
        try:
            out = kernel.run(batch)
        except PromoteError as exc:
            return time.perf_counter() - start, None, _kind(kernel, exc)
        if out.request_s is not None and len(out.request_s) == 1:  # an HTTP request: its wire time
            return float(out.request_s[0]), out, None
        return time.perf_counter() - start, out, None

    if _local(kernel):
        seconds, out, error = one(chunk)
        results = [(seconds, out, error, row) for row in range(len(chunk))]
    else:
        with ThreadPoolExecutor(max_workers=len(chunk)) as pool:
            done = list(pool.map(lambda s: one([s]), chunk))
        results = [(seconds, out, error, 0) for seconds, out, error in done]
    for sample, (seconds, out, error, row) in zip(chunk, results, strict=True):
        level.tokens.append(len(sample.input_ids))
        if error is not None:
            level.latencies.append(float("nan"))
            level.errors[error] += 1
            continue
        level.latencies.append(seconds)
        values = _values(out, row, len(sample.input_ids))
        if record == "first":
            rt.first[sample.id] = values
        elif sample.id in rt.first and values.shape == rt.first[sample.id].shape:
            drift = float(np.max(np.abs(values - rt.first[sample.id]))) if values.size else 0.0
            key = "rerun_drift" if record == "rerun" else "batch_drift"
            setattr(rt, key, max(getattr(rt, key) or 0.0, drift))


def _kind(kernel: Kernel, exc: PromoteError) -> str:
    text = exc.format_message()
    for kind in ("timeout", "HTTP 429", "HTTP 5", "not JSON", "cannot connect", "token mismatch"):
        if kind in text:
            return kind.replace("HTTP 5", "HTTP 5xx")
    return type(exc).__name__


def _cuda_peak_mb() -> float | None:
    """Peak GPU memory torch allocated in this process (None without torch loaded or without a GPU)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return float(torch.cuda.max_memory_allocated()) / 2**20


def _paired_chunks(samples: list[Sample], c: int, kernels: int) -> Iterator[tuple[list[Sample], list[int]]]:
    """Chunks of ``c`` samples, each with the order the kernels run it in, alternating chunk by chunk so
    load that drifts during a pass hits every kernel alike."""
    for n, offset in enumerate(range(0, len(samples), c)):
        order = list(range(kernels))
        yield samples[offset : offset + c], order[::-1] if n % 2 else order


def _ttft_pass(kernels: list[Kernel], runtimes: list[KernelRuntime], samples: list[Sample], c: int) -> None:
    """One streamed pass at concurrency ``c``, paired chunk by chunk like the scoring passes: each
    request's time to first token, NaN for a failed one; a kernel that cannot stream is marked."""
    for chunk, order in _paired_chunks(samples, c, len(kernels)):
        for i in order:
            if not runtimes[i].streams:
                continue

            def one(sample: Sample, kernel: Kernel = kernels[i]) -> float | None:
                try:
                    return kernel.time_to_first_token(list(map(int, sample.input_ids)), sample.id)
                except PromoteError:
                    return float("nan")

            with ThreadPoolExecutor(max_workers=len(chunk)) as pool:
                seconds = list(pool.map(one, chunk))
            if any(s is None for s in seconds):
                runtimes[i].streams = False
                runtimes[i].levels[c].ttft.clear()
                continue
            runtimes[i].levels[c].ttft.extend(seconds)


def measure(kernels: list[Kernel], samples: list[Sample], *, levels: tuple[int, ...], warmup: int,
            repeats: int, rerun: bool = True, ttft: bool = False) -> list[KernelRuntime]:
    """Measure every kernel at every level, paired chunk by chunk; see the module docstring. With
    ``ttft``, ``repeats`` streamed passes per level follow the scoring passes (time to first token)."""
    runtimes = [KernelRuntime(k.label) for k in kernels]

    def sample_servers() -> None:  # an HTTP kernel's server memory, between passes (its peak as far as seen)
        for kernel, rt in zip(kernels, runtimes, strict=True):
            if not _local(kernel) and (rss := kernel.server_rss_bytes()) is not None:
                rt.server_rss.append(rss)

    for index, kernel in enumerate(kernels):
        for sample in (samples * (warmup // max(len(samples), 1) + 1))[:warmup]:
            start = time.perf_counter()
            with contextlib.suppress(PromoteError):
                kernel.run(next(batches([sample], 1)))
            runtimes[index].levels.setdefault(1, Level(1)).warmup_s.append(time.perf_counter() - start)
    plan = sorted(set(levels) | {1})
    for c in plan:
        for rt in runtimes:
            rt.levels.setdefault(c, Level(c))
        passes = repeats + (1 if c == 1 and rerun else 0)  # concurrency 1 once more, untimed: rerun_equal
        for rep in range(passes):
            timed = not (c == 1 and rerun and rep == passes - 1) or passes == 1
            record = "first" if (c == 1 and rep == 0) else ("rerun" if c == 1 else "batch")
            starts = {id(rt): 0.0 for rt in runtimes}
            for chunk, order in _paired_chunks(samples, c, len(kernels)):
                for i in order:
                    rt = runtimes[i]
                    level = rt.levels[c] if timed else Level(c)
                    start = time.perf_counter()
                    _chunk(kernels[i], chunk, rt, level, record=record)
                    starts[id(rt)] += time.perf_counter() - start
            if timed:
                for rt in runtimes:
                    rt.levels[c].wall_s += starts[id(rt)]
            sample_servers()
        for _ in range(repeats if ttft else 0):
            _ttft_pass(kernels, runtimes, samples, c)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 1024**2)
    gpu = _cuda_peak_mb()
    for kernel, rt in zip(kernels, runtimes, strict=True):
        if _local(kernel):
            rt.peak_rss_mb, rt.memory_source = float(peak), "promote's process (ru_maxrss)"
        elif rt.server_rss:
            rt.peak_rss_mb = max(rt.server_rss) / 2**20
            rt.memory_source = (f"the server's /metrics process_resident_memory_bytes, largest of {len(rt.server_rss)} "
                                "samples taken between passes")
        rt.peak_gpu_mb = gpu if _local(kernel) else None
        rt.first.clear()
    return runtimes
