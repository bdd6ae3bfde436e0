"""Activation tier: a fault planted in one layer of the example model is localised to that layer."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from promote.cli import cli

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny_lm"

FAULTY = f'''
import importlib.util

spec = importlib.util.spec_from_file_location("tiny_lm_model_for_fault", {str(EXAMPLE / "model.py")!r})
tiny = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tiny)


def build_faulty():
    """The example model with its third block's MLP output scaled by 1.02: a one-layer kernel bug."""
    model = tiny.build()
    model.blocks[2].mlp.register_forward_hook(lambda module, inputs, output: output * 1.02)
    return model
'''


def contract(tmp_path: Path, candidate: dict) -> Path:
    (tmp_path / "faulty.py").write_text(FAULTY)
    doc = {
        "version": 1,
        "name": "localize",
        "reference": {"kind": "torch", "model": str(EXAMPLE / "model.py") + ":build",
                      "weights": str(EXAMPLE / "weights.safetensors"), "batch_size": 4},
        "candidate": {"kind": "torch", "weights": str(EXAMPLE / "weights.safetensors"), "batch_size": 4,
                      **candidate},
        "data": {"path": str(EXAMPLE / "eval.jsonl"), "limit": 8},
        "numerical": {"localize": {"max_samples": 8, "factor": 10},
                      "clauses": [{"id": "kl", "metric": "kl", "stat": "mean", "max": 1.0}]},
    }
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run(path: Path) -> dict:
    result = CliRunner().invoke(cli, ["check", str(path), "--format", "json"])
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)["stages"][0]


def test_fault_in_one_layer_is_localised_to_that_layer(tmp_path):
    stage = run(contract(tmp_path, {"model": "faulty.py:build_faulty"}))
    found = stage["details"]["localize"]
    assert found["first_divergent"]["module"] == "blocks.2.mlp"
    profile = {m["module"]: m for m in found["profile"]}
    # Everything upstream of the fault is bitwise identical; downstream inherits the drift.
    assert profile["blocks.1"]["rel"] == 0 and profile["blocks.2.attn"]["rel"] == 0
    assert profile["blocks.2.mlp"]["rel"] > 0.01 and profile["head"]["rel"] > 0
    assert any("first divergent module `blocks.2.mlp`" in note for note in stage["notes"])


def test_bf16_drift_starts_at_the_first_matmul(tmp_path):
    stage = run(contract(tmp_path, {"model": str(EXAMPLE / "model.py") + ":build", "precision": "bf16"}))
    first = stage["details"]["localize"]["first_divergent"]
    assert first is not None and first["module"].startswith("blocks.0.")
