"""Stage 3's judge: runtime clauses against the measurements, pass / fail / inconclusive as stage 2.

* ``max_ratio`` on latency (``paired``, the default): the candidate and baseline ran the same
  requests back to back (measure.py), so each request has a ratio candidate/baseline that
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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from promote.judgement import judge
from promote.metrics.stats import sequence_bootstrap
from promote.results import Bound, ClauseResult
from promote.stages.runtime.measure import KernelRuntime
from promote.vocabulary import LATENCY_METRICS

_Q = {"p50": 50, "p90": 90, "p99": 99, "max": 100, "min": 0}


def _stat(values: np.ndarray, stat: str, axis: int = -1) -> np.ndarray:
    if stat == "mean":
        return np.mean(values, axis=axis)
    return np.percentile(values, _Q.get(stat, 50), axis=axis)


@dataclass
class _Case:
    """One runtime clause with what it is judged on: the candidate's (and baseline's) measurements at
    the clause's concurrency, the result being filled in and the CI settings."""

    clause: Any
    cand: KernelRuntime
    base: KernelRuntime | None
    level: Any
    concurrency: int
    summary: dict[str, Any]
    result: ClauseResult
    alpha: float
    resamples: int
    seed: int

    @property
    def stat(self) -> str:
        return self.result.stat or "p50"

    @property
    def confidence(self) -> float:
        return 1 - 2 * self.alpha

    def error(self, message: str) -> ClauseResult:
        self.result.message = message  # the status stays `error`: nothing was judged
        return self.result

    def inconclusive(self, message: str) -> ClauseResult:
        self.result.status, self.result.message = "inconclusive", message
        return self.result


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
    """Judge one runtime clause: the measurements at its concurrency, then its metric's judge (``JUDGES``)."""
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
    judge_metric = JUDGES.get(metric)
    if judge_metric is None:
        result.message = f"metric `{metric}` is not measured by this version"
        return result
    return judge_metric(_Case(clause, cand, base, level, level_c, summary, result, alpha, resamples, seed))


def _drift(case: _Case) -> ClauseResult:
    """``rerun_equal`` / ``batch_invariance``: the largest drift of the candidate's own values."""
    cand = case.cand
    drift = cand.rerun_drift if case.clause.metric == "rerun_equal" else cand.batch_drift
    if drift is None:
        return case.inconclusive("no repeated or concurrent request to compare")
    bounds = [Bound("max", 0.0)] if case.clause.require else _bounds(case.clause)
    return _point(case.result, drift, bounds, f"largest drift of the candidate's values: {drift:.3g}")


def _latency(case: _Case) -> ClauseResult:
    """Latency, latency per token and time to first token: against ``max_ratio`` × the baseline, or absolute."""
    metric = case.clause.metric
    if metric == "ttft_ms" and not (case.cand.streams and case.level.ttft):
        return case.error(f"time to first token is not measurable for {case.cand.label}: it does not stream (local "
                          "kernels never do; an `openai` kernel does with `api: vllm` or `openai`)")
    c_lat = _latency_ms(case.level, metric)
    if case.clause.max_ratio is not None:
        return _latency_ratio(case, c_lat)
    good = c_lat[~np.isnan(c_lat)]
    if good.size < 2:
        return case.inconclusive(f"{good.size} successful requests")
    stat = case.stat
    iv = sequence_bootstrap(good.size, lambda idx: _stat(good[idx], stat), confidence=case.confidence,
                            n_resamples=case.resamples, seed=case.seed)
    result, bounds = case.result, _bounds(case.clause)
    verdict = judge(bounds, iv.estimate, iv.lo, iv.hi)
    result.bounds, result.observed, result.status = bounds, iv.estimate, verdict.status
    result.message = (f"{stat}({metric}) = {iv.estimate:.3f} [{iv.lo:.3f}, {iv.hi:.3f}] at concurrency "
                      f"{case.concurrency}")
    if verdict.status == "inconclusive" and result.bounds:
        result.message += "; " + what_would_decide(good.size, iv.estimate, iv.lo, iv.hi, result.bounds[0].value)
    return result.judged(verdict, low=iv.lo, high=iv.hi, samples=int(good.size))


def _latency_ratio(case: _Case, c_lat: np.ndarray) -> ClauseResult:
    """Candidate / baseline on the same requests: paired bootstrap CI of the ratio, or Mann–Whitney unpaired."""
    clause, base, level_c, metric = case.clause, case.base, case.concurrency, case.clause.metric
    if base is None or level_c not in base.levels:
        return case.error("`max_ratio` needs a baseline measured at the same concurrency")
    if metric == "ttft_ms" and not (base.streams and base.levels[level_c].ttft):
        return case.error(f"`max_ratio` on time to first token needs a baseline that streams; {base.label} "
                          "does not")
    b_lat = _latency_ms(base.levels[level_c], metric)
    result = case.result
    result.evidence["baseline"] = base.levels[level_c].summary()
    keep = ~(np.isnan(c_lat) | np.isnan(b_lat))
    c_lat, b_lat = c_lat[keep], b_lat[keep]
    if c_lat.size < 5:
        return case.inconclusive(f"{c_lat.size} paired requests; need at least 5")
    paired = clause.raw.get("paired", True) is not False
    result.evidence["ratio"] = "paired" if paired else "unpaired"
    if not paired:
        return _mann_whitney(result, c_lat, b_lat, clause.max_ratio, case.alpha)
    stat, confidence, ratios = case.stat, case.confidence, c_lat / b_lat
    if stat in ("p50", "mean"):  # the centre: the statistic of the per-request ratios themselves
        iv = sequence_bootstrap(ratios.size, lambda idx: _stat(ratios[idx], stat), confidence=confidence,
                                n_resamples=case.resamples, seed=case.seed)
    else:  # the tail: ratio of the two tails, request pairs resampled together
        iv = sequence_bootstrap(c_lat.size, lambda idx: _stat(c_lat[idx], stat) / _stat(b_lat[idx], stat),
                                confidence=confidence, n_resamples=case.resamples, seed=case.seed)
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


def _throughput(case: _Case) -> ClauseResult:
    value = case.summary["throughput_tps"]
    return _point(case.result, value, _bounds(case.clause),
                  f"throughput {value:.1f} tokens/s at concurrency {case.concurrency}")


def _error_rate(case: _Case) -> ClauseResult:
    return _point(case.result, case.summary["error_rate"], _bounds(case.clause), _error_text(case.summary))


def _memory(case: _Case) -> ClauseResult:
    """Peak resident memory, absolute or as a ratio to the baseline's (behind HTTP: the server's /metrics)."""
    cand, base, clause = case.cand, case.base, case.clause
    if cand.peak_rss_mb is None:
        return case.error("peak memory is not measurable for this kernel behind HTTP: its server's /metrics page "
                          "has no `process_resident_memory_bytes`")
    where = f"peak RSS {cand.peak_rss_mb:.0f} MB ({cand.memory_source})"
    if clause.max_ratio is None:
        return _point(case.result, cand.peak_rss_mb, _bounds(clause), where)
    if base is None or base.peak_rss_mb is None:
        return case.error("`max_ratio` on memory needs a baseline whose memory is measurable")
    ratio = cand.peak_rss_mb / base.peak_rss_mb
    return _point(case.result, ratio, [Bound("max", clause.max_ratio)],
                  f"{where} / baseline {base.peak_rss_mb:.0f} MB = {ratio:.3f}")


#: How each runtime metric (vocabulary.RUNTIME_METRICS) is judged: one row per metric, no if-chain.
JUDGES: dict[str, Callable[[_Case], ClauseResult]] = {
    **dict.fromkeys(LATENCY_METRICS, _latency),
    "throughput_tps": _throughput,
    "peak_memory_mb": _memory,
    "error_rate": _error_rate,
    "rerun_equal": _drift,
    "batch_invariance": _drift,
    "batch_invariant": _drift,
}


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
