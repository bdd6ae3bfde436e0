"""Activation tier: find the first module where the candidate leaves the reference.

Forward hooks record every module's output on both torch kernels, batch by batch (nothing outlives
a batch but per-module sums), and on the reference once more with each sample run alone — the
module's own noise floor (batch 1 vs N, the legitimate perturbation of docs/metrics.md "Activation tier"). A module's
divergence is the relative L2 error ‖c − r‖/‖r‖ over the real (unpadded) positions. The first
module, in execution order, whose divergence exceeds ``factor`` × its floor is reported, with the
whole per-layer drift profile, so a reviewer sees where drift starts and how it grows.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from promote.data import Batch, EvalSet, batches
from promote.kernels.base import Kernel


@dataclass
class ModuleDrift:
    """Sums over real positions of one module's output, merged across batches."""

    name: str
    order: int
    diff_sq: float = 0.0
    floor_sq: float = 0.0
    ref_sq: float = 0.0
    max_abs: float = 0.0
    elements: int = 0

    @property
    def rel(self) -> float:
        return math.sqrt(self.diff_sq / self.ref_sq) if self.ref_sq > 0 else (0.0 if self.diff_sq == 0 else math.inf)

    @property
    def floor(self) -> float:
        return math.sqrt(self.floor_sq / self.ref_sq) if self.ref_sq > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        def clean(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {"module": self.name, "rel": clean(self.rel), "floor": clean(self.floor),
                "max_abs": clean(self.max_abs), "elements": self.elements}


@contextmanager
def _recording(module: Any, sink: dict[str, np.ndarray], order: list[str]):
    """Record each submodule's (first tensor) output as float32 numpy, in completion order."""
    import torch

    handles = []

    def hook_for(name: str):
        def hook(_module, _inputs, output):  # noqa: ANN001, ANN202
            tensor = output[0] if isinstance(output, (tuple, list)) and output else output
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
                sink[name] = tensor.detach().to("cpu", torch.float32).numpy()
                if name not in order:
                    order.append(name)

        return hook

    for name, sub in module.named_modules():
        if name:
            handles.append(sub.register_forward_hook(hook_for(name)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _capture(kernel: Kernel, batch: Batch, order: list[str]) -> dict[str, np.ndarray]:
    sink: dict[str, np.ndarray] = {}
    with _recording(kernel.module, sink, order):
        kernel.run(batch)
    return sink


def _per_sample(kernel: Kernel, batch: Batch, order: list[str]) -> list[dict[str, np.ndarray]]:
    return [_capture(kernel, one, order) for one in batches(batch.samples, 1)]


def _sequence_prefix(array: np.ndarray, row: int, length: int, batch_shape: tuple[int, int]) -> np.ndarray | None:
    """The real positions of one sample in a [B, T, ...] activation (None if not laid out that way)."""
    if array.ndim >= 2 and array.shape[0] == batch_shape[0] and array.shape[1] == batch_shape[1]:
        return array[row, :length]
    return None


class Localizer:
    def __init__(self, *, factor: float) -> None:
        self.factor = factor
        self.order: list[str] = []
        self.modules: dict[str, ModuleDrift] = {}
        self.skipped: set[str] = set()

    def add(self, batch: Batch, ref: dict[str, np.ndarray], cand: dict[str, np.ndarray],
            alone: list[dict[str, np.ndarray]]) -> None:
        shape = batch.input_ids.shape
        for name in self.order:
            if name not in ref or name not in cand or ref[name].shape != cand[name].shape:
                self.skipped.add(name)
                continue
            drift = self.modules.setdefault(name, ModuleDrift(name, self.order.index(name)))
            for row, length in enumerate(batch.lengths):
                r = _sequence_prefix(ref[name], row, int(length), shape)
                c = _sequence_prefix(cand[name], row, int(length), shape)
                f_full = alone[row].get(name)
                f = _sequence_prefix(f_full, 0, int(length), (1, int(length))) if f_full is not None else None
                if r is None or c is None or f is None or f.shape != r.shape:
                    self.skipped.add(name)
                    continue
                r64, c64, f64 = r.astype(np.float64), c.astype(np.float64), f.astype(np.float64)
                drift.diff_sq += float(np.sum((c64 - r64) ** 2))
                drift.floor_sq += float(np.sum((f64 - r64) ** 2))
                drift.ref_sq += float(np.sum(r64**2))
                drift.max_abs = max(drift.max_abs, float(np.max(np.abs(c64 - r64), initial=0.0)))
                drift.elements += r.size

    def first_divergent(self) -> ModuleDrift | None:
        for drift in sorted(self.modules.values(), key=lambda d: d.order):
            if drift.elements and drift.diff_sq > 0 and drift.rel > self.factor * drift.floor:
                return drift
        return None

    def result(self, seconds: float, samples: int) -> dict[str, Any]:
        first = self.first_divergent()
        profile = [d.to_dict() for d in sorted(self.modules.values(), key=lambda d: d.order) if d.elements]
        return {
            "factor": self.factor,
            "samples": samples,
            "seconds": round(seconds, 3),
            "first_divergent": first.to_dict() if first else None,
            "profile": profile,
            "not_compared": sorted(self.skipped - set(self.modules)),
        }


def localize(evalset: EvalSet, reference: Kernel, candidate: Kernel, *, factor: float, max_samples: int,
             batch_size: int) -> dict[str, Any]:
    """Per-module drift of candidate vs reference on the first ``max_samples`` samples."""
    start = time.perf_counter()
    loc = Localizer(factor=factor)
    samples = evalset.samples[:max_samples]
    for batch in batches(samples, batch_size):
        ref = _capture(reference, batch, loc.order)
        cand = _capture(candidate, batch, loc.order)
        alone = _per_sample(reference, batch, loc.order)
        loc.add(batch, ref, cand, alone)
    return loc.result(time.perf_counter() - start, len(samples))


__all__ = ["localize", "Localizer", "ModuleDrift"]
