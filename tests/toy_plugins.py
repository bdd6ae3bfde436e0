"""A toy offline stage and a toy kernel kind, plugged into promote's registries from the tests folder
without editing ``src/`` (issue 21): importing this module registers both, the way a third-party
package would (``sections.register``, ``contract.kinds.KINDS``, ``kernels.register_kind``,
``registry.plugin`` so Ray actors import it too).

- kernel kind ``toy``: a seeded bigram model in numpy, ``logits[b, t] = W[input_ids[b, t]]``, with
  ``perturb`` adding seeded noise of that size to ``W`` (the candidate's drift);
- stage ``toy`` (section ``toy``): its own consumer, the squared gap between the two kernels' target
  log-probabilities (exact sums: shards merge bit for bit), and its own clause ``{id, max}`` on the mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from promote import registry, sections
from promote.contract.kinds import KINDS, RERUN, KernelKind
from promote.kernels import KERNEL_KINDS, register_kind
from promote.kernels.base import Kernel, Outputs
from promote.results import Bound, ClauseResult, StageResult, worst_status
from promote.stages.api import OfflineStage
from promote.state import ExactSum, Field, Mergeable

# --- the kernel kind -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ToyKernelSpec:
    kind: str
    vocab: int = 256
    seed: int = 0
    perturb: float = 0.0
    batch_size: int = 8
    inject: tuple = field(default=())

    def summary(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocab": self.vocab, "seed": self.seed, "perturb": self.perturb,
                "batch_size": self.batch_size}


def parse_toy_kernel(doc: Any, role: str, raw: dict[str, Any], problems: list) -> ToyKernelSpec:
    return ToyKernelSpec(kind="toy", vocab=raw.get("vocab", 256), seed=raw.get("seed", 0),
                         perturb=float(raw.get("perturb", 0.0)), batch_size=raw.get("batch_size", 8))


KERNEL_SCHEMA = {
    "type": "object", "additionalProperties": False, "description": "A seeded numpy bigram model (tests).",
    "properties": {"kind": {"const": "toy"}, "vocab": {"type": "integer", "minimum": 2, "maximum": 4096},
                   "seed": {"type": "integer", "minimum": 0}, "perturb": {"type": "number", "minimum": 0},
                   "batch_size": {"type": "integer", "minimum": 1, "maximum": 1024}},
}


class ToyKernel(Kernel):
    kind = "toy"

    def _open_impl(self) -> None:
        rng = np.random.default_rng(self.spec.seed)
        self.table = rng.standard_normal((self.spec.vocab, self.spec.vocab)).astype(np.float32)
        if self.spec.perturb:
            noise = np.random.default_rng(self.spec.seed + 1).standard_normal(self.table.shape)
            self.table = (self.table + self.spec.perturb * noise).astype(np.float32)

    def _run_impl(self, batch: Any) -> Outputs:
        return Outputs(logits=self.table[np.asarray(batch.input_ids) % self.spec.vocab])

    def _fingerprint_impl(self) -> dict[str, Any]:
        return {"numpy": np.__version__}


# --- the offline stage ---------------------------------------------------------------------------


class TargetGap(Mergeable):
    """Σ (log p_ref(target) − log p_cand(target))² over scored positions, and their count."""

    KIND: ClassVar[str] = "toy-target-gap"
    STATE: ClassVar[tuple[Field, ...]] = (Field("count", int, "sum"), Field("total", ExactSum, "exact_sum"),
                                          Field("worst", float, "max"))

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.worst = 0.0

    def update(self, scored: Any) -> None:
        def target_logprob(logits: np.ndarray) -> np.ndarray:
            z = logits.astype(np.float64)
            z = z - z.max(axis=-1, keepdims=True)
            return z[np.arange(len(z)), scored.targets] - np.log(np.exp(z).sum(axis=-1))

        gap = (target_logprob(scored.ref_logits) - target_logprob(scored.cand_logits)) ** 2
        self.count += int(gap.size)
        for value in gap:
            self.total.add(float(value))
        self.worst = max(self.worst, float(gap.max(initial=0.0)))


@dataclass(frozen=True)
class ToyClause:
    id: str
    max: float
    line: int | None


@dataclass(frozen=True)
class ToySection:
    clauses: tuple[ToyClause, ...]


SECTION_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["clauses"],
    "description": "Toy stage (tests): mean squared target log-prob gap.",
    "properties": {"clauses": {"type": "array", "minItems": 1, "items": {
        "type": "object", "additionalProperties": False, "required": ["id", "max"],
        "properties": {"id": {"type": "string"}, "max": {"type": "number", "minimum": 0}}}}},
}


class ToyStage(OfflineStage):
    name = "toy"

    def parse(self, doc: Any, raw: Any, problems: list, parts: Any) -> ToySection:
        return ToySection(tuple(ToyClause(c["id"], float(c["max"]), doc.locate(("toy", "clauses", i))[0])
                                for i, c in enumerate(raw["clauses"])))

    def schema(self) -> dict[str, Any]:
        return SECTION_SCHEMA

    def consumers(self, ctx: Any) -> dict[str, Any]:
        return {"gap": TargetGap()}

    def judge(self, ctx: Any, states: dict[str, Any], record: Any) -> StageResult:
        gap = states["gap"]
        mean = gap.total.value / gap.count if gap.count else math.nan
        clauses = []
        for clause in ctx.contract.sections["toy"].clauses:
            base = dict(id=clause.id, stage="toy", metric="target_gap", stat="mean", line=clause.line,
                        bounds=[Bound("max", clause.max)])
            if not gap.count:
                clauses.append(ClauseResult(status="vacuous", message="no scored position", **base))
                continue
            status = "pass" if mean <= clause.max else "fail"
            clauses.append(ClauseResult(status=status, observed=mean, message=f"mean(target_gap) = {mean:.6g}",
                                        **base))
        return StageResult(name="toy", status=worst_status([c.status for c in clauses]), clauses=clauses,
                           duration_s=record.seconds, notes=[],
                           details={"positions": gap.count, "worst": gap.worst, "mean": mean})


def register() -> None:
    """Plug both in (idempotent: importing the module twice registers once)."""
    if "toy" not in sections.STAGES:
        sections.register(sections.StageDecl("toy", "toy", "Toy stage (tests)", needs_evalset=True,
                                             needs_kernels=True, offline=True, plugin=ToyStage()))
    if "toy" not in KINDS:
        KINDS.register("toy", KernelKind(parse_toy_kernel, frozenset({RERUN}), KERNEL_SCHEMA, "a toy bigram model"))
    if "toy" not in KERNEL_KINDS:
        register_kind("toy")(lambda spec, role: ToyKernel(spec, role=role))
    registry.plugin(__name__)


def unregister() -> None:
    """Take both out again (a test's teardown), so later tests see the built-ins only."""
    sections.STAGES.unregister("toy")
    KINDS.unregister("toy")
    KERNEL_KINDS.unregister("toy")
    if __name__ in registry.PLUGINS:
        registry.PLUGINS.remove(__name__)


register()
