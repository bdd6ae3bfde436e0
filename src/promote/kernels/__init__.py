"""Kernels: programs that turn a batch of the eval set into outputs (DESIGN.md §4)."""

from __future__ import annotations

from typing import Any

from promote.kernels.base import Kernel


def build_kernel(spec: Any, *, role: str) -> Kernel:
    """Construct the kernel a contract's `reference`/`candidate` spec describes.

    Imports lazily, so torch or onnxruntime load only when a contract uses them.
    """
    if spec.kind == "torch":
        from promote.kernels.torch_kernel import TorchKernel

        return TorchKernel(spec, role=role)
    if spec.kind == "onnx":
        from promote.kernels.onnx_kernel import OnnxKernel

        return OnnxKernel(spec, role=role)
    if spec.kind == "records":
        from promote.kernels.records import RecordsKernel

        return RecordsKernel(spec, role=role)
    raise ValueError(f"unknown kernel kind {spec.kind!r}")  # the schema rules this out
