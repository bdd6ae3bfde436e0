"""Top-k metrics: certified bounds must contain the exact value computed from full logits, on random
and adversarial distributions; exact metrics must be exact; both-complete bounds collapse to it."""

from __future__ import annotations

import numpy as np
import pytest

from promote.metrics.topk import BOUNDED_METRICS, Side, log_softmax, side_from_logits, topk_metrics, topk_of_logits


def exact(z_r: np.ndarray, z_c: np.ndarray) -> dict[str, np.ndarray]:
    """Float64 reference values from full logits (masked −inf entries contribute nothing)."""
    lr, lc = log_softmax(z_r), log_softmax(z_c)
    p, q = np.exp(lr), np.exp(lc)
    with np.errstate(invalid="ignore"):
        d = np.where(np.isfinite(z_r), z_c - z_r, np.nan)
        return {
            "kl": np.where(p > 0, p * (lr - lc), 0).sum(-1),
            "kl_rev": np.where(q > 0, q * (lc - lr), 0).sum(-1),
            "tv": 0.5 * np.abs(p - q).sum(-1),
            "logit_osc": np.nanmax(d, -1) - np.nanmin(d, -1),
            "logit_drift": np.nanmax(np.abs(d), -1),
        }


def side(z: np.ndarray, targets: np.ndarray, k: int | None) -> Side:
    if k is None:
        return side_from_logits(z, targets)
    ids, lps, target = topk_of_logits(z, k, targets)
    return Side(ids, lps, target)


def cases(seed: int, masked: bool):
    rng = np.random.default_rng(seed)
    for trial in range(60):
        rows, vocab = 40, int(rng.integers(2, 50))
        scale = rng.choice([0.1, 1.0, 3.0, 10.0])
        z_r = rng.normal(size=(rows, vocab)) * scale
        z_c = z_r + rng.normal(size=(rows, vocab)) * rng.choice([1e-6, 1e-3, 0.1, 1.0, 5.0]) + rng.normal() * 3
        if trial % 7 == 0:
            z_c = rng.normal(size=(rows, vocab)) * scale  # unrelated distributions
        targets = rng.integers(0, vocab, rows)
        if masked:
            hole = rng.random((rows, vocab)) < 0.3
            hole[np.arange(rows), targets] = False
            z_r[hole] = -np.inf
            z_c[hole] = -np.inf
        yield z_r, z_c, targets, int(rng.integers(1, vocab + 1))


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("layout", ["topk/topk", "full/topk", "topk/full"])
def test_bounds_contain_the_exact_value(layout, masked):
    ref_full, cand_full = (part == "full" for part in layout.split("/"))
    for z_r, z_c, targets, k in cases(1 if masked else 0, masked):
        truth = exact(z_r, z_c)
        got = topk_metrics(side(z_r, targets, None if ref_full else k), side(z_c, targets, None if cand_full else k))
        for name in BOUNDED_METRICS:
            lower, upper, value = got[f"{name}_lower"], got[f"{name}_upper"], truth[name]
            slack = 1e-9 * (1 + np.abs(value))
            assert np.all(lower <= value + slack), (name, layout, k, (lower - value).max())
            assert np.all(value <= upper + slack), (name, layout, k, (value - upper).max())
            assert np.all(lower <= upper)
        lr, lc = log_softmax(z_r), log_softmax(z_c)
        rows = np.arange(len(targets))
        np.testing.assert_allclose(got["log_ratio"], lr[rows, targets] - lc[rows, targets], rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(got["argmax_agree"] == 1, z_r.argmax(-1) == z_c.argmax(-1))
        assert not np.any(got["nonfinite"])


def test_both_complete_is_exact_including_near_identical():
    rng = np.random.default_rng(3)
    z_r = rng.normal(size=(64, 300)) * 4
    z_c = z_r + rng.normal(size=z_r.shape) * 1e-6
    targets = rng.integers(0, 300, 64)
    got = topk_metrics(side_from_logits(z_r, targets), side_from_logits(z_c, targets))
    truth = exact(z_r, z_c)
    for name in ("kl", "kl_rev", "tv", "logit_osc"):
        np.testing.assert_allclose(got[f"{name}_lower"], truth[name], rtol=1e-6, atol=1e-15)
        np.testing.assert_allclose(got[f"{name}_upper"], truth[name], rtol=1e-6, atol=1e-15)


def test_bounds_tighten_as_k_grows_and_kl_upper_is_honest():
    rng = np.random.default_rng(4)
    z_r = rng.normal(size=(32, 256)) * 3
    z_c = z_r + rng.normal(size=z_r.shape) * 0.05
    targets = rng.integers(0, 256, 32)
    widths = []
    for k in (5, 20, 100):
        got = topk_metrics(side(z_r, targets, k), side(z_c, targets, k))
        widths.append(float((got["tv_upper"] - got["tv_lower"]).mean()))
        # An unrecorded candidate probability may be arbitrarily small: no finite upper bound on KL.
        assert np.isinf(got["kl_upper"]).all() and np.isfinite(got["kl_lower"]).all()
    assert widths[0] > widths[1] > widths[2]
    # With the candidate's full logits the KL upper bound is finite.
    got = topk_metrics(side(z_r, targets, 20), side_from_logits(z_c, targets))
    assert np.isfinite(got["kl_upper"]).all()


def test_a_missing_reference_token_is_caught_by_the_lower_bound():
    """The candidate's top-k lacks the reference's favourite token: TV and KL lower bounds see it."""
    z_r = np.array([[5.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    z_c = np.array([[-5.0, 3.0, 2.9, 0.0, 0.0, 0.0]])
    targets = np.array([1])
    got = topk_metrics(side(z_r, targets, 2), side(z_c, targets, 2))
    truth = exact(z_r, z_c)
    assert got["tv_lower"][0] > 0.9 and got["tv_lower"][0] <= truth["tv"][0] + 1e-12
    assert got["kl_lower"][0] > 2.0 and got["kl_lower"][0] <= truth["kl"][0] + 1e-12
    assert got["argmax_agree"][0] == 0


def test_nonfinite_records_make_bounds_nan_and_are_counted():
    z = np.zeros((2, 4))
    z[:, 0] = 1.0
    targets = np.array([1, 1])
    ids, lps, target = topk_of_logits(z, 2, targets)
    lps = lps.copy()
    lps[1, 0] = np.nan
    got = topk_metrics(Side(ids, lps, target), Side(ids, topk_of_logits(z, 2, targets)[1], target))
    assert got["nonfinite"].tolist() == [0.0, 1.0]
    assert np.isnan(got["kl_upper"][1]) and not np.isnan(got["kl_upper"][0])


def test_no_bare_name_for_a_bounded_metric():
    """A bound can never be read as a measured value: bounded metrics only exist as _lower/_upper."""
    z = np.random.default_rng(5).normal(size=(3, 10))
    targets = np.zeros(3, dtype=int)
    got = topk_metrics(side(z, targets, 3), side(z, targets, 3))
    assert not set(BOUNDED_METRICS) & set(got)


@pytest.mark.parametrize("layout", ["topk/topk", "full/topk", "topk/full"])
def test_bounds_contain_the_exact_value_under_a_served_answers_rounding(layout):
    """The `openai` kernel declares τ = 1e-4·(K + 16) for a served top-K answer: often more than the
    mass the top-K leaves out of a peaked distribution. A block mass known only to within τ must never
    *raise* the KL lower bound (it did: a mass ≤ τ counted as 0, and h(0, b) = b > h(a, b), so an
    honest bf16 candidate at top-100 got kl_lower 1.7e-3 against an exact KL of 1.1e-6)."""
    ref_full, cand_full = (part == "full" for part in layout.split("/"))
    rng = np.random.default_rng(7)
    for trial in range(40):
        rows, vocab = 40, int(rng.integers(20, 300))
        z_r = rng.normal(size=(rows, vocab)) * rng.choice([1.0, 3.0, 6.0])
        z_c = z_r + rng.normal(size=(rows, vocab)) * rng.choice([1e-3, 1e-2, 0.1])
        targets = rng.integers(0, vocab, rows)
        k = int(rng.integers(1, vocab))
        tol = 1e-4 * (k + 16)
        sides = []
        for z, full in ((z_r, ref_full), (z_c, cand_full)):
            s = side(z, targets, None if full else k)
            sides.append(s if full else Side(s.ids, s.logprobs, s.target, mass_tol=tol))
        got, truth = topk_metrics(*sides), exact(z_r, z_c)
        for name in BOUNDED_METRICS:
            slack = 1e-9 * (1 + np.abs(truth[name]))
            assert np.all(got[f"{name}_lower"] <= truth[name] + slack), (name, k, trial)
            assert np.all(truth[name] <= got[f"{name}_upper"] + slack), (name, k, trial)
