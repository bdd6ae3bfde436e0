"""Sampled-token data that is not a log-prob (issue 19, items 10, 18, 19): −inf on both sides, values
above 0, bool or complex tensors, masks that are not 0/1, token ids beyond int64 and a monitor's bytes
loaded into a monitor with other clauses — each counted and reported, or refused with a message;
never agreement, never a raw KeyError/OverflowError."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from promote.errors import UsageError
from promote.rl import RolloutMonitor, read_rollouts
from promote.rl.convert import write_rollouts

CLAUSES = [{"id": "finite", "metric": "nonfinite", "stat": "max", "max": 0},
           {"id": "lr", "metric": "log_ratio", "stat": "mean", "max": 1e-3, "min": -1e-3}]


@pytest.mark.parametrize(("trainer", "engine"), [
    ([-math.inf, -1.0], [-math.inf, -1.0]),  # before the fix: log w = 0 and `nonfinite` passed
    ([0.5, -1.0], [0.5, -1.0]),  # a "log-prob" above 0 on both sides: identical, yet impossible
    ([-1.0, -1.0], [0.3, -1.0]),
])
def test_impossible_log_probs_are_counted_never_agreement(trainer, engine):
    monitor = RolloutMonitor(CLAUSES)
    monitor.add(np.array([trainer]), np.array([engine]))
    verdict = monitor.judge()
    finite, lr = verdict.results
    assert finite.status == "fail" and finite.observed == 1.0, str(verdict)
    assert lr.status != "pass" and not verdict.passed, str(verdict)


def test_bool_and_complex_log_probs_and_non_binary_masks_are_refused():
    monitor = RolloutMonitor(CLAUSES)
    good = torch.full((1, 3), -1.0)
    for bad in (torch.ones(1, 3, dtype=torch.bool), torch.full((1, 3), -1.0, dtype=torch.complex64),
                np.array([[True, False, True]]), np.array([[-1 + 0j, -1, -1]])):
        with pytest.raises(TypeError, match="must be real numbers"):
            monitor.add(bad, good)
        with pytest.raises(TypeError, match="must be real numbers"):
            monitor.add(good, bad)
    for mask in (np.array([[2, 1, 0]]), np.array([[0.5, 1, 1]]), np.array([["0", "1", "1"]]),
                 torch.tensor([[-1, 1, 1]])):
        with pytest.raises(ValueError, match="mask must hold booleans or 0/1"):
            monitor.add(good, good, mask)
    monitor.add(good, good, torch.tensor([[1, 0, 1]]))  # 0/1 integers are a mask
    monitor.add(good, good, np.array([[1.0, 0.0, 1.0]]))
    assert monitor.judge().tokens == 4


def test_loading_bytes_of_a_monitor_with_other_clauses_names_the_problem():
    other = RolloutMonitor([{"id": "k3", "metric": "k3", "stat": "mean", "max": 1e-3}])
    mine = RolloutMonitor([{"id": "ess", "metric": "ess", "stat": "mean", "min": 0.9}])
    with pytest.raises(ValueError, match="a monitor with other clauses"):
        mine.load_bytes(other.to_bytes())
    assert mine.judge().status == "vacuous"  # the monitor is unchanged and still judges


def _row(**change) -> str:
    row = {"id": "r", "prompt_ids": [1, 2], "response_ids": [3, 4, 5], "response_mask": [1, 1, 0],
           "engine_logprobs": [-0.5, -0.5, -0.5], "trainer_logprobs": [-0.5, -0.5, -0.5]}
    return json.dumps({**row, **change}) + "\n"


@pytest.mark.parametrize("mask", [["0", 1, 1], [2, 1, 1], [-1, 1, 1], [0.5, 1, 1], [None, 1, 1]])
def test_rollout_masks_must_be_bits(tmp_path, mask):
    path = tmp_path / "d.jsonl"
    path.write_text(_row(response_mask=mask))
    with pytest.raises(UsageError, match=r"d.jsonl:1: column `response_mask` must be a list of mask bits"):
        read_rollouts(path)


def test_token_ids_beyond_int64_are_a_usage_error_not_an_overflow(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(_row(response_ids=[3, 2**63, 5]))
    with pytest.raises(UsageError, match=r"column `response_ids` must be a list of token ids"):
        read_rollouts(path)
    path.write_text(_row())
    (rollout,) = read_rollouts(path)
    forged = type(rollout)(rollout.id, rollout.prompt_ids, (3, 2**64), (True, True), (-0.5, -0.5), (-0.5, -0.5))
    with pytest.raises(UsageError, match=r"rollout `r`: column `response_ids`"):
        write_rollouts([forged], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_fifo_rollout_dump_is_refused_without_blocking(tmp_path):
    import os

    from hostile_files import without_blocking

    for name in ("d.jsonl", "d.parquet"):
        fifo = tmp_path / name
        os.mkfifo(fifo)
        error = without_blocking(lambda f=fifo: read_rollouts(f), fifo)
        assert isinstance(error, UsageError) and "FIFO" in error.format_message(), error
