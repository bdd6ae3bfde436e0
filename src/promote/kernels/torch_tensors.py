"""The torch kernel on `data.task: tensor`: named inputs in, nested outputs flattened to key paths.

Calling convention: ``forward(**inputs)`` with the eval set's input names as keyword arguments, or
``forward(x)`` positionally when the only input is named ``input``. The call is checked against the
forward signature first, so a name mismatch is a usage error (exit 2) naming both sides, not a
crash inside the model. With a ``*-weights`` precision the module's floating-point weights are
bf16/fp16, so floating-point inputs are cast to that dtype too (integer inputs stay as they are);
under autocast the inputs stay float32, as autocast expects.

Outputs keep the dtype the model produced (bf16, which numpy lacks, is widened to float32 and its
name recorded in ``Outputs.dtypes``); metrics cast to float64 themselves.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from promote.data import TensorBatch
from promote.errors import UsageError
from promote.kernels.base import Outputs, evaluation_failure
from promote.keypaths import flatten_outputs

SINGLE_INPUT = "input"


def _check_call(module: Any, label: str, names: list[str]) -> None:
    """Bind the inputs to forward's signature before calling, to report a mismatch as a usage error."""
    forward = module.forward if isinstance(module, torch.nn.Module) else module
    try:
        sig = inspect.signature(forward)
    except (TypeError, ValueError):  # builtins and C extensions: let the call decide
        return
    try:
        if names == [SINGLE_INPUT]:
            sig.bind(None)
        else:
            sig.bind(**dict.fromkeys(names))
    except TypeError as exc:
        params = [p for p in sig.parameters if p not in ("self",)]
        raise UsageError(f"{label}: forward({', '.join(params)}) cannot take the eval set's inputs "
                         f"{names} ({exc}); name the inputs after forward's parameters, or use one input "
                         f"named `{SINGLE_INPUT}` to pass it positionally") from None


def _to_numpy(key: str, value: Any, label: str) -> tuple[np.ndarray, str]:
    if not isinstance(value, torch.Tensor):
        raise UsageError(f"{label}: output `{key}` is a {type(value).__name__}; the task `tensor` compares "
                         "tensors (possibly nested in dicts, lists, tuples, dataclasses or HF ModelOutputs)")
    value = value.detach().to("cpu")
    source = str(value.dtype).removeprefix("torch.")
    if value.dtype == torch.bfloat16:
        value = value.to(torch.float32)
    try:
        return value.numpy(), source
    except TypeError as exc:  # dtypes numpy lacks (fp8, quantised)
        raise UsageError(f"{label}: output `{key}` has dtype {source}, which promote cannot read ({exc})") from None


def run_tensor_batch(module: Any, batch: TensorBatch, *, label: str, device: str, weight_dtype: torch.dtype | None,
                     forward_context: Callable[[], contextlib.AbstractContextManager]) -> Outputs:
    """One forward call on stacked named inputs; returns every output tensor by key path.

    Takes the module and its call context rather than the kernel, so this module never imports
    ``torch_kernel`` (which imports it lazily for `task: tensor`).
    """
    tensors = {}
    for name, array in batch.inputs.items():
        tensor = torch.from_numpy(np.ascontiguousarray(array)).to(device)
        if weight_dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(weight_dtype)
        tensors[name] = tensor
    names = list(tensors)
    _check_call(module, label, names)
    try:
        with forward_context():
            raw = module(tensors[SINGLE_INPUT]) if names == [SINGLE_INPUT] else module(**tensors)
    except BaseException as exc:
        raise evaluation_failure(label, "forward pass", exc) from None
    try:
        pairs = flatten_outputs(raw)
    except ValueError as exc:
        raise UsageError(f"{label}: {exc}") from None
    named: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    for key, value in pairs:
        named[key], dtypes[key] = _to_numpy(key, value, label)
    return Outputs(named=named, dtypes=dtypes)
