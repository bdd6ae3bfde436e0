"""Kernels for calibration runs: replay recorded outputs, or run another kernel in other batches.

`promote calibrate` checks one contract against many candidates (the honest one, legitimate-noise
variants, each fault). The reference's outputs do not change between them, so ``ReplayKernel``
records them on the first run and replays them after; the honest candidate's outputs are reused the
same way under output faults (temperature, noise, cast logits) and reference-side variants. A
batch is replayed only when exactly that batch (the same sample ids in the same order) was
recorded: a noise floor's sub-batches, or a different batching, still run the real kernel; only
inside ``assembling`` (--derive's runs on its calibration and held-out splits, which never perturb a
kernel) is a batch of recorded samples put together from their recorded rows instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from promote.data import Batch, TensorBatch
from promote.engine.passes import perturbed_logits
from promote.errors import UsageError
from promote.kernels.base import Kernel, Outputs, WrappedKernel


class ReplayKernel(WrappedKernel):
    """The inner kernel, with each distinct batch computed once and replayed afterwards."""

    def __init__(self, inner: Kernel) -> None:
        super().__init__(inner)
        self.store: dict[tuple[str, ...], Outputs] = {}
        self.rows: dict[str, np.ndarray] = {}  # sample id → its recorded logits [length, V] (a view)
        self.replayed = 0
        self.assemble = False

    def _run_impl(self, batch: Batch | TensorBatch) -> Outputs:
        key = tuple(s.id for s in _causal_lm(batch).samples)
        if key in self.store:
            self.replayed += 1
            return self.store[key]
        if self.assemble and all(k in self.rows for k in key):
            self.replayed += 1
            return self._assembled(batch)
        out = self.inner.run(batch).on_host()  # kept for replay: host memory, and rows for rebatching
        self.store[key] = out
        if out.logits is not None and out.mask is None and out.topk_ids is None and out.target_logprobs is None:
            for row, sample in enumerate(batch.samples):
                self.rows[sample.id] = out.logits[row, : len(sample.input_ids)]
        return out

    def _assembled(self, batch: Batch) -> Outputs:
        first = self.rows[batch.samples[0].id]
        logits = np.zeros((*batch.input_ids.shape, first.shape[-1]), dtype=first.dtype)
        for row, sample in enumerate(batch.samples):
            recorded = self.rows[sample.id]
            logits[row, : recorded.shape[0]] = recorded
        return Outputs(logits=logits)


@contextlib.contextmanager
def assembling(*kernels: ReplayKernel) -> Iterator[None]:
    """Within: a batch of recorded samples is put together from their recorded rows (no kernel runs).
    Only for runs that perturb no kernel (a noise floor's sub-batches must run)."""
    for kernel in kernels:
        kernel.assemble = True
    try:
        yield
    finally:
        for kernel in kernels:
            kernel.assemble = False


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
