"""The noise floor: the reference kernel against itself under legitimate perturbations.

A candidate's drift means little without it: fp32 batch-size noise gives per-token KL ~1e-12, so a
candidate at 1e-12 is as good as the reference gets, while one at 1e-4 is bf16-grade. Perturbations
(DESIGN.md §5): ``rerun`` (the same batches again: nondeterminism), ``batch_size`` (each sample
alone, batch 1 vs N), ``odd_batch`` (batches of an odd size: different padding and blocking).
They ride on the main pass — the reference's batch-N logits are already there — so each costs one
extra reference run, never a second candidate run.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from promote.contract.model import NoiseFloorSpec
from promote.data import Batch, batches
from promote.kernels.base import Kernel
from promote.metrics.distribution import DIVERGENCE_METRICS, token_metrics
from promote.metrics.summary import STAT_NAMES
from promote.stages.comparison import NumericsAccumulator, ScoredBatch

FLOOR_METRICS = DIVERGENCE_METRICS  # only these have a floor a ratio can be taken against


def perturbed_logits(kernel: Kernel, batch: Batch, kind: str, *, odd_batch_size: int) -> np.ndarray:
    """The kernel's logits for ``batch`` computed under perturbation ``kind``, shaped like the batch."""
    if kind == "rerun":
        return kernel.run(batch).logits
    size = 1 if kind == "batch_size" else odd_batch_size
    out: np.ndarray | None = None
    start = 0
    for sub in batches(batch.samples, size):
        logits = kernel.run(sub).logits
        if out is None:
            out = np.zeros((*batch.input_ids.shape, logits.shape[-1]), dtype=logits.dtype)
        out[start : start + len(sub.samples), : logits.shape[1]] = logits
        start += len(sub.samples)
    assert out is not None
    return out


class NoiseFloor:
    """A consumer of the main pass: per perturbation, a NumericsAccumulator of reference vs itself."""

    def __init__(self, reference: Kernel, spec: NoiseFloorSpec, *, tie_margin: float) -> None:
        self.reference = reference
        self.spec = spec
        self.tie_margin = tie_margin
        self.accumulators = {kind: NumericsAccumulator(FLOOR_METRICS) for kind in spec.perturb}

    def __call__(self, scored: ScoredBatch) -> None:
        for kind, acc in self.accumulators.items():
            other = perturbed_logits(self.reference, scored.batch, kind, odd_batch_size=self.spec.odd_batch_size)
            other = other[scored.rows, scored.cols]
            values = token_metrics(scored.ref_logits, other, scored.targets, tie_margin=self.tie_margin)
            acc(ScoredBatch(scored.batch, scored.rows, scored.cols, scored.targets, scored.ref_logits, other, values))

    def floor(self, metric: str, stat: str) -> float:
        """Largest value of ``stat(metric)`` over the perturbations (NaN if the metric has no floor)."""
        if metric not in FLOOR_METRICS:
            return math.nan
        return max(acc.summaries[metric].stat(stat) for acc in self.accumulators.values())

    def describe(self) -> dict[str, Any]:
        per_kind = {
            kind: {m: {s: _json_number(acc.summaries[m].stat(s)) for s in STAT_NAMES} for m in FLOOR_METRICS}
            for kind, acc in self.accumulators.items()
        }
        return {
            "perturbations": list(self.accumulators),
            "per_perturbation": per_kind,
            "floor": {m: {s: _json_number(self.floor(m, s)) for s in STAT_NAMES} for m in FLOOR_METRICS},
        }

    def notes(self) -> list[str]:
        out = []
        for kind, acc in self.accumulators.items():
            worst = acc.summaries["logit_drift"].stat("max")
            if worst == 0:
                out.append(f"noise floor `{kind}`: the reference is bitwise reproducible (floor exactly 0)")
            else:
                out.append(f"noise floor `{kind}`: max logit drift {worst:.3g}, mean KL "
                           f"{acc.summaries['kl'].stat('mean'):.3g}")
        return out


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None
