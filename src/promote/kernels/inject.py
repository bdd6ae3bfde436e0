"""Fault injectors as kernel wrappers: `inject:` on any candidate kernel spec.

``InjectedKernel`` wraps a built kernel and plants faults (``contract/fault_specs.py`` lists them
with the size each produces). Output faults (`cast` logits, `temperature`, `noise`) act on the
logits any kernel returns; model faults (`cast` model, `tf32`, `int8-dynamic`, `overflow`, `layer`)
change a torch kernel's module when it opens. Every fault is deterministic given its seed and
**batch invariant**: random draws are seeded per sample (seed, crc32 of the sample id) and sized by
the sample, never by the batch, so the candidate's own noise floor (rerun, batch size) stays at the
kernel's, and a rerun reproduces the same fault bit for bit.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from promote.contract.fault_specs import FaultSpec
from promote.contract.kinds import MODULES
from promote.data import Batch, TensorBatch
from promote.errors import EvaluationError, UsageError
from promote.kernels.base import Kernel, Outputs, WrappedKernel, host_logits
from promote.registry import Registry


def round_mantissa(x: np.ndarray, keep_bits: int) -> np.ndarray:
    """float32 values rounded to ``keep_bits`` mantissa bits, round to nearest even (bf16: 7, tf32: 10)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    drop = 23 - keep_bits
    half = (1 << (drop - 1)) - 1
    odd = (bits >> drop) & 1
    rounded = ((bits + half + odd) >> drop) << drop
    out = (rounded & 0xFFFFFFFF).astype(np.uint32).view(np.float32)
    finite = np.isfinite(x)
    return np.where(finite, out, x).astype(np.float32)


def _sample_rng(fault: FaultSpec, sample_id: str) -> np.random.Generator:
    return np.random.default_rng([fault.seed, zlib.crc32(sample_id.encode())])


def _selected(fault: FaultSpec, batch: Batch, row: int) -> np.ndarray:
    """Positions of sample ``row`` that a `noise` fault touches (bool [L])."""
    sample = batch.samples[row]
    ids = np.asarray(sample.input_ids)
    keep = np.ones(ids.size, dtype=bool)
    w = fault.where
    if any(sample.tags.get(k) != v for k, v in w.tags):
        keep[:] = False
    if w.token_ids is not None:
        keep &= (ids >= w.token_ids[0]) & (ids < w.token_ids[1])
    if w.positions_from is not None:
        keep[: w.positions_from] = False
    return keep


def _cast(fault: FaultSpec, z: np.ndarray, batch: Batch) -> np.ndarray:
    if fault.dtype == "bf16":
        return round_mantissa(z, 7)
    with np.errstate(over="ignore"):  # beyond 65504 fp16 is inf: the point of the fault
        return z.astype(np.float16).astype(np.float32)


def _temperature(fault: FaultSpec, z: np.ndarray, batch: Batch) -> np.ndarray:
    return z / np.float32(fault.t)


def _noise(fault: FaultSpec, z: np.ndarray, batch: Batch) -> np.ndarray:
    for row, sample in enumerate(batch.samples):
        keep = _selected(fault, batch, row)[: z.shape[1]]
        positions = np.nonzero(keep)[0]
        if positions.size:
            noise = _sample_rng(fault, sample.id).standard_normal((positions.size, z.shape[2]))
            z[row, positions] += (fault.sigma * noise).astype(np.float32)
    return z


# Faults applied to a kernel's output logits (the model faults hook the torch module: InjectedKernel).
OUTPUT_FAULTS: Registry[Callable[[FaultSpec, np.ndarray, Batch], np.ndarray]] = Registry("output fault")
OUTPUT_FAULTS.register("cast", _cast)
OUTPUT_FAULTS.register("temperature", _temperature)
OUTPUT_FAULTS.register("noise", _noise)


def apply_output_fault(fault: FaultSpec, logits: np.ndarray, batch: Batch) -> np.ndarray:
    """The logits [B, T, V] with an output fault applied (a new array)."""
    if fault.fault not in OUTPUT_FAULTS:
        raise AssertionError(f"not an output fault: {fault.fault}")
    return OUTPUT_FAULTS.get(fault.fault)(fault, np.array(host_logits(logits), dtype=np.float32, copy=True), batch)


class InjectedKernel(WrappedKernel):
    """A kernel with faults planted: the inner kernel's outputs, wrong in a known, seeded way."""

    def __init__(self, inner: Kernel, faults: tuple[FaultSpec, ...]) -> None:
        super().__init__(inner)
        self.faults = faults
        self._batch: Batch | None = None
        model = [f for f in faults if f.needs_module]
        if model and MODULES not in inner.capabilities:
            raise UsageError(f"{inner.label}: fault `{model[0].fault}` changes the model and needs a `kind: torch` "
                             "kernel; output faults (cast logits, temperature, noise) work on any kernel")
        precision = {("cast", "bf16"): "bf16-weights", ("cast", "fp16"): "fp16-weights"}
        for f in model:
            if f.fault == "int8-dynamic":
                inner.spec = dataclasses.replace(inner.spec, precision="int8-dynamic")
            elif f.fault == "cast":
                inner.spec = dataclasses.replace(inner.spec, precision=precision[("cast", f.dtype)])
        self.spec = inner.spec

    def _open_impl(self) -> None:
        super()._open_impl()
        for fault in self.faults:
            if fault.fault in ("tf32", "overflow", "layer"):
                self._hook(fault)

    def _module(self) -> Any:
        return self.inner.module  # type: ignore[attr-defined]

    def _hook(self, fault: FaultSpec) -> None:
        import torch

        root = self._module()
        if fault.fault == "tf32":
            def to_tf32(t: torch.Tensor) -> torch.Tensor:
                if t.dtype != torch.float32:
                    return t
                return torch.from_numpy(round_mantissa(t.detach().cpu().numpy(), 10)).to(t.device)

            for mod in root.modules():
                if isinstance(mod, torch.nn.Linear):
                    with torch.no_grad():
                        mod.weight.copy_(to_tf32(mod.weight))
                    mod.register_forward_pre_hook(lambda _m, args: (to_tf32(args[0]), *args[1:]))
            return
        names = dict(root.named_modules())
        if fault.layer not in names:
            raise UsageError(f"{self.inner.label}: fault `{fault.fault}`: no module `{fault.layer}`; modules: "
                             f"{', '.join(n for n in list(names)[1:20])}…")
        names[fault.layer].register_forward_hook(lambda _m, _a, out: self._perturb(fault, out))

    def _perturb(self, fault: FaultSpec, out: Any) -> Any:
        import torch

        if not isinstance(out, torch.Tensor) or out.dim() < 2:
            return out
        if fault.fault == "overflow":
            n = fault.longer_than
            if out.shape[1] <= n or self._batch is None:
                return out
            long_rows = torch.from_numpy(self._batch.lengths > n).to(out.device)  # padding never counts
            hit = out.clone()
            hit[long_rows, n:] = out[long_rows, n:] * float("inf")
            return hit
        out = out * fault.scale
        if fault.sigma and self._batch is not None:
            rms = out.float().pow(2).mean().sqrt()
            noise = np.zeros(tuple(out.shape), dtype=np.float32)
            for row, sample in enumerate(self._batch.samples):
                n = min(len(sample.input_ids), out.shape[1])
                noise[row, :n] = _sample_rng(fault, sample.id).standard_normal((n, *out.shape[2:]))
            out = out + (fault.sigma * rms * torch.from_numpy(noise).to(out.device)).to(out.dtype)
        return out

    def _run_impl(self, batch: Batch | TensorBatch) -> Outputs:
        self._batch = batch if isinstance(batch, Batch) else None
        try:
            outputs = self._run_inner(batch)
        finally:
            self._batch = None
        for fault in self.faults:
            if fault.needs_module:
                continue
            if outputs.logits is None or not isinstance(batch, Batch):
                raise UsageError(f"{self.inner.label}: fault `{fault.fault}` needs logits from a causal-lm kernel")
            outputs = dataclasses.replace(outputs, logits=apply_output_fault(fault, outputs.logits, batch))
        return outputs

    def _run_inner(self, batch: Batch | TensorBatch) -> Outputs:
        """The inner kernel's outputs. A whole-model cast whose forward fails (a model that makes its
        own float32 tensors meets its cast weights: `expected m1 and m2 to have the same dtype`) runs
        again under autocast to the cast dtype, as `precision: bf16` runs such a model; a forward that
        fails under autocast too is the error it is."""
        try:
            return self.inner.run(batch)
        except EvaluationError:
            casts = any(f.fault == "cast" and f.scope == "model" for f in self.faults)
            if not casts or getattr(self.inner, "autocast_weights", True):
                raise
        self.inner.autocast_weights = True  # type: ignore[attr-defined]
        return self.inner.run(batch)

    def describe(self) -> str:
        autocast = " (under autocast: the model mixes dtypes)" if getattr(self.inner, "autocast_weights", False) else ""
        return f"{self.inner.describe()} + inject {', '.join(f.describe() for f in self.faults)}{autocast}"

    def _fingerprint_impl(self) -> dict[str, Any]:
        return {**super()._fingerprint_impl(), "inject": [dataclasses.asdict(f) for f in self.faults],
                "autocast_weights": bool(getattr(self.inner, "autocast_weights", False))}
