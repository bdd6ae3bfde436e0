"""`kind: onnx` with real onnxruntime sessions: the shipped example end to end, exports of the mini
model (dynamic and fixed shapes), and the bad inputs (not ONNX, unknown provider, ambiguous graph)."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from promote.cli import cli

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "tiny_lm"


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def export_mini(mini, name: str = "mini.onnx", *, dynamic: bool = True, two_outputs: bool = False) -> Path:
    """Export the mini fixture model (legacy exporter: offline, no onnxscript)."""
    namespace: dict = {}
    exec(compile((mini.root / "model.py").read_text(), "model.py", "exec"), namespace)
    model = namespace["build"]().eval()
    if two_outputs:
        class Two(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = model

            def forward(self, ids):
                out = self.inner(ids)
                return out, out.sum(-1)
        model = Two().eval()
    out = mini.root / name
    names = ["logits", "total"] if two_outputs else ["logits"]
    axes = {"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(2, 12, dtype=torch.int64),), str(out), dynamo=False,
                          input_names=["input_ids"], output_names=names, dynamic_axes=axes, opset_version=17)
    return out


def onnx_contract(mini, path: str, name: str = "onnx.yaml", **candidate) -> Path:
    doc = yaml.safe_load(mini.contract(name).read_text())
    doc["candidate"] = {"kind": "onnx", "path": path, "batch_size": 5, **candidate}
    out = mini.root / name
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def test_example_onnx_contract_passes_end_to_end_with_small_nonzero_drift(monkeypatch):
    monkeypatch.chdir(REPO)
    result = invoke("check", "examples/tiny_lm/onnx.yaml", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    metrics = report["stages"][0]["details"]["metrics"]
    assert 0 < metrics["logit_drift"]["stats"]["max"] < 1e-2  # fused kernels: real but tiny drift
    assert 0 < metrics["kl"]["stats"]["mean"] < 1e-9
    fingerprint = report["kernels"]["candidate"]["fingerprint"]
    assert fingerprint["graph_optimization"] == "all" and fingerprint["providers"] == ["CPUExecutionProvider"]
    assert fingerprint["model_sha256"] == hashlib.sha256((EXAMPLE / "model.onnx").read_bytes()).hexdigest()
    assert fingerprint["onnxruntime"]


def test_shipped_model_onnx_matches_the_shipped_weights():
    import onnx  # a [dev] dependency: the export script and these checks need it

    meta = {p.key: p.value for p in onnx.load(str(EXAMPLE / "model.onnx"), load_external_data=False).metadata_props}
    weights = hashlib.sha256((EXAMPLE / "weights.safetensors").read_bytes()).hexdigest()
    assert meta["promote.weights_sha256"] == weights, "model.onnx is stale: run python examples/tiny_lm/export_onnx.py"


def test_export_script_reproduces_the_example_graph(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("export_onnx", EXAMPLE / "export_onnx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.export(tmp_path / "m.onnx")
    assert module.check(out) < 1e-3  # onnxruntime vs eager torch on dynamic batch and sequence shapes


@pytest.mark.parametrize("level", ["disable", "basic", "extended", "all"])
def test_mini_onnx_matches_torch_at_every_optimisation_level(mini, level):
    export_mini(mini)
    result = invoke("check", str(onnx_contract(mini, "mini.onnx", graph_optimization=level, threads=1)),
                    "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["kernels"]["candidate"]["fingerprint"]["graph_optimization"] == level
    assert report["kernels"]["candidate"]["fingerprint"]["threads"] == 1


def test_fixed_batch_and_sequence_graph_is_padded_to(mini):
    export_mini(mini, "fixed.onnx", dynamic=False)  # [2, 12]: batches of 5 run in chunks of 2, padded
    result = invoke("check", str(onnx_contract(mini, "fixed.onnx")), "--format", "json")
    assert result.exit_code == 0, result.output


def test_a_file_that_is_not_onnx(mini):
    (mini.root / "fake.onnx").write_text("this is not a protobuf")
    result = invoke("check", str(onnx_contract(mini, "fake.onnx")))
    assert result.exit_code == 2
    assert "fake.onnx: not a loadable ONNX model" in result.stderr
    assert "Traceback" not in result.output


def test_an_unknown_provider_lists_the_available_ones(mini):
    export_mini(mini)
    result = invoke("check", str(onnx_contract(mini, "mini.onnx", providers=["TensorrtExecutionProvider"])))
    assert result.exit_code == 2
    assert "TensorrtExecutionProvider not available" in result.stderr and "CPUExecutionProvider" in result.stderr


def test_several_outputs_need_an_output_name_unless_one_is_logits(mini):
    export_mini(mini, "two.onnx", two_outputs=True)
    assert invoke("check", str(onnx_contract(mini, "two.onnx"))).exit_code == 0  # `logits` is preferred
    result = invoke("check", str(onnx_contract(mini, "two.onnx", name="t.yaml", output_name="nope")))
    assert result.exit_code == 2 and "no output `nope`" in result.stderr and "logits, total" in result.stderr
    wrong = invoke("check", str(onnx_contract(mini, "two.onnx", name="w.yaml", output_name="total")))
    assert wrong.exit_code == 2 and "[batch, seq, vocab]" in wrong.stderr


def test_validate_reports_a_missing_onnx_file_with_its_line(mini):
    path = onnx_contract(mini, "missing.onnx")
    result = invoke("validate", str(path))
    assert result.exit_code == 2
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "missing.onnx" in text)
    assert f"{path}:{line}:" in result.stderr and "ONNX file `missing.onnx` not found" in result.stderr
