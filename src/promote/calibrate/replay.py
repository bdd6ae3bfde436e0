"""Kernels for calibration runs: replay recorded outputs, or run another kernel in other batches.

`promote calibrate` checks one contract against many candidates (the honest one, legitimate-noise
variants, each fault). The reference's outputs do not change between them, so ``ReplayKernel``
records them on the first run and replays them after; the honest candidate's outputs are reused the
same way under output faults (temperature, noise, cast logits) and reference-side variants. A
batch is replayed only when exactly that batch (the same sample ids in the same order) was
recorded: a noise floor's sub-batches, or a different batching, still run the real kernel.
"""

from __future__ import annotations

from typing import Any

from promote.data import Batch, TensorBatch
from promote.engine.passes import perturbed_logits
from promote.errors import UsageError
from promote.kernels.base import Kernel, Outputs, WrappedKernel


class ReplayKernel(WrappedKernel):
    """The inner kernel, with each distinct batch computed once and replayed afterwards."""

    def __init__(self, inner: Kernel) -> None:
        super().__init__(inner)
        self.store: dict[tuple[str, ...], Outputs] = {}
        self.replayed = 0

    def _run_impl(self, batch: Batch | TensorBatch) -> Outputs:
        key = tuple(s.id for s in _causal_lm(batch).samples)
        if key in self.store:
            self.replayed += 1
            return self.store[key]
        out = self.inner.run(batch)
        self.store[key] = out
        return out


class RebatchKernel(WrappedKernel):
    """The inner kernel run on sub-batches of ``size`` (1: each sample alone): batch-size noise."""

    def __init__(self, inner: Kernel, size: int) -> None:
        super().__init__(inner)
        self.size = size

    def describe(self) -> str:
        return f"{self.inner.describe()}, batches of {self.size}"

    def _run_impl(self, batch: Batch | TensorBatch) -> Outputs:
        kind = "batch_size" if self.size == 1 else "odd_batch"
        return Outputs(logits=perturbed_logits(self.inner, _causal_lm(batch), kind, odd_batch_size=self.size))

    def _fingerprint_impl(self) -> dict[str, Any]:
        return {**super()._fingerprint_impl(), "rebatch": self.size}


def _causal_lm(batch: Batch | TensorBatch) -> Batch:
    if not isinstance(batch, Batch):
        raise UsageError("promote calibrate supports `data.task: causal-lm` only")
    return batch
