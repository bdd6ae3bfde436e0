"""`kind: onnx`: an exported graph run through onnxruntime — the common CPU/edge serving path.

The settings that change numerics (execution providers, graph optimisation level, which decides
operator fusions, intra-op threads, which change reduction order) are explicit contract keys and go
into the fingerprint together with the onnxruntime version and the model file's sha256, so a report
says exactly which graph and runtime produced its numbers.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from promote.data import Batch
from promote.errors import UsageError
from promote.kernels.base import Kernel, Outputs, evaluation_failure

_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
           "all": "ORT_ENABLE_ALL"}
_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pick(kind: str, names: list[str], wanted: str | None, key: str, where: str, prefer: str | None = None) -> str:
    """The graph input/output to use: the one named by the contract, the only one, or ``prefer``."""
    if wanted is not None:
        if wanted not in names:
            raise UsageError(f"{where}: the graph has no {kind} `{wanted}` (`{key}`); its {kind}s: {', '.join(names)}")
        return wanted
    if len(names) == 1:
        return names[0]
    if prefer in names:
        return prefer
    raise UsageError(f"{where}: the graph has {len(names)} {kind}s ({', '.join(names)}); say which one with `{key}`")


class OnnxKernel(Kernel):
    kind = "onnx"

    def describe(self) -> str:
        return f"onnx, {self.spec.path_display}"

    def _open_impl(self) -> None:
        import onnxruntime as ort

        spec = self.spec
        available = ort.get_available_providers()
        unknown = [p for p in spec.providers if p not in available]
        if unknown:
            raise UsageError(f"{self.label}: execution provider(s) {', '.join(unknown)} not available in "
                             f"onnxruntime {ort.__version__}; available: {', '.join(available)}")
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[spec.graph_optimization])
        if spec.threads is not None:
            options.intra_op_num_threads = spec.threads
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(spec.path), sess_options=options, providers=list(spec.providers))
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise UsageError(f"{spec.path_display}: not a loadable ONNX model ({reason}); give `path` an .onnx "
                             "file exported with torch.onnx.export (see examples/tiny_lm/export_onnx.py)") from None
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        self.input_name = _pick("input", list(inputs), spec.input_name, "input_name", spec.path_display)
        self.output_name = _pick("output", outputs, spec.output_name, "output_name", spec.path_display, "logits")
        others = [n for n in inputs if n != self.input_name]
        if others:
            raise UsageError(f"{spec.path_display}: the graph also needs input(s) {', '.join(others)}; promote "
                             f"feeds only `{self.input_name}` (input_ids [B,T]); export a graph with that one input")
        node = inputs[self.input_name]
        if node.type not in _INT_TYPES:
            raise UsageError(f"{spec.path_display}: input `{self.input_name}` is {node.type}; promote feeds token "
                             "ids, so it must be tensor(int64) or tensor(int32)")
        self.input_dtype = _INT_TYPES[node.type]
        shape = list(node.shape) if node.shape is not None else []
        if len(shape) != 2:
            raise UsageError(f"{spec.path_display}: input `{self.input_name}` has shape {shape}; expected [batch, seq]")
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.fixed_seq = shape[1] if isinstance(shape[1], int) and shape[1] > 0 else None
        self.sha256 = file_sha256(spec.path)

    def _close_impl(self) -> None:
        self.session = None

    def _run_impl(self, batch: Batch) -> Outputs:
        ids = batch.input_ids.astype(self.input_dtype)
        b, t = ids.shape
        if self.fixed_seq is not None:
            if t > self.fixed_seq:
                raise UsageError(f"{self.spec.path_display}: the graph has a fixed sequence length {self.fixed_seq} "
                                 f"but the eval set has sequences of {t} tokens; export with a dynamic axis")
            ids = np.pad(ids, ((0, 0), (0, self.fixed_seq - t)))  # right padding: causal, harmless
        step = self.fixed_batch or b
        parts = []
        for start in range(0, b, step):
            chunk = ids[start : start + step]
            rows = chunk.shape[0]
            if rows < step:
                chunk = np.concatenate([chunk, np.zeros((step - rows, chunk.shape[1]), chunk.dtype)])
            try:
                (out,) = self.session.run([self.output_name], {self.input_name: chunk})
            except BaseException as exc:
                raise evaluation_failure(self.label, "onnxruntime run", exc) from None
            parts.append(np.asarray(out)[:rows])
        logits = np.concatenate(parts)
        if logits.ndim == 3:
            logits = logits[:, :t]
        return Outputs(logits=logits.astype(np.float32, copy=False), source=self.spec.path_display)

    def identity_facts(self) -> dict[str, Any]:
        """The graph file is the weights (a tokenizer and config are looked for beside it)."""
        return {"files": {"weights": self.spec.path}}

    def _fingerprint_impl(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            "onnxruntime": ort.__version__,
            "providers": self.session.get_providers(),
            "graph_optimization": self.spec.graph_optimization,
            "threads": self.spec.threads,
            "model": self.spec.path_display,
            "model_sha256": self.sha256,
            "input": self.input_name,
            "output": self.output_name,
        }


__all__ = ["OnnxKernel", "file_sha256"]
