"""The identity check in the run loop (docs/identity.md): before any metric, for every kernel kind.

- offline stages (``stages/offline.py``): ``hook`` is the offline pass's ``before``: it sees the first
  batch both kernels ran, before anything is scored; a kernel that sees a mismatch itself while running
  (``kernels.base.IdentityEvidence``) is turned into the same finding (``from_evidence``);
- a live stage that runs the kernels (runtime) with no offline stage before it: ``live`` runs the checks
  that need no probe (fingerprints, declared vocabularies, `identity.same`) once.

An invalid result raises ``IdentityInvalid`` in the pass and makes every stage it would have fed
``invalid`` (not judged, with why); the result itself is ``ctx.identity`` (the report's ``identity``).
"""

from __future__ import annotations

from collections.abc import Mapping

from promote.data import Batch
from promote.engine.passes import Before
from promote.errors import EvaluationError
from promote.findings import IdentityInvalid
from promote.identity.result import IdentityResult
from promote.identity.runner import identify
from promote.kernels.base import IdentityEvidence, Kernel, Outputs
from promote.results import NOT_JUDGED_INVALID, StageResult
from promote.stages.context import StageContext


def _task(ctx: StageContext) -> str:
    return ctx.contract.data.task if ctx.contract.data is not None else "causal-lm"


def _metrics(ctx: StageContext) -> frozenset[str]:
    """Every clause metric of the contract (value_semantics asks whether `logit_drift` is gated on)."""
    return frozenset(str(c.metric) for section in ctx.contract.present()
                     for c in getattr(ctx.contract.spec(section), "clauses", ()) if hasattr(c, "metric"))


def _record(ctx: StageContext, result: IdentityResult) -> IdentityResult:
    ctx.identity = result if ctx.identity is None else ctx.identity.merged(result)
    return ctx.identity


def hook(ctx: StageContext, kernels: Mapping[str, Kernel]) -> Before:
    """The offline pass's ``before``: the identity of the first batch; raises ``IdentityInvalid``."""
    def before(batch: Batch, reference: Outputs, candidate: Outputs) -> int | None:
        result = identify(ctx.contract.identity, _task(ctx), ctx.evalset, kernels, probe=batch,
                          outputs={"reference": reference, "candidate": candidate}, metrics=_metrics(ctx))
        _record(ctx, result)
        if result.invalid:
            raise IdentityInvalid(result.findings)
        return result.scored_vocab

    return before


def static(ctx: StageContext, kernels: Mapping[str, Kernel]) -> IdentityResult:
    """The checks that need no probe (a live stage, ``task: tensor``); raises nothing."""
    evalset = ctx.evalset if ctx.contract.data is not None and ctx.evalset_loaded is not None else None
    return _record(ctx, identify(ctx.contract.identity, _task(ctx), evalset, kernels, metrics=_metrics(ctx)))


def from_evidence(ctx: StageContext, kernels: Mapping[str, Kernel], exc: IdentityEvidence) -> IdentityInvalid:
    """What a kernel saw while running, as the run's identity result; the error to raise."""
    evalset = ctx.evalset_loaded
    result = _record(ctx, identify(ctx.contract.identity, _task(ctx), evalset, kernels, evidence=[exc],
                                   metrics=_metrics(ctx)))
    return IdentityInvalid(result.findings)


def not_judged(ctx: StageContext, stage: str) -> StageResult:
    """A stage of an invalid run: every clause ``invalid`` (not judged), with why."""
    findings = [f for f in (ctx.identity.findings if ctx.identity else []) if f.severity == "invalid"]
    why = f"{NOT_JUDGED_INVALID}: {findings[0].message}" if findings else NOT_JUDGED_INVALID
    return ctx.blanket(stage, "invalid", why)


def live(ctx: StageContext, stage: str) -> StageResult | None:
    """Before a live stage that runs the kernels: the identity (once; without a probe when no offline
    stage ran); the stage's not-judged result when the run is invalid, else None (run it)."""
    if ctx.identity is None:
        try:
            kernels = ctx.kernels()
        except EvaluationError:
            return None  # a kernel that cannot open: the stage reports that itself (`error`)
        static(ctx, dict(zip(("reference", "candidate"), kernels, strict=True)))
    return not_judged(ctx, stage) if ctx.identity is not None and ctx.identity.invalid else None
