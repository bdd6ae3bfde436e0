"""Export the tiny example model to ONNX (model.onnx beside this file), for examples/tiny_lm/onnx.yaml.

Run from the repository root:  python examples/tiny_lm/export_onnx.py

Why this exporter: torch's legacy TorchScript exporter (``dynamo=False``) runs offline with nothing
beyond torch and onnx, writes one self-contained file (weights inside, ~1.8 MB, small enough to ship),
and handles this model's dynamic batch and sequence axes. ``--dynamo`` uses the newer
torch.export-based exporter instead (needs the ``onnxscript`` package).

The sha256 of the weights file is stored in the graph's metadata (``promote.weights_sha256``), so a
test can tell when the shipped model.onnx is stale after the weights change: re-run this script.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent


def load_model(weights: Path) -> torch.nn.Module:
    """The example model in eval mode with its trained weights (strict load)."""
    spec = importlib.util.spec_from_file_location("tiny_lm_model", HERE / "model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    model = module.build()
    model.load_state_dict(load_file(str(weights)), strict=True)
    return model.eval()


def export(out: Path, *, weights: Path = HERE / "weights.safetensors", opset: int = 17, dynamo: bool = False) -> Path:
    """Export with dynamic `batch` and `seq` axes; returns the written path."""
    model = load_model(weights)
    example = (torch.arange(16, dtype=torch.int64).reshape(2, 8) * 7) % 256
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer notes on the length check
        if dynamo:
            batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=256)
            program = torch.onnx.export(model, (example,), dynamo=True, input_names=["input_ids"],
                                        output_names=["logits"], dynamic_shapes={"input_ids": {0: batch, 1: seq}})
            program.save(str(out), external_data=False)
        else:
            torch.onnx.export(model, (example,), str(out), dynamo=False, opset_version=opset,
                              input_names=["input_ids"], output_names=["logits"],
                              dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}})
    graph = onnx.load(str(out))
    stamp = {"promote.weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
             "promote.exporter": "dynamo" if dynamo else "torchscript", "promote.torch": torch.__version__}
    for key, value in stamp.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, str(out))
    return out


def check(path: Path, *, weights: Path = HERE / "weights.safetensors") -> float:
    """Largest |logit difference| between onnxruntime and eager torch on a few odd shapes."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model = load_model(weights)
    rng = np.random.default_rng(0)
    worst = 0.0
    for b, t in ((1, 5), (3, 37), (2, 256)):
        ids = rng.integers(0, 256, size=(b, t), dtype=np.int64)
        (got,) = session.run(["logits"], {"input_ids": ids})
        with torch.inference_mode():
            want = model(torch.from_numpy(ids)).numpy()
        worst = max(worst, float(np.abs(got - want).max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "model.onnx")
    parser.add_argument("--weights", type=Path, default=HERE / "weights.safetensors")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--dynamo", action="store_true", help="use the torch.export-based exporter (onnxscript)")
    args = parser.parse_args()
    path = export(args.out, weights=args.weights, opset=args.opset, dynamo=args.dynamo)
    worst = check(path, weights=args.weights)
    print(f"wrote {path} ({path.stat().st_size} bytes); max |onnxruntime − torch| = {worst:.3g}")


if __name__ == "__main__":
    main()
