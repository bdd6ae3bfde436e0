"""Every statistical routine of metrics/stats.py against scipy or statsmodels on fixed data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.multitest import multipletests

from promote.metrics import stats

RNG = np.random.default_rng(12345)
PVALUES = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])


def test_holm_matches_statsmodels():
    expected = multipletests(PVALUES, method="holm")[1]
    np.testing.assert_allclose(stats.holm(PVALUES), expected, rtol=1e-12)
    shuffled = RNG.permutation(PVALUES)
    np.testing.assert_allclose(stats.adjust(shuffled, "holm"), multipletests(shuffled, method="holm")[1])


def test_bh_matches_scipy_and_statsmodels():
    np.testing.assert_allclose(stats.adjust(PVALUES, "bh"), sps.false_discovery_control(PVALUES, method="bh"))
    np.testing.assert_allclose(stats.adjust(PVALUES, "bh"), multipletests(PVALUES, method="fdr_bh")[1])


def test_adjust_none_and_empty_and_unknown():
    np.testing.assert_array_equal(stats.adjust(PVALUES, "none"), PVALUES)
    assert stats.adjust([], "holm").size == 0
    with pytest.raises(ValueError, match="unknown correction"):
        stats.adjust(PVALUES, "bonferonni")


@pytest.mark.parametrize(("b", "c"), [(0, 0), (3, 1), (12, 2), (40, 31), (0, 9)])
def test_mcnemar_exact_matches_statsmodels(b, c):
    table = [[50, b], [c, 50]]
    expected = sm_mcnemar(table, exact=True).pvalue
    assert stats.mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("b", "c"), [(3, 1), (12, 2), (5, 5), (0, 7)])
def test_mcnemar_midp_is_exact_minus_point_probability(b, c):
    m = b + c
    expected = min(1.0, 2 * sps.binom.cdf(min(b, c), m, 0.5)) - sps.binom.pmf(b, m, 0.5)
    assert stats.mcnemar_midp(b, c) == pytest.approx(expected, rel=1e-12)
    assert stats.mcnemar_midp(b, c) < stats.mcnemar_exact(b, c)


def test_wilcoxon_matches_scipy():
    d = RNG.normal(0.1, 1.0, size=40)
    assert stats.wilcoxon_p(d) == pytest.approx(sps.wilcoxon(d).pvalue, rel=1e-12)
    assert stats.wilcoxon_p(np.zeros(10)) == 1.0


def test_sequence_bootstrap_matches_scipy_on_cluster_means():
    sums, counts = RNG.normal(5, 2, size=60), RNG.integers(1, 20, size=60).astype(float)

    def ratio(idx):
        return sums[idx].sum(axis=-1) / counts[idx].sum(axis=-1)

    iv = stats.sequence_bootstrap(60, ratio, confidence=0.9, n_resamples=999, seed=7)
    ref = sps.bootstrap((sums, counts), lambda s, c, axis: s.sum(axis) / c.sum(axis), paired=True,
                        vectorized=True, confidence_level=0.9, n_resamples=999, method="percentile",
                        rng=np.random.default_rng(7))
    assert iv.estimate == pytest.approx(sums.sum() / counts.sum())
    assert iv.lo == pytest.approx(ref.confidence_interval.low, rel=1e-12)
    assert iv.hi == pytest.approx(ref.confidence_interval.high, rel=1e-12)
    again = stats.sequence_bootstrap(60, ratio, confidence=0.9, n_resamples=999, seed=7)
    assert (again.lo, again.hi) == (iv.lo, iv.hi)  # seeded: reproducible
    other = stats.sequence_bootstrap(60, ratio, confidence=0.9, n_resamples=999, seed=8)
    assert (other.lo, other.hi) != (iv.lo, iv.hi)


def test_sequence_bootstrap_of_one_sequence_is_unbounded():
    iv = stats.sequence_bootstrap(1, lambda idx: np.ones(idx.shape[:-1]) if idx.ndim > 1 else 1.0,
                                  confidence=0.9, n_resamples=99, seed=0)
    assert math.isinf(iv.lo) and math.isinf(iv.hi)


def test_bootstrap_p_value_counts_replicates_with_plus_one():
    r = np.array([0.1, 0.2, 0.3, 0.4])
    assert stats.bootstrap_p_value(r, 0.25, null_side="above") == pytest.approx(3 / 5)
    assert stats.bootstrap_p_value(r, 0.25, null_side="below") == pytest.approx(3 / 5)
    assert stats.bootstrap_p_value(r, 1.0, null_side="above") == pytest.approx(1 / 5)


def test_flip_change_interval_is_the_bonett_price_adjusted_wald():
    b, c, n = 6, 0, 24  # worked by hand: p̃_b = 7/26, p̃_c = 1/26
    pb, pc = 7 / 26, 1 / 26
    se = math.sqrt((pb + pc - (pc - pb) ** 2) / 26)
    iv = stats.flip_change_interval(b, c, n, confidence=0.9)
    z = sps.norm.ppf(0.95)
    assert iv.estimate == pytest.approx(-0.25)
    assert iv.lo == pytest.approx(pc - pb - z * se) and iv.hi == pytest.approx(pc - pb + z * se)
    assert iv.hi < -0.05  # 6 flips to wrong, none back, in 24 items: clearly worse than a 5% drop


def test_zero_flips_do_not_give_a_zero_width_interval():
    iv = stats.flip_change_interval(0, 0, 200, confidence=0.9)
    # Zero flips in 200 items cannot exclude a 1% drop (a bootstrap would say [0, 0]).
    assert iv.lo < -0.01 < 0 < iv.hi


def test_flip_change_p_value_inverts_the_interval():
    b, c, n = 14, 2, 300
    p = stats.flip_change_p_value(b, c, n, -0.01, null_side="above")  # H0: Δ ≥ −0.01
    at_p = stats.flip_change_interval(b, c, n, confidence=1 - 2 * p)
    assert at_p.hi == pytest.approx(-0.01, abs=1e-9)
    assert stats.flip_change_p_value(0, 0, n, -0.01, null_side="above") > 0.5


def test_minimum_detectable_effect_is_z_sum_times_se():
    expected = (sps.norm.ppf(0.95) + sps.norm.ppf(0.8)) * 0.01
    assert stats.minimum_detectable_effect(0.01, alpha=0.05) == pytest.approx(expected)


def test_more_samples_needed_scales_with_inverse_square():
    # half-width 0.02 around 0.9 with the bound at 0.91: need (0.02/0.01)^2 = 4× the sequences.
    assert stats.more_samples_needed(100, 0.9, 0.91, 0.02) == 300
    assert stats.more_samples_needed(100, 0.9, 0.9, 0.02) is None


@pytest.mark.parametrize(("lo", "hi", "outcome"), [(0.1, 0.4, "pass"), (0.6, 0.9, "fail"), (0.3, 0.7, "inconclusive")])
def test_judge_interval_three_ways_against_an_upper_bound(lo, hi, outcome):
    iv = stats.Interval((lo + hi) / 2, lo, hi, 0.9)
    assert stats.judge_interval(iv, upper=0.5).outcome == outcome


def test_judge_interval_two_sided_margin():
    assert stats.judge_interval(stats.Interval(0, -0.01, 0.01, 0.9), upper=0.02, lower=-0.02).outcome == "pass"
    assert stats.judge_interval(stats.Interval(-0.05, -0.06, -0.03, 0.9), upper=0.02, lower=-0.02).outcome == "fail"
    straddle = stats.judge_interval(stats.Interval(-0.02, -0.04, 0.0, 0.9), upper=0.02, lower=-0.02)
    assert straddle.outcome == "inconclusive" and straddle.relevant_bound == -0.02


def test_underpowered_no_significant_difference_is_inconclusive_not_pass():
    """A naive gate passes when McNemar finds no significant difference; the margin verdict does not."""
    b, c, n = 3, 1, 40  # 3 flips to wrong, 1 to right, on 40 items
    assert stats.mcnemar_exact(b, c) > 0.05  # "no significant difference" → a naive gate passes
    iv = stats.flip_change_interval(b, c, n, confidence=0.9)
    assert stats.judge_interval(iv, lower=-0.01).outcome == "inconclusive"


def test_cluster_quantile_statistic_equals_percentile_of_the_materialised_resample():
    from promote.stages.slices.evaluate import _quantile_statistic

    values = RNG.gamma(2.0, size=200)
    owner = np.sort(RNG.integers(0, 30, size=200))
    _, owner = np.unique(owner, return_inverse=True)
    n = owner.max() + 1
    statistic = _quantile_statistic(values, owner, n, 99.0)
    assert statistic(np.arange(n)) == np.percentile(values, 99, method="higher")
    draws = RNG.integers(0, n, size=(5, n))
    for row, got in zip(draws, statistic(draws), strict=True):
        resample = np.concatenate([values[owner == i] for i in row])
        assert got == np.percentile(resample, 99, method="higher")
