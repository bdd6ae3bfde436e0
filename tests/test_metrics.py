"""Per-position metrics against a float64 reference implementation, and summary merging."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from promote.metrics.distribution import token_metrics
from promote.metrics.summary import MetricSummary


def reference_metrics(zr: np.ndarray, zc: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Straightforward float64 definitions (docs/metrics.md)."""
    lp = torch.log_softmax(torch.tensor(zr, dtype=torch.float64), -1)
    lq = torch.log_softmax(torch.tensor(zc, dtype=torch.float64), -1)
    p, q = lp.exp(), lq.exp()
    d = torch.tensor(zc, dtype=torch.float64) - torch.tensor(zr, dtype=torch.float64)
    rows = torch.arange(len(y))
    lr = lp[rows, torch.tensor(y)] - lq[rows, torch.tensor(y)]
    return {
        "kl": (p * (lp - lq)).sum(-1).numpy(),
        "kl_rev": (q * (lq - lp)).sum(-1).numpy(),
        "tv": (0.5 * (p - q).abs().sum(-1)).numpy(),
        "logit_drift": d.abs().amax(-1).numpy(),
        "logit_osc": (d.amax(-1) - d.amin(-1)).numpy(),
        "log_ratio": lr.numpy(),
        "argmax_agree": (lp.argmax(-1) == lq.argmax(-1)).double().numpy(),
    }


@pytest.mark.parametrize("scale,vocab", [(1e-3, 50), (0.1, 300), (2.0, 1000), (0.05, 2)])
def test_metrics_match_float64_reference(scale, vocab):
    rng = np.random.default_rng(vocab)
    zr = (rng.normal(size=(40, vocab)) * 4).astype(np.float32)
    zc = (zr + rng.normal(size=zr.shape) * scale).astype(np.float32)
    y = rng.integers(0, vocab, 40)
    got = token_metrics(zr, zc, y)
    want = reference_metrics(zr, zc, y)
    for name, values in want.items():
        np.testing.assert_allclose(got[name], values, rtol=1e-6, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(got["abs_log_ratio"], np.abs(want["log_ratio"]), rtol=1e-6, atol=1e-12)


def test_near_identical_distributions_are_not_rounding_noise():
    """KL ~1e-12 (fp32 batch noise): a naive float32 formula returns noise, ours stays accurate."""
    rng = np.random.default_rng(0)
    zr = (rng.normal(size=(20, 500)) * 3).astype(np.float32)
    zc = np.nextafter(zr, np.float32(np.inf))  # one ulp apart everywhere: a tiny, real difference
    got = token_metrics(zr, zc, np.zeros(20, dtype=np.int64))
    assert np.all(got["kl"] > 0)
    assert np.all(got["kl"] < 1e-12)
    exact = exact_metrics(zr[:3], zc[:3])
    for name in ("kl", "kl_rev", "tv"):
        np.testing.assert_allclose(got[name][:3], exact[name], rtol=1e-6, atol=0, err_msg=name)
    # A naive float32 formula returns rounding noise here (the reason for the centred formulas).
    lp = torch.log_softmax(torch.tensor(zr), -1)
    lq = torch.log_softmax(torch.tensor(zc), -1)
    naive32 = (lp.exp() * (lp - lq)).sum(-1).numpy()[:3]
    assert np.max(np.abs(naive32 - exact["kl"]) / exact["kl"]) > 1e-2


def exact_metrics(zr: np.ndarray, zc: np.ndarray) -> dict[str, np.ndarray]:
    """KL, reverse KL and TV with 50-digit arithmetic (mpmath): the ground truth for tiny values."""
    import mpmath  # ships with torch (via sympy)
    mpmath.mp.dps = 50
    out: dict[str, list[float]] = {"kl": [], "kl_rev": [], "tv": []}
    for row_r, row_c in zip(zr, zc, strict=True):
        er = [mpmath.exp(mpmath.mpf(float(v))) for v in row_r]
        ec = [mpmath.exp(mpmath.mpf(float(v))) for v in row_c]
        sr, sc = mpmath.fsum(er), mpmath.fsum(ec)
        p = [e / sr for e in er]
        q = [e / sc for e in ec]
        out["kl"].append(float(mpmath.fsum(pi * mpmath.log(pi / qi) for pi, qi in zip(p, q, strict=True))))
        out["kl_rev"].append(float(mpmath.fsum(qi * mpmath.log(qi / pi) for pi, qi in zip(p, q, strict=True))))
        out["tv"].append(float(mpmath.fsum(abs(pi - qi) for pi, qi in zip(p, q, strict=True)) / 2))
    return {k: np.array(v) for k, v in out.items()}


def test_divergences_hold_ten_digits_where_the_argmax_sits_far_from_the_mean_difference():
    """The kernel anchors δ = z_c − z_r at the reference argmax and takes KL as E_p[g(u)] + (log1p(y) − y). Where
    the anchor is far from the p-weighted mean of δ (a flat reference whose argmax alone kept its logit while
    every other one moved by c) that is a difference of near equals, and the series' truncation would cost ~1e-9;
    such rows are scored again around the mean. Ordinary rows (bf16-like noise) take the anchored sums."""
    vocab = 4096
    rng = np.random.default_rng(11)
    rows_r, rows_c = [], []
    for c in (0.25, 0.2, 0.1, -0.25):
        zr = np.zeros(vocab, dtype=np.float32)
        zr[7] = np.float32(1e-3)
        zc = zr + np.float32(c)
        zc[7] = zr[7]
        rows_r.append(zr)
        rows_c.append(zc)
    for scale in (1e-2, 3e-2, 1e-4):
        zr = (rng.normal(size=vocab) * 3).astype(np.float32)
        rows_r.append(zr)
        rows_c.append((zr + rng.normal(size=vocab) * scale).astype(np.float32))
    zr, zc = np.stack(rows_r), np.stack(rows_c)
    got = token_metrics(zr, zc, np.zeros(len(zr), dtype=np.int64))
    exact = exact_metrics(zr, zc)
    for name in ("kl", "kl_rev", "tv"):
        np.testing.assert_allclose(got[name], exact[name], rtol=1e-10, atol=0, err_msg=name)


def test_common_shift_is_invisible_and_large_vocab_works():
    rng = np.random.default_rng(5)
    zr = (rng.normal(size=(3, 200_000)) * 2).astype(np.float32)
    zc = (zr + np.float32(1000.0)).astype(np.float32)  # softmax ignores the shift; rounding does not
    got = token_metrics(zr, zc, np.zeros(3, dtype=np.int64))
    want = reference_metrics(zr, zc, np.zeros(3, dtype=np.int64))
    np.testing.assert_allclose(got["kl"], want["kl"], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(got["tv"], want["tv"], rtol=1e-6, atol=1e-12)
    assert np.all(got["logit_drift"] > 999)


def test_identical_logits_give_exact_zero():
    z = np.random.default_rng(1).normal(size=(5, 64)).astype(np.float32)
    got = token_metrics(z, z.copy(), np.arange(5))
    for name in ("kl", "kl_rev", "tv", "logit_drift", "logit_osc", "log_ratio"):
        assert np.all(got[name] == 0), name
    assert np.all(got["argmax_agree"] == 1)


def test_masked_vocab_entries_on_both_sides_are_ignored():
    rng = np.random.default_rng(2)
    zr = rng.normal(size=(6, 32)).astype(np.float32)
    zc = (zr + 0.01 * rng.normal(size=zr.shape)).astype(np.float32)
    zr[:, 20:] = -np.inf
    zc[:, 20:] = -np.inf
    got = token_metrics(zr, zc, np.zeros(6, dtype=np.int64))
    want = reference_metrics(zr[:, :20], zc[:, :20], np.zeros(6, dtype=np.int64))
    np.testing.assert_allclose(got["kl"], want["kl"], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(got["logit_osc"], want["logit_osc"], rtol=1e-6)
    assert np.all(got["nonfinite"] == 0)


def test_nonfinite_logits_are_counted_and_poison_divergences():
    zr = np.zeros((3, 8), dtype=np.float32)
    zr[:, 0] = 1
    zc = zr.copy()
    zc[1, 4] = np.nan
    zc[2, 5] = np.inf
    got = token_metrics(zr, zc, np.zeros(3, dtype=np.int64))
    assert list(got["nonfinite"]) == [0, 1, 1]
    assert got["kl"][0] == 0 and np.isnan(got["kl"][1:]).all()


def test_huge_logits_stay_finite_and_accurate():
    rng = np.random.default_rng(3)
    zr = (rng.normal(size=(10, 100)) * 1e4).astype(np.float32)
    zc = (zr + rng.normal(size=zr.shape)).astype(np.float32)
    got = token_metrics(zr, zc, np.zeros(10, dtype=np.int64))
    want = reference_metrics(zr, zc, np.zeros(10, dtype=np.int64))
    assert np.isfinite(got["kl"]).all()
    np.testing.assert_allclose(got["tv"], want["tv"], rtol=1e-6, atol=1e-12)


def test_tie_flips_are_reported_apart():
    zr = np.array([[1.0, 1.0 - 1e-5, 0.0], [2.0, 0.0, 0.0]], dtype=np.float32)
    zc = np.array([[1.0 - 1e-5, 1.0, 0.0], [0.0, 2.0, 0.0]], dtype=np.float32)
    got = token_metrics(zr, zc, np.zeros(2, dtype=np.int64), tie_margin=1e-3)
    assert list(got["argmax_agree"]) == [0, 0]
    assert list(got["tie_flip"]) == [1, 0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_scans_find_every_position_in_blocks_lanes_and_tail(dtype):
    """The kernel scans a row in lanes of 16 and blocks of 64 with a scalar tail (metrics/_fused.py):
    the maximum, its first index, the runner-up and the logit-difference range must come out the same
    wherever in a 133-wide row (two blocks, eight lanes and a tail of 5) the extreme sits."""
    vocab = 133
    rng = np.random.default_rng(7)
    base = rng.uniform(-1.0, 1.0, size=vocab)
    zr = np.tile(base, (vocab, 1)).astype(dtype)
    zc = zr.copy()
    for p in range(vocab):
        zr[p, p] = 5.0  # the reference's maximum at p
        zc[p, (p + 1) % vocab] = 5.0  # the candidate's one further on: argmaxes disagree everywhere
        zr[p, (p + 7) % vocab] = 5.0 - (1e-4 if p % 2 == 0 else 0.5)  # runner-up: inside the tie margin on even rows
        zc[p, (p + 3) % vocab] += 2.5  # the largest difference
        zc[p, (p + 5) % vocab] -= 1.5  # the smallest
    got = token_metrics(zr, zc, np.zeros(vocab, dtype=np.int64), tie_margin=1e-3)
    positions = np.arange(vocab)
    np.testing.assert_array_equal(got["ref_argmax"], positions)
    np.testing.assert_array_equal(got["cand_argmax"], (positions + 1) % vocab)
    assert (got["argmax_agree"] == 0).all()
    np.testing.assert_array_equal(got["tie_flip"], (positions % 2 == 0).astype(float))
    want = reference_metrics(zr, zc, np.zeros(vocab, dtype=np.int64))
    np.testing.assert_allclose(got["logit_drift"], want["logit_drift"], rtol=1e-12)
    np.testing.assert_allclose(got["logit_osc"], want["logit_osc"], rtol=1e-12)
    zr[:, 0] = zr.max(axis=1)  # a tie for the maximum: the first index wins
    got = token_metrics(zr, zc, np.zeros(vocab, dtype=np.int64), tie_margin=1e-3)
    assert (got["ref_argmax"] == 0).all()


def _summary(values, ids, start=0):
    s = MetricSummary("kl", worst_k=3)
    s.update(np.array(values), ids, np.arange(start, start + len(values)), np.zeros(len(values), dtype=int))
    return s


def test_summary_merge_equals_union():
    rng = np.random.default_rng(4)
    a, b = rng.exponential(size=300), rng.exponential(size=200)
    left = _summary(a, [f"a{i}" for i in range(300)])
    right = _summary(b, [f"b{i}" for i in range(200)])
    whole = MetricSummary("kl", worst_k=3)
    whole.update(a, [f"a{i}" for i in range(300)], np.arange(300), np.zeros(300, dtype=int))
    whole.update(b, [f"b{i}" for i in range(200)], np.arange(200), np.zeros(200, dtype=int))
    merged = left.merge(right)
    for stat in ("mean", "p50", "p90", "p99", "p99.9", "max", "min", "sum"):
        assert merged.stat(stat) == pytest.approx(whole.stat(stat), rel=1e-12), stat
    assert [p.value for p in merged.worst] == [p.value for p in whole.worst]
    assert merged.worst[0].value == max(a.max(), b.max())


def test_empty_summary_is_nan_not_zero():
    s = MetricSummary("kl")
    assert math.isnan(s.stat("mean")) and math.isnan(s.stat("max"))


def test_quantiles_are_observed_values():
    s = _summary([0.0] * 99 + [5.0], [f"x{i}" for i in range(100)])
    assert s.stat("p99.9") == 5.0
    assert s.stat("p50") == 0.0


def _fill(summary, values, prefix):
    summary.update(values, [f"{prefix}{i}" for i in range(values.size)], np.arange(values.size),
                   np.zeros(values.size, dtype=int))
    return summary


def test_sketched_summary_is_near_exact_at_p999_and_merges_and_pickles():
    import pickle

    rng = np.random.default_rng(6)
    a, b = rng.exponential(size=60_000), rng.exponential(size=40_000)
    left = _fill(MetricSummary("kl", exact_limit=10_000), a, "a")
    right = _fill(MetricSummary("kl", exact_limit=10_000), b, "b")
    assert left.sketched and right.sketched
    merged = pickle.loads(pickle.dumps(left)).merge(pickle.loads(pickle.dumps(right)))
    exact = float(np.percentile(np.concatenate([a, b]), 99.9, method="higher"))
    low, est, high = merged.band("p99.9")
    assert low * (1 - 1e-6) <= exact <= high * (1 + 1e-6)  # the sketch stores float32
    assert abs(est - exact) / exact < 0.01
    assert merged.stat("max") == max(a.max(), b.max())
    assert merged.stat("mean") == pytest.approx(np.concatenate([a, b]).mean(), rel=1e-12)
    assert merged.count == 100_000


def test_quantile_clause_inside_the_sketch_band_is_inconclusive():
    from promote.contract.numerical import NumericalClause
    from promote.engine.accumulate import NumericsAccumulator
    from promote.engine.numerics_judge import judge

    acc = NumericsAccumulator(metrics=("kl", "nonfinite"))
    acc.summaries["kl"] = _fill(MetricSummary("kl", exact_limit=1000), np.random.default_rng(7).exponential(
        size=50_000), "s")
    acc.positions = 50_000
    low, est, high = acc.summaries["kl"].band("p50")
    assert low < high

    def clause(bound):
        return NumericalClause(id="q", metric="kl", stat="p50", max=bound, min=None, max_floor_ratio=None,
                               severity="fail", description=None, line=None)

    assert judge(clause((low + high) / 2), acc).status == "inconclusive"
    assert judge(clause(high * 1.01), acc).status == "pass"
    assert judge(clause(low * 0.99), acc).status == "fail"


def test_entropy_ratio_matches_float64_and_sees_a_temperature_bug():
    rng = np.random.default_rng(8)
    zr = (rng.normal(size=(30, 400)) * 3).astype(np.float32)
    zc = (zr / 0.7).astype(np.float32)  # temperature applied twice: argmax-blind, entropy-visible
    got = token_metrics(zr, zc, np.zeros(30, dtype=np.int64))
    lp = torch.log_softmax(torch.tensor(zr, dtype=torch.float64), -1)
    lq = torch.log_softmax(torch.tensor(zc, dtype=torch.float64), -1)
    h_p = -(lp.exp() * lp).sum(-1).numpy()
    h_q = -(lq.exp() * lq).sum(-1).numpy()
    np.testing.assert_allclose(got["ref_entropy"], h_p, rtol=1e-9)
    np.testing.assert_allclose(got["cand_entropy"], h_q, rtol=1e-9)
    np.testing.assert_allclose(got["entropy_ratio"], h_q / h_p, rtol=1e-9)
    assert np.all(got["argmax_agree"] == 1) and np.all(got["entropy_ratio"] < 1) and np.all(got["kl"] > 1e-3)


def test_ratio_outside_and_topk_overlap_against_direct_definitions():
    from promote.metrics.distribution import ratio_outside, topk_overlap

    rng = np.random.default_rng(9)
    zr = rng.normal(size=(50, 64)).astype(np.float32)
    zc = (zr + rng.normal(size=zr.shape)).astype(np.float32)
    y = rng.integers(0, 64, 50)
    got = token_metrics(zr, zc, y)
    want = reference_metrics(zr, zc, y)
    w = np.exp(want["log_ratio"])
    np.testing.assert_array_equal(ratio_outside(got["abs_log_ratio"], 2.0), ((w > 2) | (w < 0.5)).astype(float))
    overlap = topk_overlap(zr, zc, 5)
    for row in range(50):
        top_r = set(np.argsort(-zr[row])[:5])
        top_c = set(np.argsort(-zc[row])[:5])
        assert overlap[row] == len(top_r & top_c) / 5
    assert topk_overlap(zr, zr, 5).min() == 1.0


def test_the_kernel_allocates_its_scratch_rows_once_per_call_not_once_per_row():
    """Per-row scratch (2·V float64s) page-faulted on every row at V ≥ 128k; the kernel now takes it from the
    caller. Counted with numba's own allocation statistics (only switched on at start-up: a fresh process)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import numpy as np\n"
        "from numba.core.runtime import rtsys\n"
        "from promote.metrics.distribution import fused_columns\n"
        "def allocations(rows):\n"
        "    a = np.random.default_rng(rows).standard_normal((rows, 1000)).astype(np.float32)\n"
        "    out, y = np.empty((rows, 16)), np.zeros(rows, np.int64)\n"
        "    fused_columns(a, a + 0.01, y, 1e-3, out)\n"
        "    before = rtsys.get_allocation_stats().alloc\n"
        "    fused_columns(a, a + 0.01, y, 1e-3, out)\n"
        "    return rtsys.get_allocation_stats().alloc - before\n"
        "print(allocations(8), allocations(400))\n")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "NUMBA_NRT_STATS": "1", "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    few, many = map(int, done.stdout.split())
    assert few == many and many < 20, (few, many)  # before: 2 more for every row (21 → 805)


def test_scratch_rows_are_checked_and_any_number_of_blocks_gives_the_same_columns():
    from promote.metrics._fused import COLUMNS
    from promote.metrics.distribution import fused_columns

    rng = np.random.default_rng(11)
    zr = (rng.normal(size=(9, 70)) * 3).astype(np.float32)
    zc = (zr + rng.normal(size=zr.shape) * 0.2).astype(np.float32)
    zc[4, :3] = np.nan  # a row on the careful path among the others
    y = rng.integers(0, 70, 9)
    outs = []
    for blocks in (None, 1, 4, 32):  # the default (one per thread), fewer or more blocks than rows
        out = np.full((9, len(COLUMNS)), -7.0)
        scratch = None if blocks is None else np.full((blocks, 2, 70), np.nan)
        fused_columns(zr, zc, y, 1e-3, out, scratch=scratch)
        outs.append(out)
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])
    assert not (outs[0] == -7.0).any()  # every cell written
    for bad in (np.empty((2, 2, 69)), np.empty((2, 3, 70)), np.empty((0, 2, 70)), np.empty((2, 2, 70), np.float32),
                np.empty((2, 70, 2)).transpose(0, 2, 1)):
        with pytest.raises(ValueError, match="scratch must be new_scratch"):
            fused_columns(zr, zc, y, 1e-3, np.empty((9, len(COLUMNS))), scratch=bad)


def test_float16_logits_are_read_as_their_bits_and_score_exactly_as_widened_float32():
    """fp16 (records, `precision: fp16` tensors) is read in place as int16 bits; the widening is exact, so every
    column equals the float32 run (sums to the last ulp): ±inf, NaN, a vocabulary mask, subnormals, −0 and an
    fp16-only row."""
    from promote.metrics.distribution import _readable

    rng = np.random.default_rng(0)
    zr = (rng.standard_normal((12, 500)) * 3).astype(np.float16)
    zc = (zr.astype(np.float32) + rng.standard_normal(zr.shape).astype(np.float32) * 0.05).astype(np.float16)
    zr[0, :5] = np.array([np.inf, -np.inf, np.nan, 6e-8, -0.0], dtype=np.float16)
    zr[1], zc[1] = -np.inf, -np.inf
    zr[1, :10], zc[1, :10] = 1.0, 1.5  # a vocabulary mask: −inf on both sides beyond 10
    zc[2, 7] = np.nan
    zr[3] = np.float16(6e-8)
    zr[3, 5] = np.float16(1e-7)  # subnormals only
    y = rng.integers(0, 10, 12)
    assert _readable(zr, zc).dtype == np.int16 and np.shares_memory(_readable(zr, zc), zr)
    got = token_metrics(zr, zc, y)
    want = token_metrics(zr.astype(np.float32), zc.astype(np.float32), y)
    # Every value read is the same float64, so counts, argmaxes and ranges are equal bit for bit; the sums may
    # differ in the last ulp: under reassociation LLVM may vectorise an int16-reading loop with another
    # interleave than a float32-reading one (seen once in kl_rev, 3e-16 relative).
    for name, values in want.items():
        if name in ("kl", "kl_rev", "tv", "log_ratio", "abs_log_ratio", "ref_entropy", "cand_entropy", "entropy_ratio"):
            np.testing.assert_allclose(got[name], values, rtol=1e-14, atol=0, equal_nan=True, err_msg=name)
        else:
            np.testing.assert_array_equal(got[name], values, err_msg=name)
    assert list(got["nonfinite"][:4]) == [3, 0, 1, 0] and got["argmax_agree"][3] == want["argmax_agree"][3]
