"""The kernel-pass engine: drive kernels over the eval set and feed consumers.

One place owns batching (right-padded, file order), masks (a kernel's ``mask`` narrows the scored
positions), progress and timing; stages only declare consumers and judge their state afterwards.

- ``kernel_pass``: reference and candidate batch by batch; each batch is scored once
  (``engine/scoring.py``) and handed to every consumer. Kernels run once per batch however many
  stages use the outputs, and only consumer state outlives a batch.
- floors: the noise floor is the reference (or candidate) against itself under a legitimate
  perturbation (``rerun``, ``batch_size`` 1 vs N, ``odd_batch``), scored like any pair and fed to that
  perturbation's consumer. It has no pass of its own: ``kernel_pass(..., floors=...)`` compares the
  kernel's batch-N outputs of the main pass with one extra perturbed run of that kernel per batch, so
  the batch-N outputs are computed once and no floor ever costs a candidate run unless the candidate's
  own floor is asked for. Consumers never run kernels.
- ``before``: the identity check (``identity/runner.py``), called with the first batch and both sides'
  outputs before anything is scored; it raises to stop the pass (an ``invalid`` run is never scored)
  or returns the vocabulary to score over (padded rows excluded), applied to every batch and floor.
- ``samples``: run over a subset (a shard) of the eval set; consumers' states from shards merge
  (``state.Mergeable``) into the state of one pass over the whole set. Shards must be cut at batch
  boundaries, as batch composition can change a kernel's numerics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from promote.data import Batch, EvalSet, Sample, TensorBatch, batches, tensor_batches
from promote.engine.scoring import ScoredBatch, score_batch, score_outputs
from promote.kernels.base import Kernel, Outputs

Progress = Callable[[int, int], None]
#: The identity hook: (first batch, reference outputs, candidate outputs) → vocabulary to score over.
Before = Callable[[Batch, Outputs, Outputs], "int | None"]


def trimmed(outputs: Outputs, vocab: int | None) -> Outputs:
    """``outputs`` with logits narrowed to the first ``vocab`` ids (padded rows excluded); unchanged
    for ``None`` or outputs without full logits."""
    if vocab is None or outputs.logits is None or outputs.logits.shape[-1] <= vocab:
        return outputs
    return replace(outputs, logits=outputs.logits[..., :vocab])


class Consumer(Protocol):
    """Anything fed scored batches: ``update(scored)``; its state merges across shards."""

    def update(self, scored: ScoredBatch) -> None: ...


@dataclass(frozen=True)
class Floor:
    """One noise-floor comparison: a perturbation of the reference and the consumer of its scores."""

    kind: str  # rerun | batch_size | odd_batch
    consumer: Consumer
    odd_batch_size: int = 3
    kernel: str = "reference"  # whose own noise: "reference" or "candidate"


def perturbed_logits(kernel: Kernel, batch: Batch, kind: str, *, odd_batch_size: int) -> Any:
    """The kernel's logits for ``batch`` computed under perturbation ``kind``, shaped like the batch (numpy, or a
    torch tensor on the kernel's device when the kernel gives tensors)."""
    if kind == "rerun":
        return kernel.run(batch).logits
    size = 1 if kind == "batch_size" else odd_batch_size
    out: Any = None
    start = 0
    for sub in batches(batch.samples, size):
        logits = kernel.run(sub).logits
        if out is None:
            shape = (*batch.input_ids.shape, logits.shape[-1])
            out = (np.zeros(shape, dtype=logits.dtype) if isinstance(logits, np.ndarray)
                   else logits.new_zeros(shape))
        out[start : start + len(sub.samples), : logits.shape[1]] = logits
        start += len(sub.samples)
    assert out is not None
    return out


def _feed_floors(floors: Sequence[Floor], kernels: dict[str, Kernel], batch: Batch, bases: dict[str, Outputs], *,
                 tie_margin: float, vocab: int | None = None) -> None:
    for floor in floors:
        kernel, base = kernels[floor.kernel], bases[floor.kernel]
        mask = batch.scored_mask() if base.mask is None else batch.scored_mask() & base.mask
        other = perturbed_logits(kernel, batch, floor.kind, odd_batch_size=floor.odd_batch_size)
        other = other if vocab is None else other[..., :vocab]
        floor.consumer.update(score_batch(batch, base.logits, other, tie_margin=tie_margin, mask=mask,
                                          chunk=base.chunk))


def _samples(evalset: EvalSet, samples: Sequence[Sample] | None) -> tuple[Sample, ...]:
    return tuple(evalset.samples if samples is None else samples)


def kernel_pass(evalset: EvalSet, reference: Kernel, candidate: Kernel, consumers: Sequence[Consumer], *,
                tie_margin: float, floors: Sequence[Floor] = (), progress: Progress | None = None,
                samples: Sequence[Sample] | None = None, before: Before | None = None) -> float:
    """Run both kernels batch by batch over ``samples`` (default: the whole set); returns seconds.
    ``before`` (the identity check) sees the first batch's outputs before any is scored."""
    start = time.perf_counter()
    chosen = _samples(evalset, samples)
    batch_size = min(reference.spec.batch_size, candidate.spec.batch_size)
    reference.bind(evalset)
    candidate.bind(evalset)
    labels = (reference.label, candidate.label)
    done, vocab = 0, None
    for index, batch in enumerate(batches(chosen, batch_size)):
        ref_out = reference.run(batch)
        cand_out = candidate.run(batch)
        if before is not None and index == 0:
            vocab = before(batch, ref_out, cand_out)
        ref_out, cand_out = trimmed(ref_out, vocab), trimmed(cand_out, vocab)
        scored = score_outputs(batch, ref_out, cand_out, tie_margin=tie_margin, labels=labels)
        for consumer in consumers:
            consumer.update(scored)
        if floors:
            _feed_floors(floors, {"reference": reference, "candidate": candidate}, batch,
                         {"reference": ref_out, "candidate": cand_out}, tie_margin=tie_margin, vocab=vocab)
        # Let this batch's outputs go before the next forward: otherwise both batches' [B, T, V] logits are
        # alive while it runs (at V = 151 936 and batch 4 × 128, ~0.45 GB more at the peak).
        del ref_out, cand_out, scored
        done += len(batch.samples)
        if progress:
            progress(done, len(chosen))
    return time.perf_counter() - start


def tensor_pass(evalset: EvalSet, reference: Kernel, candidate: Kernel,
                update: Callable[[TensorBatch, Outputs, Outputs], None], *, progress: Progress | None = None,
                samples: Sequence[Sample] | None = None) -> float:
    """`task: tensor`: stacked same-signature batches through both kernels, outputs to ``update``;
    ``samples`` (a shard: whole batches, ``data.tensors.tensor_batch_groups``) default to the set."""
    start = time.perf_counter()
    batch_size = min(reference.spec.batch_size, candidate.spec.batch_size)
    chosen = _samples(evalset, samples)
    done = 0
    for batch in tensor_batches(evalset, batch_size, chosen):
        update(batch, reference.run(batch), candidate.run(batch))
        done += batch.size
        if progress:
            progress(done, len(chosen))
    return time.perf_counter() - start
