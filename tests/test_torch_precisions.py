"""torch kernel: int8-dynamic and compile: inductor on real models; precision flags restored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml
from click.testing import CliRunner

from promote.cli import cli
from promote.contract.model import load_contract
from promote.data import batches, read_jsonl
from promote.kernels import build_kernel
from promote.kernels.base import host_logits

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny_lm"


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def example_contract(tmp_path: Path, precision: str, *, limit: int = 48) -> Path:
    kernel = {"kind": "torch", "model": str(EXAMPLE / "model.py") + ":build",
              "weights": str(EXAMPLE / "weights.safetensors"), "batch_size": 16}
    doc = {
        "version": 1, "name": f"tiny-{precision}",
        "reference": {**kernel, "precision": "fp32"}, "candidate": {**kernel, "precision": precision},
        "data": {"path": str(EXAMPLE / "eval.jsonl"), "limit": limit},
        "numerical": {"clauses": [{"id": "kl-mean", "metric": "kl", "stat": "mean", "max": 1.0}]},
    }
    path = tmp_path / f"{precision}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_int8_dynamic_drifts_more_than_bf16_on_the_example(tmp_path):
    kl = {}
    for precision in ("bf16", "int8-dynamic"):
        result = invoke("check", str(example_contract(tmp_path, precision)), "--format", "json")
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        kl[precision] = report["stages"][0]["details"]["metrics"]["kl"]["stats"]["mean"]
        if precision == "int8-dynamic":
            assert "quantize_dynamic" in report["kernels"]["candidate"]["fingerprint"]["quantization"]
    assert kl["int8-dynamic"] > kl["bf16"] > 0


def _logits(contract_path: Path, role: str) -> list[np.ndarray]:
    contract, _ = load_contract(contract_path)
    spec = getattr(contract, role)
    evalset = read_jsonl(contract.data.path)
    with build_kernel(spec, role=role) as kernel:
        return [host_logits(kernel.run(batch).logits) for batch in batches(evalset.samples[:10], 5)]


def test_inductor_matches_eager_within_1e_4(mini):
    doc = yaml.safe_load(mini.contract().read_text())
    doc["candidate"]["compile"] = "inductor"
    path = mini.root / "compiled.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    eager, compiled = _logits(path, "reference"), _logits(path, "candidate")
    for a, b in zip(eager, compiled, strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-4)
    contract, _ = load_contract(path)
    assert contract.candidate.compile == "inductor"


def test_compile_off_reads_yaml_false_and_compile_mode_needs_inductor(mini):
    path = mini.write("c.yaml", mini.contract().read_text().replace(
        "precision: fp32\n  batch_size: 5\ncandidate:", "precision: fp32\n  batch_size: 5\n  compile: off\n"
        "  compile_mode: max-autotune\ncandidate:"))
    result = invoke("validate", str(path))
    assert result.exit_code == 2
    assert "`compile_mode` needs `compile: inductor`" in result.stderr


def test_precision_flags_are_restored_after_each_call(mini):
    torch.set_float32_matmul_precision("medium")
    try:
        doc = yaml.safe_load(mini.contract().read_text())
        doc["candidate"]["precision"] = "tf32"
        path = mini.root / "tf32.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        _logits(path, "candidate")
        _logits(path, "reference")
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision("highest")
