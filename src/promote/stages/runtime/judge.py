"""Stage 3's judge: runtime clauses against the measurements, pass / fail / inconclusive as stage 2.

* ``max_ratio`` on latency (``paired``, the default): the candidate and baseline ran the same
  requests back to back (runtime_measure.py), so each request has a ratio candidate/baseline that
  cancels the machine's load drift. ``p50``/``mean``: the median (mean) of those per-request ratios;
  ``p90``/``p99``/``max``: the ratio of the two sides' tail statistics. Either way a percentile
  bootstrap CI resamples request pairs together (``stats.sequence_bootstrap``). ``paired: false``
  (unpaired traffic) uses the Mann–Whitney U test of "candidate ≤ max_ratio × baseline" in both
  directions instead.
* ``max`` / ``min`` on latency: bootstrap CI of the candidate's statistic over requests.
* ``ttft_ms`` (time to first token, streamed passes) is judged exactly like latency; a kernel that
  cannot stream makes the clause ``error``, never ``pass``.
* Throughput, error rate, peak memory: one number per run (point judgement); memory also as a ratio to
  the baseline's (``max_ratio``). Behind HTTP, memory is the server's own report (``/metrics``).
* ``rerun_equal`` / ``batch_invariance``: the largest drift of the candidate's own values;
  ``require: true`` demands bitwise equality, ``max`` a drift bound.

Repeated looks over a canary window: each look is judged at level ``alpha / looks`` (Bonferroni
alpha spending over the declared number of looks), so looking ``looks`` times keeps the chance of
any false alarm at most ``alpha`` (docs/runtime.md).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats as sps

from promote.judgement import judge
from promote.metrics.stats import sequence_bootstrap
from promote.results import Bound, ClauseResult
from promote.stages.runtime.measure import KernelRuntime

_Q = {"p50": 50, "p90": 90, "p99": 99, "max": 100, "min": 0}


def _stat(values: np.ndarray, stat: str, axis: int = -1) -> np.ndarray:
    if stat == "mean":
        return np.mean(values, axis=axis)
    return np.percentile(values, _Q.get(stat, 50), axis=axis)


LATENCY_METRICS = ("latency_ms", "latency_per_token_ms", "ttft_ms")


def _latency_ms(level: Any, metric: str) -> np.ndarray:
    """Per-request values of a latency metric in ms (NaN for a failed request), aligned across kernels."""
    if metric == "ttft_ms":
        return np.asarray(level.ttft, dtype=np.float64) * 1e3
    scale = 1e3 / (np.asarray(level.tokens, dtype=np.float64) if metric == "latency_per_token_ms" else 1.0)
    return np.asarray(level.latencies, dtype=np.float64) * scale


def _bounds(clause: Any) -> list[Bound]:
    return [Bound(op, v) for op, v in (("max", clause.max), ("min", clause.min)) if v is not None]


def judge_clause(clause: Any, cand: KernelRuntime, base: KernelRuntime | None, *, alpha: float, resamples: int,
                 seed: int) -> ClauseResult:
    metric, stat = clause.metric, clause.stat or "p50"
    level_c = clause.raw.get("concurrency", 1)
    result = ClauseResult(id=clause.id, stage="runtime", status="error", message="", metric=metric, stat=stat,
                          line=clause.line)
    level = cand.levels.get(level_c)
    if level is None:
        result.message = f"no measurement at concurrency {level_c}; add it to `runtime.concurrency`"
        return result
    summary = level.summary()
    result.evidence = {"concurrency": level_c, "candidate": summary}
    confidence = 1 - 2 * alpha
    if metric in ("rerun_equal", "batch_invariance", "batch_invariant"):
        drift = cand.rerun_drift if metric == "rerun_equal" else cand.batch_drift
        if drift is None:
            result.status, result.message = "inconclusive", "no repeated or concurrent request to compare"
            return result
        bounds = [Bound("max", 0.0)] if clause.require else _bounds(clause)
        return _point(result, drift, bounds, f"largest drift of the candidate's values: {drift:.3g}")
    if metric == "ttft_ms" and not (cand.streams and level.ttft):
        result.message = (f"time to first token is not measurable for {cand.label}: it does not stream (local "
                          "kernels never do; an `openai` kernel does with `api: vllm` or `openai`)")
        return result
    if metric in LATENCY_METRICS:
        c_lat = _latency_ms(level, metric)
        if clause.max_ratio is not None:
            if base is None or level_c not in base.levels:
                result.message = "`max_ratio` needs a baseline measured at the same concurrency"
                return result
            if metric == "ttft_ms" and not (base.streams and base.levels[level_c].ttft):
                result.message = (f"`max_ratio` on time to first token needs a baseline that streams; {base.label} "
                                  "does not")
                return result
            b_lat = _latency_ms(base.levels[level_c], metric)
            result.evidence["baseline"] = base.levels[level_c].summary()
            keep = ~(np.isnan(c_lat) | np.isnan(b_lat))
            c_lat, b_lat = c_lat[keep], b_lat[keep]
            if c_lat.size < 5:
                result.status, result.message = "inconclusive", f"{c_lat.size} paired requests; need at least 5"
                return result
            result.evidence["ratio"] = "unpaired" if clause.raw.get("paired", True) is False else "paired"
            if clause.raw.get("paired", True) is False:
                return _mann_whitney(result, c_lat, b_lat, clause.max_ratio, alpha)
            ratios = c_lat / b_lat
            if stat in ("p50", "mean"):  # the centre: the statistic of the per-request ratios themselves
                iv = sequence_bootstrap(ratios.size, lambda idx: _stat(ratios[idx], stat), confidence=confidence,
                                        n_resamples=resamples, seed=seed)
            else:  # the tail: ratio of the two tails, request pairs resampled together
                iv = sequence_bootstrap(c_lat.size, lambda idx: _stat(c_lat[idx], stat) / _stat(b_lat[idx], stat),
                                        confidence=confidence, n_resamples=resamples, seed=seed)
            result.evidence["median_request_ratio"] = float(np.median(ratios))
            verdict = judge([Bound("max", clause.max_ratio)], iv.estimate, iv.lo, iv.hi)
            result.bounds, result.observed = [Bound("max", clause.max_ratio)], iv.estimate
            result.status = verdict.status
            what = "time-to-first-token" if metric == "ttft_ms" else "latency"
            result.message = (f"{stat} {what} ratio candidate/baseline {iv.estimate:.3f} "
                              f"[{iv.lo:.3f}, {iv.hi:.3f}] ({confidence:.0%} paired bootstrap, {c_lat.size} "
                              f"requests at concurrency {level_c}) vs max_ratio {clause.max_ratio:g}")
            if verdict.status == "inconclusive":
                result.message += "; " + what_would_decide(c_lat.size, iv.estimate, iv.lo, iv.hi, clause.max_ratio)
            return result.judged(verdict, low=iv.lo, high=iv.hi, samples=int(c_lat.size))
        good = c_lat[~np.isnan(c_lat)]
        if good.size < 2:
            result.status, result.message = "inconclusive", f"{good.size} successful requests"
            return result
        iv = sequence_bootstrap(good.size, lambda idx: _stat(good[idx], stat), confidence=confidence,
                                n_resamples=resamples, seed=seed)
        verdict = judge(_bounds(clause), iv.estimate, iv.lo, iv.hi)
        result.bounds, result.observed, result.status = _bounds(clause), iv.estimate, verdict.status
        result.message = (f"{stat}({metric}) = {iv.estimate:.3f} [{iv.lo:.3f}, {iv.hi:.3f}] at concurrency "
                          f"{level_c}")
        if verdict.status == "inconclusive" and result.bounds:
            result.message += "; " + what_would_decide(good.size, iv.estimate, iv.lo, iv.hi, result.bounds[0].value)
        return result.judged(verdict, low=iv.lo, high=iv.hi, samples=int(good.size))
    if metric == "throughput_tps":
        value = summary["throughput_tps"]
        return _point(result, value, _bounds(clause), f"throughput {value:.1f} tokens/s at concurrency {level_c}")
    if metric == "error_rate":
        value = summary["error_rate"]
        return _point(result, value, _bounds(clause), _error_text(summary))
    if metric == "peak_memory_mb":
        if cand.peak_rss_mb is None:
            result.message = ("peak memory is not measurable for this kernel behind HTTP: its server's /metrics page "
                              "has no `process_resident_memory_bytes`")
            return result
        where = f"peak RSS {cand.peak_rss_mb:.0f} MB ({cand.memory_source})"
        if clause.max_ratio is not None:
            if base is None or base.peak_rss_mb is None:
                result.message = "`max_ratio` on memory needs a baseline whose memory is measurable"
                return result
            ratio = cand.peak_rss_mb / base.peak_rss_mb
            return _point(result, ratio, [Bound("max", clause.max_ratio)],
                          f"{where} / baseline {base.peak_rss_mb:.0f} MB = {ratio:.3f}")
        return _point(result, cand.peak_rss_mb, _bounds(clause), where)
    result.message = f"metric `{metric}` is not measured by this version"
    return result


def what_would_decide(n: int, estimate: float, lo: float, hi: float, bound: float) -> str:
    """How many more requests per side would make an interval that straddles ``bound`` exclude it,
    if the estimate stays where it is: the interval's arm towards the bound (bootstrap intervals are
    not symmetric) shrinks like 1/√n, so n·(arm/distance)² requests narrow it to the distance between
    estimate and bound. New requests move the estimate too, so the hint aims at half that distance:
    it decides the clause unless the estimate moves more than halfway to the bound. On the bound
    itself nothing does."""
    half = (hi - estimate) if bound >= estimate else (estimate - lo)
    distance = abs(estimate - bound)
    if not (half > 0 and distance > 0 and math.isfinite(half)):
        return (f"the estimate sits on the bound {bound:g}: more requests would not decide it; the bound needs "
                "room from what the two sides measure")
    target = 0.5 * distance
    needed = max(math.ceil(n * (half / target) ** 2), n + 1)
    relative = 100 * target / abs(estimate) if estimate else float("inf")
    return (f"≈{needed - n} more requests per side ({needed} in all, e.g. `runtime.repeats` × "
            f"{math.ceil(needed / max(n, 1))}) would likely narrow the interval to ±{relative:.1f} % and "
            "decide it, "
            f"unless the estimate ({estimate:.3f}) moves more than halfway to the bound")


def _point(result: ClauseResult, value: float | None, bounds: list[Bound], message: str) -> ClauseResult:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        result.status, result.message = "inconclusive", message + " (no value)"
        return result
    if not bounds:
        result.message = "the clause sets no bound (`max`, `min`, `max_ratio` or `require`)"
        return result
    verdict = judge(bounds, value)
    result.bounds, result.observed, result.status, result.message = bounds, value, verdict.status, message
    return result.judged(verdict)


def _mann_whitney(result: ClauseResult, cand: np.ndarray, base: np.ndarray, ratio: float,
                  alpha: float) -> ClauseResult:
    """Unpaired: H0 "candidate ≤ ratio × baseline" vs slower (fail side), and vs faster (pass side)."""
    scaled = base * ratio
    p_slower = float(sps.mannwhitneyu(cand, scaled, alternative="greater").pvalue)
    p_faster = float(sps.mannwhitneyu(cand, scaled, alternative="less").pvalue)
    status = "fail" if p_slower < alpha else ("pass" if p_faster < alpha else "inconclusive")
    result.status, result.p_value, result.bounds = status, p_slower, [Bound("max", ratio)]
    result.observed = float(np.median(cand) / np.median(base))
    result.message = (f"Mann–Whitney U (unpaired): candidate slower than {ratio:g}× baseline p = {p_slower:.3g}, "
                      f"faster p = {p_faster:.3g} at alpha {alpha:.3g}; median ratio {result.observed:.3f}")
    result.samples = int(cand.size)
    return result


def _error_text(summary: dict[str, Any]) -> str:
    """``error rate 0.02: 2 of 100 requests failed (timeout ×1, HTTP 500 ×1)``; no empty ``({})`` when none did."""
    kinds = summary.get("error_kinds") or {}
    what = f" ({', '.join(f'{kind} ×{n}' for kind, n in sorted(kinds.items()))})" if kinds else ""
    value = summary["error_rate"]
    rate = "n/a" if value is None else f"{value:.3g}"
    return f"error rate {rate}: {summary.get('errors', 0)} of {summary.get('requests', 0)} requests failed{what}"
