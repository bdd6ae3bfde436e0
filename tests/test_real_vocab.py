"""Issue 22's paths end to end at a real vocabulary (V = 32 000), not only the shipped models' 256–600.

bench/random_llama.py builds a seeded random-weight Llama (hidden 64, 2 layers: 16 MB of weights, no hub
download) whose tokenizer is grown to 32 000 ids, so every logit row is a real token and the identity
check must accept all 32 000. Then:

* `kind: torch` fp32 against `precision: bf16` through the CLI, scored where the logits live (CPU
  tensors read in place, chunked over positions): a pass with every position scored, a KL that is not
  zero (bf16 moves the logits) but small, and no row dropped as padding;
* the same weights with a planted fault on the last output row (`weights:`): blocked;
* `kind: vllm` (the real engine, shared memory) against transformers fp32 at the same weights: fp32
  against fp32 at V = 32 000, every position, KL at float noise. Skips without the vLLM venv outside
  CI and fails under CI=true, as tests/test_vllm_inproc.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from promote.cli import cli

REPO = Path(__file__).resolve().parents[1]
MODEL_PY = REPO / "examples" / "tiny_llama" / "model.py"
VOCAB = 32000
SAMPLES, TOKENS = 6, 96


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from random_llama import build
    finally:
        sys.path.remove(str(REPO / "bench"))
    return build(tmp_path_factory.mktemp("llama") / "model", VOCAB)


@pytest.fixture(scope="module")
def evalset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "eval.jsonl"
    ids = np.random.default_rng(22).integers(0, VOCAB, size=(SAMPLES, TOKENS))
    ids[:, 0] = 0  # begin-of-sequence, as a tokenizer would put it
    path.write_text("".join(json.dumps({"id": f"s{i}", "input_ids": row.tolist()}) + "\n" for i, row in enumerate(ids)))
    return path


def contract(tmp_path: Path, evalset: Path, candidate: dict, clauses: list[dict]) -> Path:
    doc = {"version": 1, "name": "real-vocab",
           "reference": {"kind": "torch", "model": f"{MODEL_PY}:build", "precision": "fp32", "batch_size": 2},
           "candidate": candidate, "data": {"path": str(evalset), "task": "causal-lm"},
           "numerical": {"clauses": clauses}, "escalation": {"default": "block"}}
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def check(path: Path, model: Path) -> tuple:
    report = path.parent / "report.json"
    result = CliRunner().invoke(cli, ["check", str(path), "--no-progress", "--no-github", "--output",
                                      f"json={report}"],
                                env={"PROMOTE_TINY_LLAMA_DIR": str(model)},
                                catch_exceptions=False)
    return result, (json.loads(report.read_text()) if report.exists() else None)


def numerics(report: dict) -> dict:
    return next(stage for stage in report["stages"] if stage["name"] == "numerics")


BF16_CLAUSES = [{"id": "kl-mean", "metric": "kl", "stat": "mean", "max": 1e-3},
                {"id": "kl-max", "metric": "kl", "stat": "max", "max": 1e-2},
                {"id": "argmax", "metric": "argmax_agree", "stat": "mean", "min": 0.9},
                {"id": "finite", "metric": "nonfinite", "stat": "max", "max": 0}]


def test_bf16_against_fp32_at_32000_scores_every_position_of_every_row(llama, evalset, tmp_path):
    torch_kernel = {"kind": "torch", "model": f"{MODEL_PY}:build", "precision": "bf16", "batch_size": 2}
    result, report = check(contract(tmp_path, evalset, torch_kernel, BF16_CLAUSES), llama)
    assert result.exit_code == 0, result.output
    stage = numerics(report)
    assert stage["details"]["positions"] == SAMPLES * (TOKENS - 1)  # teacher-forced: every next token
    kl = stage["details"]["metrics"]["kl"]
    assert kl["count"] == SAMPLES * (TOKENS - 1)
    assert 0 < kl["stats"]["mean"] < 1e-3  # bf16 moves the logits, a little; never a silent 0
    identity = report["identity"]
    assert identity["findings"] == [] and "vocabulary" in identity["checked"]
    assert identity["scored_vocab"] is None, "32 000 rows for 32 000 token ids: the whole row is scored, none padded"


def test_a_planted_output_layer_fault_at_32000_is_blocked(llama, evalset, tmp_path):
    """The candidate loads the same model with its last output row scaled 50× (`weights:`): that token's
    logit swings far beyond the random rows' spread, so KL and argmax agreement fail. The last row: a fault
    a comparison cut short of the full vocabulary would miss."""
    from safetensors.torch import load_file, save_file

    state = {f"model.{key}": value for key, value in load_file(llama / "model.safetensors").items()}
    state["model.lm_head.weight"][VOCAB - 1] *= 50.0
    save_file(state, tmp_path / "faulty.safetensors")
    candidate = {"kind": "torch", "model": f"{MODEL_PY}:build", "weights": str(tmp_path / "faulty.safetensors"),
                 "precision": "fp32", "batch_size": 2}
    result, report = check(contract(tmp_path, evalset, candidate, BF16_CLAUSES), llama)
    assert result.exit_code == 1, result.output
    got = {c["id"]: c["status"] for c in numerics(report)["clauses"]}
    assert got["kl-max"] == "fail" and got["argmax"] == "fail", got


def test_vllm_engine_at_32000_matches_transformers_fp32_on_every_logit(llama, evalset, vllm_python, tmp_path):
    engine = {"kind": "vllm", "model": str(llama), "dtype": "float32", "python": vllm_python,
              "max_model_len": TOKENS + 8, "batch_size": 3}
    clauses = [{"id": "kl-max", "metric": "kl", "stat": "max", "max": 1e-6},
               {"id": "drift-max", "metric": "logit_drift", "stat": "max", "max": 1e-3},
               {"id": "argmax", "metric": "argmax_agree", "stat": "mean", "min": 0.99}]
    result, report = check(contract(tmp_path, evalset, engine, clauses), llama)
    assert result.exit_code == 0, result.output
    stage = numerics(report)
    assert stage["details"]["positions"] == SAMPLES * (TOKENS - 1)
    assert stage["details"]["metrics"]["kl"]["count"] == SAMPLES * (TOKENS - 1)
    assert '"transport": "shared memory"' in json.dumps(report)
    assert f'"vocab": {VOCAB}' in json.dumps(report)
