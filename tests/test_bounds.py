"""Property tests of the bounds chain on random distributions, the `bounds` command, and the
`validate` warnings for clauses that contradict the chain."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from promote import bounds as b
from promote.cli import cli

RNG = np.random.default_rng(11)


def random_pairs(n: int = 3000):
    """Random logit pairs of many shapes: small/large vocab, small/large drift, peaked/flat."""
    for _ in range(n):
        vocab = int(RNG.integers(2, 60))
        zr = RNG.normal(size=vocab) * RNG.choice([0.1, 1.0, 5.0])
        delta = RNG.normal(size=vocab) * RNG.choice([1e-3, 0.05, 0.5, 3.0])
        if RNG.random() < 0.2:  # the extremal two-valued case
            delta = np.where(RNG.random(vocab) < 0.5, 1.0, -1.0) * RNG.uniform(0, 2)
        yield zr, zr + delta, delta


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def test_tv_kl_and_ratio_bounds_hold_on_random_distributions():
    for zr, zc, delta in random_pairs():
        p, q = softmax(zr), softmax(zc)
        osc = delta.max() - delta.min()
        d = np.abs(delta).max()
        tv = 0.5 * np.abs(p - q).sum()
        kl = float(np.sum(p * (np.log(p) - np.log(q))))
        assert tv <= b.tv_bound(osc) + 1e-12
        assert b.tv_bound(osc) <= math.tanh(d / 2) + 1e-12
        assert kl <= b.kl_bound(osc) + 1e-12
        assert np.all(np.abs(np.log(p) - np.log(q)) <= b.log_ratio_bound(osc) + 1e-9)
        w = p / q
        assert w.max() <= math.exp(osc) * (1 + 1e-9) and w.min() >= math.exp(-osc) * (1 - 1e-9)


def test_tv_bound_is_tight_for_two_tokens():
    d = 0.7  # p = (1/(e^d+1), ·) with δ = (d, −d) reaches tanh(d/2) exactly
    p = np.array([1 / (math.exp(d) + 1), math.exp(d) / (math.exp(d) + 1)])
    q = softmax(np.log(p) + np.array([d, -d]))
    assert 0.5 * np.abs(p - q).sum() == pytest.approx(math.tanh(d / 2), rel=1e-9)


def test_reward_and_sequence_bounds_hold():
    for zr, zc, _ in list(random_pairs(300)):
        p, q = softmax(zr), softmax(zc)
        reward = RNG.uniform(-2, 3, size=p.size)
        tv = 0.5 * np.abs(p - q).sum()
        assert abs(p @ reward - q @ reward) <= (reward.max() - reward.min()) * tv + 1e-12
    # Sequences of independent positions: exact sequence TV vs the subadditive bound.
    for _ in range(200):
        steps = [softmax(RNG.normal(size=3)) for _ in range(3)]
        drifted = [softmax(np.log(s) + RNG.normal(size=3) * 0.2) for s in steps]
        joint_p = np.einsum("i,j,k->ijk", *steps).ravel()
        joint_q = np.einsum("i,j,k->ijk", *drifted).ravel()
        tv_seq = 0.5 * np.abs(joint_p - joint_q).sum()
        per_step = [0.5 * np.abs(s - t).sum() for s, t in zip(steps, drifted, strict=True)]
        assert tv_seq <= min(1.0, sum(per_step)) + 1e-12
        kl_seq = np.sum(joint_p * np.log(joint_p / joint_q))
        assert kl_seq == pytest.approx(sum(np.sum(s * np.log(s / t)) for s, t in zip(steps, drifted, strict=True)))


def test_ppo_clip_budget():
    assert b.clip_budget(0.2) / 2 == pytest.approx(0.0912, abs=1e-4)
    for zr, zc, delta in random_pairs(500):
        osc = delta.max() - delta.min()
        if osc <= b.clip_budget(0.2):
            ratio = softmax(zr) / softmax(zc)
            assert ratio.max() <= 1.2 + 1e-9 and ratio.min() >= 1 / 1.2 - 1e-9


def test_inverses():
    assert b.tv_bound(b.osc_for_tv(0.05)) == pytest.approx(0.05)
    assert b.kl_bound(b.osc_for_kl(1e-3)) == pytest.approx(1e-3)


def test_bounds_command_prints_the_chain_and_rejects_bad_input():
    out = CliRunner().invoke(cli, ["bounds", "--drift", "0.05", "--seq-len", "100", "--reward-range", "0", "1",
                                   "--clip", "0.2", "--format", "json"])
    assert out.exit_code == 0
    chain = {link["name"]: link["bound"] for link in json.loads(out.stdout)}
    assert chain["tv"] == pytest.approx(math.tanh(0.05 / 2))
    assert chain["kl"] == pytest.approx(0.1**2 / 8)
    assert chain["tv_seq"] == pytest.approx(min(1, 100 * math.tanh(0.025)))
    assert chain["ppo_clip_budget_drift"] == pytest.approx(math.log(1.2) / 2)
    assert CliRunner().invoke(cli, ["bounds"]).exit_code == 2
    assert CliRunner().invoke(cli, ["bounds", "--drift", "-1"]).exit_code == 2


def test_validate_warns_when_a_logit_clause_cannot_protect_its_sibling(mini):
    clauses = [
        {"id": "osc-p99", "metric": "logit_osc", "stat": "p99", "max": 0.5},
        {"id": "tv-p99", "metric": "tv", "stat": "p99", "max": 0.05},
        {"id": "drift-max", "metric": "logit_drift", "stat": "max", "max": 0.04},
        {"id": "kl-max", "metric": "kl", "stat": "max", "max": 1.0},
    ]
    path = mini.contract(clauses=clauses, numerical={"implications": {"clip": 0.05}})
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0  # warnings do not fail validation
    assert "clause `osc-p99` allows p99(logit_osc) up to 0.5, which does not imply clause `tv-p99`" in result.stderr
    assert "logit_osc ≤ 0.2002" in result.stderr
    assert "PPO clip budget" in result.stderr and "drift-max" in result.stderr
    assert "kl-max" not in result.stderr  # 2·0.04 implies KL ≤ 8e-4 ≤ 1


def test_numerics_report_lists_implied_bounds(mini):
    path = mini.contract(candidate="build_hot", numerical={"implications": {"seq_len": 64, "reward_range": [0, 1]}})
    result = CliRunner().invoke(cli, ["check", str(path), "--format", "json"])
    chain = {x["name"]: x for x in json.loads(result.stdout)["stages"][0]["details"]["bounds"]["max"]}
    assert {"tv", "kl", "abs_log_ratio", "reward_drift", "tv_seq", "kl_seq"} <= set(chain)
    tv_max = json.loads(result.stdout)["stages"][0]["details"]["metrics"]["tv"]["stats"]["max"]
    assert tv_max <= chain["tv"]["bound"]
