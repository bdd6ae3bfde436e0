"""The noise floor: the reference kernel against itself under legitimate perturbations.

A candidate's drift means little without it: fp32 batch-size noise gives per-token KL ~1e-12, so a
candidate at 1e-12 is as good as the reference gets, while one at 1e-4 is bf16-grade. Perturbations
(docs/metrics.md "Noise floor"): ``rerun`` (the same batches again: nondeterminism), ``batch_size`` (each sample
alone, batch 1 vs N), ``odd_batch`` (batches of an odd size: different padding and blocking).
The engine feeds them from the one offline pass (``engine.passes.kernel_pass(..., floors=...)``,
driven by ``stages/offline.py``): each batch's batch-N logits of the main pass are compared with one
extra perturbed run of the floored kernel, so each perturbation costs one extra run of that kernel
(the reference by default), never a second main pass. This module only keeps the
per-perturbation summaries (mergeable, like every consumer) and reads the floor off them.
"""

from __future__ import annotations

import math
from typing import Any

from promote.contract.numerical import NoiseFloorSpec
from promote.engine.accumulate import NumericsAccumulator
from promote.engine.passes import Floor
from promote.metrics.summary import STAT_NAMES
from promote.vocabulary import DIVERGENCE_METRICS

FLOOR_METRICS = DIVERGENCE_METRICS  # only these have a floor a ratio can be taken against


def floor_name(kernel: str, kind: str) -> str:
    """The reference's floors keep the perturbation's name; the candidate's are `candidate:KIND`."""
    return kind if kernel == "reference" else f"{kernel}:{kind}"


class NoiseFloor:
    """Per floored kernel and perturbation, a NumericsAccumulator of that kernel against itself."""

    def __init__(self, spec: NoiseFloorSpec) -> None:
        self.spec = spec
        self.accumulators = {floor_name(k, kind): NumericsAccumulator(FLOOR_METRICS)
                             for k in spec.kernels for kind in spec.perturb}
        self.cached = False  # True when the summaries came from the floor cache (no extra pass ran)

    @classmethod
    def of(cls, spec: NoiseFloorSpec, accumulators: dict[str, NumericsAccumulator]) -> NoiseFloor:
        """A floor over existing accumulators (the states of a pass, or of merged shards)."""
        floor = cls.__new__(cls)
        floor.spec, floor.accumulators, floor.cached = spec, dict(accumulators), False
        return floor

    def floors(self) -> list[Floor]:
        """The comparisons the engine runs: one per kernel and perturbation, each feeding its accumulator."""
        return [Floor(kind, self.accumulators[floor_name(k, kind)], odd_batch_size=self.spec.odd_batch_size, kernel=k)
                for k in self.spec.kernels for kind in self.spec.perturb]

    def merge(self, other: NoiseFloor) -> NoiseFloor:
        """Fold another shard's floor summaries into this one (per perturbation); returns self."""
        for kind, acc in self.accumulators.items():
            acc.merge(other.accumulators[kind])
        return self

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
            "kernels": list(self.spec.kernels),
            "cached": self.cached,
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
