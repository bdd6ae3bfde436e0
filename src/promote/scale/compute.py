"""One shard of the offline pass: the numerics and slice consumers fed with the shard's batches only.

Used by ``promote check --shard I/N`` and by each Ray actor, so both produce the same partial. The
consumers are exactly those of the single-process pass (``stages.offline``); only the samples
differ, cut at the single run's batch boundaries (``split.py``), so the merged state is the
single-process state. A kernel that crashes is recorded in the partial (``error``): the merged
report then marks the offline stages ``error`` (exit 3), as a single run would.
"""

from __future__ import annotations

import time

from promote.contract.model import Contract
from promote.data import EvalSet
from promote.engine.passes import Consumer, kernel_pass
from promote.errors import EvaluationError, UsageError
from promote.redact import redact_message
from promote.scale.partial import Partial
from promote.scale.split import content_digest, ids_digest, kernel_files, shard_samples
from promote.stages.context import StageContext
from promote.stages.offline import OFFLINE


def offline_stages(contract: Contract, wanted: frozenset[str] | set[str]) -> list[str]:
    """The shared-pass stages a shard computes, in run order; usage error for what cannot be sharded."""
    stages = [s for s in OFFLINE if s in wanted]
    if stages and contract.data.task != "causal-lm":
        raise UsageError(f"{contract.source.display_path}: sharded runs (--shard, --engine ray) support "
                         f"`data.task: causal-lm` only in this version, not `{contract.data.task}`; run "
                         "`promote check` without them")
    return stages


def batch_size(contract: Contract) -> int:
    """The single run's batch size, which the split is cut at (``engine.passes.kernel_pass``)."""
    return min(contract.reference.batch_size, contract.candidate.batch_size)


def input_files(contract: Contract) -> dict[str, str]:
    """Digests of the model and weights files both kernels name (``split.kernel_files``)."""
    return kernel_files([(role, getattr(contract, role)) for role in ("reference", "candidate")])


def describe(contract: Contract, evalset: EvalSet, index: int, count: int, stages: list[str], *,
             files: dict[str, str] | None = None, content: str | None = None) -> Partial:
    """An empty partial for shard ``index`` of ``count``: who it belongs to, which samples it holds, and
    the digests of the eval set's content and the kernels' files (``files``/``content``: computed once
    by a caller describing many shards)."""
    size = batch_size(contract)
    chosen = shard_samples(evalset.samples, size, index, count)
    return Partial(
        contract={"path": str(contract.path.resolve()), "display": contract.source.display_path,
                  "sha256": contract.sha256, "raw_sha256": contract.raw_sha256, "name": contract.name},
        kernels={}, shard={"index": index, "count": count, "batch_size": size},
        evalset={"samples": len(evalset.samples), "ids_sha256": ids_digest([s.id for s in evalset.samples]),
                 "content_sha256": content or content_digest(evalset.samples)},
        sample_ids=[s.id for s in chosen], stages=stages, files=input_files(contract) if files is None else files)


def compute_partial(ctx: StageContext, index: int, count: int) -> Partial:
    """Run shard ``index`` of ``count`` through both kernels (``ctx``'s, built or injected)."""
    contract, evalset = ctx.contract, ctx.evalset
    stages = offline_stages(contract, ctx.wanted)
    partial = describe(contract, evalset, index, count, stages)
    chosen = shard_samples(evalset.samples, partial.shard["batch_size"], index, count)
    consumers: list[Consumer] = []
    acc = floor = collector = None
    if "slices" in stages:
        from promote.stages.slices import prepare as prepare_slices

        collector = prepare_slices(contract, evalset)
        consumers.append(collector)
    spec = contract.numerical
    if "numerics" in stages:
        from promote.stages.numerics import prepare

        acc, floor = prepare(spec)
        consumers.insert(0, acc)
    start = time.perf_counter()
    try:
        reference, candidate = ctx.kernels()
        before = (reference.seconds, candidate.seconds)  # an actor keeps its kernels open across shards
        partial.kernels = dict(ctx.fingerprints)
        if consumers:
            tie_margin = spec.tie_margin if spec else 1e-3
            kernel_pass(evalset, reference, candidate, consumers, tie_margin=tie_margin,
                        floors=floor.floors() if floor else (), progress=ctx.progress, samples=chosen)
        if acc is not None and spec.localize and index == 0:  # the first samples of the set live in shard 0
            from promote.stages.localize import localize

            partial.localize = localize(evalset, reference, candidate, factor=spec.localize.factor,
                                        max_samples=spec.localize.max_samples, batch_size=batch_size(contract))
    except EvaluationError as exc:
        partial.error = redact_message(exc.format_message())
        return partial
    partial.kernel_seconds = {"reference": reference.seconds - before[0], "candidate": candidate.seconds - before[1],
                              "pass": time.perf_counter() - start}
    partial.notes = [*reference.notes, *candidate.notes]
    if acc is not None:
        partial.states["numerics"] = acc.to_bytes()
    if floor is not None:
        partial.states.update({f"floor:{kind}": a.to_bytes() for kind, a in floor.accumulators.items()})
    if collector is not None:
        partial.states["slices"] = collector.to_bytes()
    return partial
