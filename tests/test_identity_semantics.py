"""Value semantics (identity/semantics.py): raw logits, log-probs and processed values told apart from
the values and the declarations; each planted mismatch gives the expected finding naming side and fix,
honest pairs give none."""

from __future__ import annotations

import numpy as np
import pytest

from promote.identity.semantics import (
    ValueSide,
    check_value_semantics,
    lse_tolerance,
    observe_dense,
    observe_topk,
    positions,
    temperature_hint,
)
from promote.metrics.distribution import token_metrics

V = 512


def _logits(seed: int = 0, rows: int = 24, scale: float = 3.0) -> np.ndarray:
    """Logits of a real-looking shape: a spread of a few nats, an offset that is not zero."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((rows, V)) * scale + rng.uniform(-20, 20, (rows, 1))).astype(np.float32)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    peak = z.max(axis=-1, keepdims=True)
    return z - peak - np.log(np.exp(z - peak).sum(axis=-1, keepdims=True))


def _side(role: str, values: np.ndarray | None, declared: str | None = None, fmt: str = "logits") -> ValueSide:
    observed = None
    if values is not None:
        observed = observe_dense(values) if fmt == "logits" else observe_topk(values)
    return ValueSide(role, f"{role} (records {role}.safetensors)", fmt, declared,  # type: ignore[arg-type]
                     "metadata `logprobs_mode`" if declared else "", observed)


# --- observing the values ---------------------------------------------------------------------------

def test_observe_dense_tells_log_probs_from_raw_logits():
    z = _logits()
    assert observe_dense(z).space == "logits"
    assert observe_dense(_log_softmax(z)).space == "logprobs"
    raw = observe_dense(z)
    assert raw.evidence["positions"] == 24 and abs(raw.evidence["logsumexp_max"]) > 1.0


def test_observe_dense_rounding_of_bf16_log_probs_is_within_its_tolerance():
    torch = pytest.importorskip("torch")
    lp = torch.from_numpy(_log_softmax(_logits(1))).to(torch.bfloat16).float().numpy()
    assert observe_dense(lp, tol=1e-3).space == "logits"  # bf16 rounding moves logsumexp past float32's tolerance
    assert observe_dense(lp, tol=lse_tolerance(7.9e-3)).space == "logprobs"


def test_observe_dense_reads_only_scored_finite_positions():
    z = _logits()
    lp = _log_softmax(z)
    lp[3] = z[3]  # an unscored row holding junk
    mask = np.ones(24, dtype=bool)
    mask[3] = False
    assert observe_dense(lp).space == "logits"
    assert observe_dense(lp, mask=mask).space == "logprobs"
    lp[:, :10] = -np.inf  # a vocabulary mask: −inf entries are no mass
    lp = _log_softmax(lp)
    assert observe_dense(lp, mask=mask).space == "logprobs"
    assert observe_dense(lp, mask=np.zeros(24, dtype=bool)).space is None


def test_observe_topk_mass_bound():
    lp = _log_softmax(_logits())
    top = -np.sort(-lp, axis=-1)[:, :20]
    assert observe_topk(top).space is None  # consistent with log-probs: the declaration decides
    raw = -np.sort(-_logits(), axis=-1)[:, :20]
    found = observe_topk(raw)
    assert found.space == "logits" and found.evidence["mass_max"] > 1.0
    negative = np.full((4, 5), np.log(0.3))  # every value ≤ 0, but five probabilities of 0.3 sum past 1
    assert observe_topk(negative).space == "logits"
    assert observe_topk(np.full((4, 5), np.log(0.2))).space is None  # exactly 1: within rounding


# --- honest pairs: no finding --------------------------------------------------------------------

@pytest.mark.parametrize("space", ["raw_logits", "raw_logprobs"])
def test_honest_pairs_give_no_finding(space):
    z_r, z_c = _logits(0), _logits(0) + np.float32(1e-3)
    if space == "raw_logprobs":
        z_r, z_c = _log_softmax(z_r), _log_softmax(z_c)
    ref, cand = _side("reference", z_r, space), _side("candidate", z_c, space)
    assert check_value_semantics(ref, cand, ["kl", "logit_drift", "logit_osc"]) == []
    undeclared = _side("reference", z_r), _side("candidate", z_c)
    assert check_value_semantics(*undeclared, ["logit_drift"]) == []


def test_top_k_log_probs_against_logits_is_honest():
    z = _logits()
    top = -np.sort(-_log_softmax(z), axis=-1)[:, :20]
    found = check_value_semantics(_side("reference", z, "raw_logits"),
                                  _side("candidate", top, "raw_logprobs", fmt="topk"), ["logit_drift", "kl"])
    assert found == []


# --- raw logits against log-probs ---------------------------------------------------------------

def test_space_difference_changes_logit_drift_but_not_logit_osc_or_the_distribution():
    """Why only logit_drift makes a space mismatch invalid: the fused metrics on (logits, log-probs of the
    same logits) give logit_osc 0, KL 0, TV 0 — and logit_drift equal to the log-normaliser."""
    z = _logits(2).astype(np.float64)
    lp = _log_softmax(z)
    m = token_metrics(z, lp, np.zeros(len(z), dtype=np.int64))
    assert np.max(m["logit_osc"]) < 1e-9 and np.max(m["kl"]) < 1e-12 and np.max(m["tv"]) < 1e-9
    lse = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
    np.testing.assert_allclose(m["logit_drift"], np.abs(lse), rtol=1e-9)


def test_space_mismatch_with_logit_drift_is_invalid_naming_the_fix():
    z = _logits()
    ref, cand = _side("reference", z), _side("candidate", _log_softmax(z))
    found = check_value_semantics(ref, cand, ["kl", "logit_drift"])
    assert [(f.check, f.severity, f.side) for f in found] == [("value_semantics", "invalid", "both")]
    f = found[0]
    assert "reference gives raw logits, the candidate log-probs" in f.message and "logit_drift" in f.message
    assert "record the reference as log-probs" in f.fix and "raw_logprobs" in f.fix and "logit_osc" in f.fix
    assert f.evidence["reference"] == "logits" and f.evidence["candidate"] == "logprobs"
    assert f.evidence["metrics"] == ["logit_drift"]


def test_space_mismatch_without_drift_is_a_note():
    z = _logits()
    found = check_value_semantics(_side("reference", _log_softmax(z)), _side("candidate", z), ["kl", "logit_osc"])
    assert [(f.severity, f.side) for f in found] == [("note", "both")]
    assert "logit_osc are unaffected" in found[0].message


def test_declared_space_decides_where_values_are_not_measured():
    found = check_value_semantics(_side("reference", None, "raw_logits"), _side("candidate", None, "raw_logprobs"),
                                  ["logit_drift"])
    assert [f.severity for f in found] == ["invalid"]


# --- declarations against values ----------------------------------------------------------------

def test_declaration_contradicted_by_the_values_is_invalid_on_that_side():
    z = _logits()
    found = check_value_semantics(_side("reference", _log_softmax(z), "raw_logprobs"),
                                  _side("candidate", z, "raw_logprobs"), ["kl"])
    bad = [f for f in found if f.severity == "invalid"]
    assert [(f.side, f.check) for f in bad] == [("candidate", "value_semantics")]
    assert "declares `raw_logprobs`" in bad[0].message and "its values are raw logits" in bad[0].message
    assert "logsumexp over the vocabulary is" in bad[0].message
    assert "correct the declaration" in bad[0].fix


def test_unknown_mode_is_invalid():
    z = _logits()
    found = check_value_semantics(_side("reference", z, "raw_logits"), _side("candidate", z, "logits"), [])
    assert [(f.severity, f.side) for f in found] == [("invalid", "candidate")]
    assert "raw_logprobs" in found[0].fix


def test_top_k_of_raw_logits_is_invalid():
    raw = -np.sort(-_logits(), axis=-1)[:, :20]
    lp_top = -np.sort(-_log_softmax(_logits()), axis=-1)[:, :20]
    for cand in (_side("candidate", raw, None, fmt="topk"), _side("candidate", lp_top, "raw_logits", fmt="topk")):
        found = check_value_semantics(_side("reference", _logits(), "raw_logits"), cand, ["kl"])
        assert [(f.severity, f.side) for f in found] == [("invalid", "candidate")], found
        assert "top-k raw logits" in found[0].message and "top_k: all" in found[0].fix


# --- processed against raw ------------------------------------------------------------------------

def test_processed_against_raw_is_invalid_naming_the_processed_side():
    z = _logits()
    lp = _log_softmax(z)
    tempered = _log_softmax(z / 0.7)
    found = check_value_semantics(_side("reference", lp, "raw_logprobs"),
                                  _side("candidate", tempered, "processed_logprobs"), ["kl"])
    assert [(f.check, f.severity, f.side) for f in found] == [("value_semantics", "invalid", "candidate")]
    assert "processed values" in found[0].message and "`processed_logprobs`" in found[0].message
    assert "re-record the candidate with vLLM `--logprobs-mode raw_logprobs`" in found[0].fix
    logits_side = check_value_semantics(_side("reference", z, "processed_logits"), _side("candidate", z, "raw_logits"))
    assert [(f.severity, f.side) for f in logits_side] == [("invalid", "reference")]
    assert "--logprobs-mode raw_logits" in logits_side[0].fix


def test_processed_against_a_live_kernel_is_invalid():
    """A live kernel (torch, onnx, a temperature-0 server) gives the model's own values: never processed."""
    z = _logits()
    live = ValueSide("reference", "reference (torch)", "logits", observed=observe_dense(z), live=True)
    found = check_value_semantics(live, _side("candidate", _log_softmax(z / 0.8), "processed_logprobs"), ["kl"])
    assert [(f.severity, f.side) for f in found] == [("invalid", "candidate"), ("note", "both")]  # + the spaces
    assert "the model’s own outputs" in found[0].message


def test_processed_against_undeclared_or_processed_is_a_note():
    lp = _log_softmax(_logits())
    undeclared = check_value_semantics(_side("reference", lp), _side("candidate", lp, "processed_logprobs"))
    assert [(f.severity, f.side) for f in undeclared] == [("note", "reference")]
    assert "declare the reference's mode" in undeclared[0].fix
    both = check_value_semantics(_side("reference", lp, "processed_logprobs"),
                                 _side("candidate", lp, "processed_logprobs"))
    assert [(f.severity, f.side) for f in both] == [("note", "both")]


# --- a temperature seen in the values -----------------------------------------------------------

def test_temperature_hint_sees_a_tempered_candidate():
    z = _logits(3, rows=32)
    ref = _log_softmax(z)
    hint = temperature_hint(ref, _log_softmax(z / 0.7))
    assert hint is not None and hint.severity == "note" and hint.side == "candidate"
    assert abs(hint.evidence["temperature"] - 0.7) < 0.01
    cold = temperature_hint(ref, _log_softmax(z / 1.25))
    assert cold is not None and abs(cold.evidence["temperature"] - 1.25) < 0.02


def test_temperature_hint_is_silent_on_honest_noise_and_unrelated_logits():
    z = _logits(4, rows=32)
    rng = np.random.default_rng(9)
    assert temperature_hint(_log_softmax(z), _log_softmax(z + rng.normal(0, 0.01, z.shape))) is None
    assert temperature_hint(z, z + 5.0) is None  # a constant offset is no temperature
    assert temperature_hint(_log_softmax(z), _log_softmax(_logits(5, rows=32))) is None
    assert temperature_hint(z[:2], z[:2] / 0.5) is None  # too few positions to say


def test_positions_copies_only_a_spread_of_scored_rows():
    values = np.arange(4 * 100 * 3, dtype=np.float32).reshape(4, 100, 3)
    mask = np.zeros((4, 100), dtype=bool)
    mask[1:3, 10:60] = True  # 100 scored positions
    rows = positions(values, mask, limit=5)
    assert rows.shape == (5, 3) and rows.dtype == np.float64
    picked = (rows[:, 0] / 3).astype(int)
    assert picked[0] == 110 and picked[-1] == 259 and list(picked) == sorted(set(picked))
    assert all(mask.reshape(-1)[i] for i in picked)
    assert positions(values, mask).shape == (100, 3)


def test_the_probe_reads_torch_tensors_of_any_dtype_where_they_live():
    """Torch kernels hand their logits on as tensors (bf16 included, issue 22): the probe indexes the
    measured rows in place and copies only those, with the values numpy would give."""
    import torch

    from promote.identity.semantics import positions

    logits = torch.randn(2, 5, 7, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    mask = np.zeros((2, 5), dtype=bool)
    mask[0, 1:4] = mask[1, 0] = True
    expected = positions(logits.to(torch.float32).numpy(), mask, limit=3)
    got = positions(logits, mask, limit=3)
    assert got.dtype == np.float64 and got.shape == (3, 7)
    assert np.array_equal(got, expected)
