"""One statistical clause on one slice: the estimate, its interval, and the uncorrected verdict.

Divergence metrics: the slice's statistic (mean or a quantile over its positions) with a bootstrap
interval that resamples the slice's sequences. Task metrics: the paired difference candidate −
reference on the same items, with the flip counts both ways for binary metrics. Multiplicity and
the final status are decided by ``judge.py`` across all items.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from promote.contract.statistical import BINARY_TASK_METRICS, StatisticalClause, StatisticalSpec
from promote.judgement import Verdict
from promote.metrics import stats
from promote.metrics.stats import quantile_statistic
from promote.metrics.summary import QUANTILE_STATS
from promote.results import finite_or_none
from promote.stages.slices.data import PositionTable, TaskItems

# Below this many discordant items a bootstrap of a flip difference is lumpy (and collapses to a
# point at zero flips), so the Bonett–Price interval is used instead (docs/statistics.md).
EXACT_FLIPS_BELOW = 25


@dataclass
class Item:
    """A clause judged on one slice (or on the whole eval set)."""

    clause: StatisticalClause
    label: str | None
    family: str | None
    samples: int
    scored: int
    positions: int
    outcome: str = "inconclusive"  # pass | fail | inconclusive, before multiplicity
    reason: str = ""
    interval: stats.Interval | None = None
    judgement: Verdict | None = None
    p_fail: float | None = None
    p_fail_adjusted: float | None = None
    p_difference: float | None = None
    p_difference_adjusted: float | None = None
    adjusted: stats.Interval | None = None  # the interval at the multiplicity-adjusted level (slices.py)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def estimate(self) -> float:
        return self.interval.estimate if self.interval else math.nan


def bounds_of(clause: StatisticalClause) -> tuple[float | None, float | None]:
    """(upper, lower) limits of the judged quantity: the statistic, or the difference cand − ref."""
    if clause.is_task:
        m = clause.max_drop if clause.max_drop is not None else clause.margin
        return (clause.margin if clause.margin is not None else None), -m  # type: ignore[operator]
    return clause.max, clause.min


def slice_seed(spec: StatisticalSpec, label: str | None) -> int:
    """One seed per slice, shared by every clause and metric on it: the same sequences are resampled
    for all of them, so a slice's intervals agree across clauses. Stable across runs and independent
    of which other slices exist."""
    return (spec.seed * 1_000_003 + zlib.crc32(f"slice|{label or '(all)'}".encode())) % (2**32)


def _per_sequence(seq: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    counts = np.bincount(seq, minlength=n)
    sums = np.bincount(seq, weights=values, minlength=n)
    used = np.nonzero(counts)[0]
    return used, sums[used], counts[used].astype(np.float64)


def _ratio_statistic(num: np.ndarray, den: np.ndarray):  # noqa: ANN202
    def statistic(idx: np.ndarray) -> np.ndarray:
        return num[idx].sum(axis=-1) / den[idx].sum(axis=-1)

    return statistic


def _bootstrap(spec: StatisticalSpec, label: str | None, n: int, statistic: Any, *, width: int = 1) -> stats.Interval:
    """Sequence bootstrap with at most ~4M temporaries per chunk (``width``: elements per replicate).

    The interval's ends are the ones dual to ``stats.tail_p_value`` at α (order statistics of the
    replicates, a normal tail beyond them), so "the interval lies beyond the bound" ⇔ "p ≤ α".
    """
    batch = max(1, int(4_000_000 // max(width, n, 1)))
    iv = stats.sequence_bootstrap(n, statistic, confidence=1 - 2 * spec.alpha, n_resamples=spec.resamples,
                                  seed=slice_seed(spec, label), batch=batch)
    return at_level(iv, spec.alpha)


def at_level(iv: stats.Interval, alpha: float) -> stats.Interval:
    """The interval whose each end is a one-sided level-``alpha`` test (dual to ``tail_p_value``)."""
    r = iv.replicates
    if r is None or r.size == 0:
        return iv
    return stats.Interval(iv.estimate, stats.tail_endpoint(r, iv.estimate, alpha, side="lo"),
                          stats.tail_endpoint(r, iv.estimate, alpha, side="hi"), 1 - 2 * alpha, r, iv.method)


def _p_fail_bootstrap(iv: stats.Interval, upper: float | None, lower: float | None) -> float | None:
    if iv.replicates is None:
        return None
    ps = []
    if upper is not None:
        ps.append(stats.tail_p_value(iv.replicates, iv.estimate, upper, null_side="below"))
    if lower is not None:
        ps.append(stats.tail_p_value(iv.replicates, iv.estimate, lower, null_side="above"))
    return min(ps)


_quantile_statistic = quantile_statistic  # the name the tests and older callers use (metrics.stats)


def divergence_item(spec: StatisticalSpec, clause: StatisticalClause, item: Item, table: PositionTable,
                    mask: np.ndarray, n_samples: int, cache: dict | None = None) -> None:
    """Judge a per-slice statistic of a divergence metric against its `max`/`min`."""
    values = table.values[clause.metric][mask]
    seq = table.seq[mask]
    upper, lower = clause.max, clause.min
    stat = "mean" if clause.stat == "max_over_slices" else clause.stat
    if np.isnan(values).any():
        item.interval = stats.Interval(math.nan, math.nan, math.nan, 1 - 2 * spec.alpha)
        item.outcome, item.reason = "fail", f"non-finite logits at {int(np.isnan(values).sum())} positions"
        return
    key = (item.label, clause.metric, stat)  # one resampling per slice: shared by every clause on it
    if cache is not None and key in cache:
        item.interval = cache[key]
    elif stat in ("max", "min", "sum"):
        observed = float({"max": np.max, "min": np.min, "sum": np.sum}[stat](values))
        item.interval = stats.Interval(observed, observed, observed, 1.0, None, method="observed")
    elif stat == "mean":
        used, sums, counts = _per_sequence(seq, values, n_samples)
        item.interval = _bootstrap(spec, item.label, used.size, _ratio_statistic(sums, counts))
    else:
        used, inverse = np.unique(seq, return_inverse=True)
        item.interval = _bootstrap(spec, item.label, used.size,
                                   quantile_statistic(values, inverse, used.size, QUANTILE_STATS[stat]),
                                   width=values.size)
    if cache is not None:
        cache[key] = item.interval
    item.judgement = stats.judge_interval(item.interval, upper=upper, lower=lower)
    item.outcome = item.judgement.outcome
    item.p_fail = _p_fail_bootstrap(item.interval, upper, lower)


def task_item(spec: StatisticalSpec, clause: StatisticalClause, item: Item, table: PositionTable,
              mask: np.ndarray, members: np.ndarray, n_samples: int, tasks: TaskItems | None) -> None:
    """Judge the paired difference candidate − reference of a task metric against its margin."""
    upper, lower = bounds_of(clause)
    if clause.metric == "accuracy":
        ref = table.ref_correct[mask]  # type: ignore[index]
        cand = table.cand_correct[mask]  # type: ignore[index]
        seq = table.seq[mask]
        used, ref_sum, counts = _per_sequence(seq, ref.astype(np.float64), n_samples)
        _, cand_sum, _ = _per_sequence(seq, cand.astype(np.float64), n_samples)
    else:
        assert tasks is not None
        used = members
        ref, cand = tasks.reference[members], tasks.candidate[members]
        ref_sum, cand_sum, counts = ref, cand, np.ones(members.size)
    n_items = int(counts.sum())
    item.extra.update(reference=float(ref_sum.sum() / n_items), candidate=float(cand_sum.sum() / n_items),
                      items=n_items, test=clause.test)
    diff = _ratio_statistic(cand_sum - ref_sum, counts)
    if clause.metric in BINARY_TASK_METRICS:
        ref_b, cand_b = np.asarray(ref, dtype=bool), np.asarray(cand, dtype=bool)
        b, c = int((ref_b & ~cand_b).sum()), int((~ref_b & cand_b).sum())
        item.extra["flips"] = {"reference_right_candidate_wrong": b, "reference_wrong_candidate_right": c}
        item.extra["p_mcnemar_midp"] = stats.mcnemar_midp(b, c)
        if clause.test == "mcnemar":
            item.p_difference = stats.mcnemar_exact(b, c)
        if b + c < EXACT_FLIPS_BELOW:
            item.interval = stats.flip_change_interval(b, c, n_items, confidence=1 - 2 * spec.alpha)
            item.judgement = stats.judge_interval(item.interval, upper=upper, lower=lower)
            item.outcome = item.judgement.outcome
            sides = [stats.flip_change_p_value(b, c, n_items, bound, null_side=side)
                     for bound, side in ((upper, "below"), (lower, "above")) if bound is not None]
            item.p_fail = min(sides)
            return
    else:
        if clause.test == "wilcoxon":
            item.p_difference = stats.wilcoxon_p(np.asarray(cand) - np.asarray(ref))
    item.interval = _bootstrap(spec, item.label, used.size, diff)
    item.judgement = stats.judge_interval(item.interval, upper=upper, lower=lower)
    item.outcome = item.judgement.outcome
    item.p_fail = _p_fail_bootstrap(item.interval, upper, lower)
    if clause.test == "paired-bootstrap" and item.interval.replicates is not None:
        r = item.interval.replicates
        item.p_difference = min(1.0, 2 * min(stats.bootstrap_p_value(r, 0.0, null_side="above"),
                                             stats.bootstrap_p_value(r, 0.0, null_side="below")))


def slice_summary(spec: StatisticalSpec, table: PositionTable, mask: np.ndarray, n_samples: int,
                  label: str, cache: dict | None = None) -> dict[str, Any]:
    """Every numerical metric on one slice: mean with its sequence-bootstrap CI, p99 and max.

    Descriptive (not judged, not in the multiplicity family): it shows where each metric stands in
    every slice, including metrics no clause bounds. ``nonfinite`` is reported as a total count.
    """
    out: dict[str, Any] = {}
    seq = table.seq[mask]
    for metric, all_values in sorted(table.values.items()):
        values = all_values[mask]
        if values.size == 0:
            continue
        if metric == "nonfinite":
            out[metric] = {"sum": float(values.sum())}
            continue
        if np.isnan(values).any():
            out[metric] = {"mean": None, "ci": None, "p99": None, "max": None, "nonfinite_positions":
                           int(np.isnan(values).sum())}
            continue
        iv = cache.get((label, metric, "mean")) if cache is not None else None
        if iv is None:
            used, sums, counts = _per_sequence(seq, values, n_samples)
            iv = _bootstrap(spec, label, used.size, _ratio_statistic(sums, counts))
        out[metric] = {"mean": iv.estimate, "ci": [finite_or_none(iv.lo), finite_or_none(iv.hi)],
                       "p99": float(np.percentile(values, 99, method="higher")), "max": float(values.max())}
    return out
