"""An inconclusive runtime clause says what would decide it (issue 25): "≈N more requests per side
(… `runtime.repeats` × k) would narrow the interval to ±x % and decide it, if the estimate stays".
Checked against the judge's own bootstrap: the same requests seen k times (the estimate stays put)
give an interval that no longer straddles the bound."""

from __future__ import annotations

import re

import numpy as np
import pytest

from promote.judgement import judge
from promote.metrics.stats import sequence_bootstrap
from promote.results import Bound
from promote.stages.runtime_judge import what_would_decide


def median_ci(ratios: np.ndarray):
    return sequence_bootstrap(ratios.size, lambda idx: np.percentile(ratios[idx], 50, axis=-1), confidence=0.9,
                              n_resamples=2000, seed=0)


def straddling(rng: np.random.Generator, side: str, bound: float):
    """32 lognormal request ratios whose 90 % interval of the median straddles ``bound`` on ``side``:
    the interval of ``shift × noise`` is ``shift ×`` that of ``noise`` (same resampled indices), so the
    shift is placed between the two values that make it straddle."""
    noise = np.exp(rng.normal(0.0, 0.3, 32))
    base = median_ci(noise)
    low, high = (bound / base.hi, bound / base.estimate) if side == "below" else (bound / base.estimate,
                                                                                  bound / base.lo)
    shift = (low + high) / 2
    iv = median_ci(shift * noise)
    assert judge([Bound("max", bound)], iv.estimate, iv.lo, iv.hi).status == "inconclusive"
    return shift, iv


@pytest.mark.parametrize("side", ["below", "above"])
def test_the_suggested_number_of_fresh_requests_decides_unless_the_estimate_moves_halfway(side):
    """Fresh requests from the same distribution, as many as the hint says. Whenever the new estimate
    stayed within half the distance to the bound (the hint's condition), the clause is decided (pass
    below the bound, fail above) in at least 80 % of trials: the hint scales the interval seen at 32
    requests, and a bootstrap interval of a median at 32 requests is itself a noisy width."""
    bound, kept, decided = 1.15, 0, 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        shift, iv = straddling(rng, side, bound)
        hint = what_would_decide(32, iv.estimate, iv.lo, iv.hi, bound)
        total = int(re.search(r"\((\d+) in all", hint).group(1))
        fresh = median_ci(shift * np.exp(rng.normal(0.0, 0.3, total)))
        if abs(fresh.estimate - iv.estimate) >= abs(iv.estimate - bound) / 2:
            continue
        kept += 1
        status = judge([Bound("max", bound)], fresh.estimate, fresh.lo, fresh.hi).status
        decided += status == ("pass" if side == "below" else "fail")
    assert kept >= 8 and decided >= 0.8 * kept, (decided, kept)


def test_an_estimate_on_the_bound_cannot_be_decided():
    assert "would not decide it" in what_would_decide(40, 1.15, 1.0, 1.3, 1.15)
