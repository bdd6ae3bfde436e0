"""Statistics for the slice stage: bootstrap CIs over sequences, paired tests, multiplicity, verdicts.

Everything that scipy implements comes from scipy (``bootstrap``, ``binomtest``, ``wilcoxon``,
``false_discovery_control``, ``norm``); only the glue is written here: Holm's step-down (not in
scipy; checked against statsmodels in the tests), the Bonett–Price interval for a paired change
in accuracy with few flips (a closed form scipy lacks), and the three-way equivalence verdict.

Why sequences are the resampling unit: positions within one sequence share a context, so their
divergences are correlated. Resampling positions would treat 200 correlated positions as 200
independent draws and give intervals that are far too narrow. Every bootstrap here resamples whole
sequences (a cluster bootstrap) and recomputes the statistic from their positions.

Why the verdict is three-way (TOST duality): a bound or margin is judged by the two-sided
(1 − 2α) interval, i.e. two one-sided tests at level α. Inside the bound → ``pass``; beyond it →
``fail`` (the claim "this slice violates the bound" must also survive the multiplicity correction);
straddling → ``inconclusive``. "No significant difference" is never read as a pass.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from promote.judgement import Verdict, judge
from promote.results import Bound

CORRECTIONS = ("holm", "bh", "none")


@dataclass(frozen=True)
class Interval:
    """A point estimate with its two-sided interval at ``level`` and the bootstrap replicates (if any)."""

    estimate: float
    lo: float
    hi: float
    level: float
    replicates: np.ndarray | None = None
    method: str = "bootstrap"

    @property
    def se(self) -> float:
        """Standard error implied by the interval's width (normal approximation)."""
        z = stats.norm.ppf(0.5 + self.level / 2)
        return (self.hi - self.lo) / (2 * z) if math.isfinite(self.hi - self.lo) else math.inf


def sequence_bootstrap(
    n_sequences: int,
    statistic: Callable[[np.ndarray], np.ndarray | float],
    *,
    confidence: float,
    n_resamples: int,
    seed: int,
    batch: int | None = None,
) -> Interval:
    """Percentile bootstrap CI of a statistic of whole sequences, resampled with replacement.

    ``statistic`` receives an integer array of sequence indices (shape ``[n]`` or ``[batch, n]``; it
    must reduce over the last axis) and returns the statistic of those sequences. ``batch`` bounds
    how many resamples are evaluated at once (memory).
    scipy.stats.bootstrap does the resampling on the index array, so the same seed gives the same
    interval. Fewer than two sequences give an unbounded interval (nothing to resample).
    """
    index = np.arange(n_sequences)
    estimate = float(statistic(index))
    if n_sequences < 2:
        return Interval(estimate, -math.inf, math.inf, confidence, None)

    def wrapped(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(statistic(np.moveaxis(idx, axis, -1)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate (all-equal) replicates are fine for percentiles
        result = stats.bootstrap(
            (index,), wrapped, vectorized=True, n_resamples=n_resamples, batch=batch,
            confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed),
        )
    lo, hi = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return Interval(estimate, lo, hi, confidence, np.asarray(result.bootstrap_distribution, dtype=np.float64))


def bootstrap_p_value(replicates: np.ndarray, bound: float, *, null_side: str) -> float:
    """One-sided bootstrap p-value for H0 "the statistic is on ``null_side`` of ``bound``".

    ``null_side="above"``: H0 θ ≥ bound (small p = evidence θ < bound); ``"below"``: H0 θ ≤ bound.
    Counts replicates on the null side with the +1 correction, so p is never 0 and its smallest
    value is 1/(R + 1) — with many slices, R must be large enough for a correction to reach α.
    """
    r = np.asarray(replicates, dtype=np.float64)
    hits = int((r >= bound).sum()) if null_side == "above" else int((r <= bound).sum())
    return (hits + 1) / (r.size + 1)


def tail_p_value(replicates: np.ndarray, estimate: float, bound: float, *, null_side: str) -> float:
    """One-sided p-value for H0 "the statistic is on ``null_side`` of ``bound``", not floored by R.

    Where the bound falls inside the bootstrap distribution this is ``bootstrap_p_value``
    ((hits + 1)/(R + 1)). When the observed value lies beyond **every** replicate (no hit), the count
    says only p < 1/(R + 1); the tail is then read from a normal fitted to the replicates (centre: the
    estimate, scale: their standard deviation) and p = min(1/(R + 1), normal tail). The result is
    monotone in ``bound``, so ``tail_endpoint`` inverts it exactly (docs/statistics.md §5): a CI forty
    standard errors beyond the bound gets p ≈ 0, and a Holm correction over hundreds of slices can
    still declare it failing.
    """
    r = np.asarray(replicates, dtype=np.float64)
    hits = int((r >= bound).sum()) if null_side == "above" else int((r <= bound).sum())
    floor = 1.0 / (r.size + 1)
    if hits:
        return (hits + 1) / (r.size + 1)
    sd = float(np.std(r))
    if not sd > 0 or not math.isfinite(sd):
        return 0.0 if bound != estimate else floor
    z = (bound - estimate) / sd
    tail = float(stats.norm.cdf(z) if null_side == "below" else stats.norm.sf(z))
    return min(floor, tail)


def tail_endpoint(replicates: np.ndarray, estimate: float, level: float, *, side: str) -> float:
    """The interval end dual to ``tail_p_value`` at one-sided level ``level``.

    ``side="lo"``: the largest bound with p("statistic ≤ bound") ≤ level — a bound below it is
    rejected; ``"hi"`` mirrors it. Hence "the interval lies beyond the bound" ⇔ "p ≤ level", the
    property that keeps multiplicity-adjusted intervals and adjusted p-values from disagreeing.
    """
    r = np.sort(np.asarray(replicates, dtype=np.float64))
    n = r.size
    k = math.floor(level * (n + 1) - 1 + 1e-9)  # replicates that may lie on the null side
    if k >= 1:
        return float(r[min(k, n - 1)] if side == "lo" else r[max(n - 1 - k, 0)])
    edge = float(r[0] if side == "lo" else r[-1])
    if level >= 1.0 / (n + 1):
        return edge
    sd = float(np.std(r))
    if not sd > 0 or not math.isfinite(sd):
        return estimate
    z = float(stats.norm.isf(level))
    return min(edge, estimate - z * sd) if side == "lo" else max(edge, estimate + z * sd)


def mcnemar_exact(b: int, c: int) -> float:
    """Exact (conditional binomial) two-sided McNemar p-value from the two discordant counts."""
    m = b + c
    return 1.0 if m == 0 else float(stats.binomtest(b, m, 0.5).pvalue)


def mcnemar_midp(b: int, c: int) -> float:
    """Mid-p McNemar: exact p minus the probability of the observed count (Fagerland et al. 2013).

    Less conservative than the exact test for small discordant counts while keeping its type I
    error close to nominal; reported next to the exact p-value.
    """
    m = b + c
    if m == 0:
        return 1.0
    return float(min(1.0, mcnemar_exact(b, c) - stats.binom.pmf(b, m, 0.5)))


def _bonett_price(b: int, c: int, n: int) -> tuple[float, float]:
    pb, pc = (b + 1) / (n + 2), (c + 1) / (n + 2)
    d = pc - pb
    return d, math.sqrt(max(pb + pc - d * d, 0.0) / (n + 2))


def flip_change_interval(b: int, c: int, n: int, *, confidence: float) -> Interval:
    """Bonett–Price adjusted Wald interval for the paired change in accuracy Δ = (c − b)/n.

    b: items the reference got right and the candidate wrong; c: the reverse; n: paired items.
    Adds one pseudo-count to each discordant cell (Bonett & Price 2012), which keeps coverage close
    to nominal for small discordant counts (Fagerland, Lydersen & Laake 2014 recommend it) and never
    collapses to [0, 0] at zero flips, where a bootstrap would pass on no evidence. scipy has no
    paired-proportion interval, so this closed form is written out (and checked in the tests).
    """
    d, se = _bonett_price(b, c, n)
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    return Interval((c - b) / n, max(-1.0, d - z * se), min(1.0, d + z * se), confidence, None,
                    method="bonett-price")


def flip_change_p_value(b: int, c: int, n: int, bound: float, *, null_side: str) -> float:
    """One-sided p-value dual to ``flip_change_interval``.

    ``null_side="above"``: H0 Δ ≥ bound (small p: the candidate is worse than ``bound``);
    ``"below"``: H0 Δ ≤ bound.
    """
    d, se = _bonett_price(b, c, n)
    z = (d - bound) / se
    return float(stats.norm.cdf(z) if null_side == "above" else stats.norm.sf(z))


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (1.0 when all are zero)."""
    d = np.asarray(differences, dtype=np.float64)
    if d.size == 0 or not np.any(d != 0):
        return 1.0
    return float(stats.wilcoxon(d).pvalue)


def holm(pvalues: list[float] | np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (step-down, family-wise error control); scipy has none."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def adjust(pvalues: list[float] | np.ndarray, method: str) -> np.ndarray:
    """Adjusted p-values for ``holm`` (family-wise), ``bh`` (false discovery rate) or ``none``."""
    p = np.asarray(pvalues, dtype=np.float64)
    if method == "none" or p.size == 0:
        return p.copy()
    if method == "holm":
        return holm(p)
    if method == "bh":
        return stats.false_discovery_control(p, method="bh")
    raise ValueError(f"unknown correction {method!r}; choose from {', '.join(CORRECTIONS)}")


def minimum_detectable_effect(se: float, *, alpha: float, power: float = 0.8) -> float:
    """Smallest true excess over a bound that a one-sided level-α test detects with ``power``.

    (z_{1−α} + z_power)·SE: effects below it are likely to come out ``inconclusive`` with this
    many sequences — the eval set cannot see them.
    """
    if se == 0:  # no spread: every excess is seen (and a tiny alpha's z = inf must not make 0·inf = nan)
        return 0.0
    return float((stats.norm.ppf(1 - alpha) + stats.norm.ppf(power)) * se)


def more_samples_needed(n: int, estimate: float, bound: float, half_width: float) -> int | None:
    """About how many more sequences would make the interval clear ``bound``, if the estimate holds.

    Interval half-widths shrink like 1/√n, so n' = n·(half_width / |estimate − bound|)². None when
    the estimate sits on the bound (no sample size decides it) or the width is unknown.
    """
    gap = abs(estimate - bound)
    if gap == 0 or not math.isfinite(half_width) or not math.isfinite(gap):
        return None
    return max(1, math.ceil(n * (half_width / gap) ** 2) - n)


def judge_interval(iv: Interval, *, upper: float | None = None, lower: float | None = None) -> Verdict:
    """TOST-style: inside [lower, upper] → pass; wholly beyond either → fail; else inconclusive.

    Multiplicity is applied by the caller to the "fail" claim; this is the per-interval reading,
    done by ``judgement.judge`` like every other clause.
    """
    bounds = [Bound(op, v) for op, v in (("max", upper), ("min", lower)) if v is not None]
    return judge(bounds, iv.estimate, iv.lo, iv.hi)


def quantile_statistic(values: np.ndarray, owner: np.ndarray, n: int, q: float):  # noqa: ANN202
    """Quantile ("higher" method, as in the numerics summaries) of all positions of the resampled
    sequences, computed with per-sequence multiplicities instead of materialising the resample."""
    order = np.argsort(values, kind="stable")
    v, o = values[order], owner[order]

    def statistic(idx: np.ndarray) -> np.ndarray:
        idx2 = np.atleast_2d(idx)
        weights = np.zeros((idx2.shape[0], n))
        np.add.at(weights, (np.arange(idx2.shape[0])[:, None], idx2), 1.0)
        cum = np.cumsum(weights[:, o], axis=1)
        k = np.ceil(q / 100.0 * (cum[:, -1] - 1))
        pick = np.argmax(cum >= (k + 1)[:, None], axis=1)
        out = v[pick]
        return out if idx.ndim > 1 else out[0]

    return statistic
