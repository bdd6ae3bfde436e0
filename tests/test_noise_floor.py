"""Noise floor: the reference against itself under rerun / batch-size / odd-batch perturbations."""

from __future__ import annotations

import json

from click.testing import CliRunner

from promote.cli import cli

FLOOR = {"noise_floor": {"perturb": ["rerun", "batch_size", "odd_batch"], "odd_batch_size": 3}}
RATIO = [{"id": "kl-floor", "metric": "kl", "stat": "mean", "max_floor_ratio": 10.0},
         {"id": "drift-floor", "metric": "logit_drift", "stat": "max", "max_floor_ratio": 10.0, "max": 1.0}]


def check(path):
    result = CliRunner().invoke(cli, ["check", str(path), "--format", "json"])
    return result, json.loads(result.stdout) if result.stdout.startswith("{") else None


def test_bitwise_reproducible_reference_reports_zero_floor_and_never_divides(mini):
    result, report = check(mini.contract(clauses=RATIO, numerical=FLOOR))
    stage = report["stages"][0]
    floor = stage["details"]["noise_floor"]["floor"]
    assert floor["kl"]["mean"] == 0 and floor["logit_drift"]["max"] == 0
    assert any("bitwise reproducible (floor exactly 0)" in n for n in stage["notes"])
    clauses = {c["id"]: c for c in stage["clauses"]}
    assert clauses["kl-floor"]["status"] == "pass"  # candidate identical: 0 drift over a 0 floor
    assert result.exit_code == 0
    _, hot = check(mini.contract("hot.yaml", candidate="build_hot", clauses=RATIO, numerical=FLOOR))
    hot_kl = next(c for c in hot["stages"][0]["clauses"] if c["id"] == "kl-floor")
    # issue 13: a zero floor no longer makes every drift inconclusive; drift above the outputs' float32
    # resolution is the candidate's own and fails (it was `inconclusive` before, even at mean KL 1.16)
    assert hot_kl["status"] == "fail"
    assert "floor is exactly 0" in hot_kl["message"] and "float32 resolution" in hot_kl["message"]
    assert 0 < hot_kl["evidence"]["float_resolution"] < hot_kl["observed"]


def test_float_resolution_follows_the_bound_chain():
    from promote.bounds import FLOAT32_EPS, float_resolution, kl_bound, tv_bound

    z = 30.0
    assert float_resolution("logit_drift", z) == FLOAT32_EPS * 30
    assert float_resolution("logit_osc", z) == 2 * FLOAT32_EPS * 30
    assert float_resolution("tv", z) == tv_bound(2 * FLOAT32_EPS * 30)
    assert float_resolution("kl", z) == kl_bound(2 * FLOAT32_EPS * 30) < 1e-11  # below fp32 batch noise
    assert float_resolution("nonfinite", z) == 0


def test_batch_variant_reference_has_a_floor_and_ratios_are_judged(mini):
    result, report = check(mini.contract(reference="build_batchy", candidate="build_batchy", clauses=RATIO,
                                         numerical=FLOOR))
    per = report["stages"][0]["details"]["noise_floor"]["per_perturbation"]
    assert per["rerun"]["logit_drift"]["max"] == 0
    assert per["batch_size"]["logit_drift"]["max"] > 1e-5
    assert per["odd_batch"]["logit_drift"]["max"] > 1e-5
    assert result.exit_code == 0  # same kernel as the reference at batch N: drift 0 ≤ 10× floor
    result, report = check(mini.contract("hot.yaml", reference="build_batchy", candidate="build_hot",
                                         clauses=RATIO, numerical=FLOOR))
    kl = next(c for c in report["stages"][0]["clauses"] if c["id"] == "kl-floor")
    assert kl["status"] == "fail"
    assert kl["evidence"]["floor_ratio"] > 10 and kl["evidence"]["noise_floor"] > 0
    assert result.exit_code == 1


def test_floor_ratio_without_a_floor_is_a_contract_error(mini):
    path = mini.contract(clauses=RATIO)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert "bounds `max_floor_ratio` but no noise floor is measured" in result.stderr
    assert f"{path}:" in result.stderr


def test_candidate_floor_counts_its_own_batch_noise(mini):
    """A batch-variant candidate against a reproducible reference: only its own floor explains its drift."""
    floor = {"noise_floor": {"perturb": ["odd_batch"], "kernels": ["reference", "candidate"]}}
    result, report = check(mini.contract("cand.yaml", candidate="build_batchy", clauses=RATIO, numerical=floor))
    details = report["stages"][0]["details"]["noise_floor"]
    assert details["kernels"] == ["reference", "candidate"]
    assert details["per_perturbation"]["odd_batch"]["logit_drift"]["max"] == 0  # the reference reproduces
    assert details["per_perturbation"]["candidate:odd_batch"]["logit_drift"]["max"] > 1e-5
    assert details["floor"]["logit_drift"]["max"] == details["per_perturbation"]["candidate:odd_batch"][
        "logit_drift"]["max"]


def test_floor_is_cached_and_reused_for_the_same_kernels_and_data(mini, tmp_path):
    from promote.stages.numerics import floor_cache

    cache = tmp_path / "floors"
    floor = {"noise_floor": {"perturb": ["odd_batch"], "cache": str(cache)}}
    path = mini.contract("cached.yaml", reference="build_batchy", candidate="build_hot", clauses=RATIO,
                         numerical=floor)
    floor_cache._MEMORY.clear()
    _, first = check(path)
    assert first["stages"][0]["details"]["noise_floor"]["cached"] is False
    assert len(list(cache.glob("*.json"))) == 1
    floor_cache._MEMORY.clear()  # a new process: only the directory remains
    _, again = check(path)
    details = again["stages"][0]["details"]["noise_floor"]
    assert details["cached"] is True
    assert details["floor"] == first["stages"][0]["details"]["noise_floor"]["floor"]
    # another eval set (one sample fewer) is another key: measured again
    lines = (mini.root / "eval.jsonl").read_text().splitlines()
    (mini.root / "eval.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    floor_cache._MEMORY.clear()
    _, other = check(path)
    assert other["stages"][0]["details"]["noise_floor"]["cached"] is False
    assert len(list(cache.glob("*.json"))) == 2
