"""The offline loop across processes: one shard's states as a partial (``promote check --shard``, each
Ray actor), and the fold of every shard's states into the states one process would have
(``promote merge``, ``--engine ray``), judged by the same judges (``stages/offline.py``).

A state a stage loaded rather than computed (a cached noise floor) is counted once: it is taken from
the shard holding the eval set's first samples, which is the only one that loads it; shards that
disagree about it are an error, never a double count. A kernel that crashes is recorded in the
partial (``error``): the merged report then marks the offline stages ``error`` (exit 3), as a single
run would. Each shard runs the identity check on its own first batch and ships the result
(``identity``); one invalid shard makes the merged offline stages ``invalid``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from promote.errors import EvaluationError, UsageError
from promote.findings import IdentityInvalid
from promote.identity.result import IdentityResult
from promote.redact import redact_message
from promote.registry import PLUGINS, load_plugins
from promote.scale.compute import describe, shard_of
from promote.scale.merge import check_against, check_partials, load_state, merged_notes, summed_seconds
from promote.scale.partial import Partial
from promote.stages.api import PassRecord
from promote.stages.context import StageContext
from promote.stages.offline import (
    PassOutcome,
    Thunk,
    build_consumers,
    errors,
    implementation,
    judged,
    run_pass,
    state_of,
    wanted_offline,
)


def shard_stages(wanted: Sequence[str] | set[str] | frozenset[str]) -> list[str]:
    """The offline stages a shard of a run with ``wanted`` stages computes, in run order."""
    return wanted_offline(wanted)


def compute_partial(ctx: StageContext, index: int, count: int) -> Partial:
    """Run shard ``index`` of ``count`` through both kernels (``ctx``'s, built or injected)."""
    contract, evalset = ctx.contract, ctx.evalset
    names = shard_stages(ctx.wanted)
    partial = describe(contract, evalset, index, count, names)
    consumers = build_consumers(ctx, names)
    start = time.perf_counter()
    try:
        outcome = run_pass(ctx, names, consumers, samples=shard_of(contract, evalset, index, count),
                           first=index == 0)
    except EvaluationError as exc:  # IdentityInvalid too: `identity` says which
        if all(v is not None for v in ctx.fingerprints.values()):  # both opened before the crash
            partial.kernels = dict(ctx.fingerprints)
        partial.error = redact_message(exc.format_message())
        partial.identity = ctx.identity.to_dict() if isinstance(exc, IdentityInvalid) and ctx.identity else None
        return partial
    partial.kernels = dict(ctx.fingerprints)
    partial.identity = ctx.identity.to_dict() if ctx.identity else None
    record = next(iter(outcome.records.values()), PassRecord())
    partial.kernel_seconds = {**record.kernel_seconds, "pass": time.perf_counter() - start}
    partial.notes = list(record.notes)
    for name in names:
        partial.states[name] = {key: state_of(c).to_bytes() for key, c in consumers[name].items()}
        partial.extras[name] = outcome.records[name].extras
        partial.loaded[name] = list(outcome.records[name].loaded)
    return partial


def from_partials(ctx: StageContext, partials: Sequence[tuple[str, Partial]]) -> dict[str, Thunk]:
    """The offline stages' results from the partials, as ``stages.offline`` caches them (stage → thunk)."""
    check_partials(partials)
    check_against(ctx.contract, ctx.evalset, partials)
    ordered = sorted(partials, key=lambda wp: wp[1].shard["index"])
    names = list(ordered[0][1].stages)
    unknown = [n for n in names if n not in wanted_offline(names)]
    if unknown:
        raise UsageError(f"{ordered[0][0]}: the partial holds stage `{unknown[0]}`, which is not an offline stage of "
                         "this promote; recompute the shards with it")
    for _, partial in ordered:
        if partial.identity is not None:
            result = IdentityResult.from_dict(partial.identity)
            ctx.identity = result if ctx.identity is None else ctx.identity.merged(result)
    if ctx.identity is not None and ctx.identity.invalid:
        from promote.stages.offline import invalid

        return invalid(ctx, names)
    failed = [(w, p) for w, p in ordered if p.error is not None]
    if failed:
        return errors(ctx, names, f"shard {failed[0][1].label}: {failed[0][1].error}")
    ctx.fingerprints.update(ordered[0][1].kernels)
    outcome = fold(ctx, ordered, names)
    for name in names:
        why = implementation(name).covered(ctx, {k: state_of(c) for k, c in outcome.consumers[name].items()})
        if why:
            raise EvaluationError(why)
    return judged(ctx, outcome)


def fold(ctx: StageContext, pairs: Sequence[tuple[str, Partial]], names: list[str]) -> PassOutcome:
    """Every shard's states merged (a loaded state from the first shard only), with the merged record."""
    partials = [p for _, p in pairs]
    consumers = build_consumers(ctx, names)
    seconds, kernel_seconds = summed_seconds(partials)
    records = {}
    for position, name in enumerate(names):
        loaded = tuple(partials[0].loaded.get(name, ()))
        for where, partial in pairs:
            blanks = build_consumers(ctx, [name])[name]
            disagree = [k for k in partial.loaded.get(name, ()) if k not in loaded]
            if disagree:
                raise EvaluationError(f"{where}: loaded `{name}.{disagree[0]}` from a cache the first shard did not "
                                      "have; recompute the shards with the same cache (or none)")
            for key, consumer in consumers[name].items():
                if key not in loaded or partial is partials[0]:
                    load_state(state_of(consumer), state_of(blanks[key]), where, partial, name, key)
        extras: dict[str, Any] = {}
        for partial in partials:
            extras.update({k: v for k, v in partial.extras.get(name, {}).items() if k not in extras})
        records[name] = PassRecord(seconds=seconds if position == 0 else 0.0, kernel_seconds=kernel_seconds,
                                   notes=merged_notes(partials), extras=extras, loaded=loaded, merged=True)
    return PassOutcome(consumers, records)


class ShardComputer:
    """What a Ray actor runs (``scale/ray_engine.py``): the contract loaded and both kernels opened in
    this process on the first shard, kept for the next ones; returns each shard's partial bytes."""

    def __init__(self, contract_path: str, env: dict[str, str], stages: list[str]) -> None:
        self.setup = (contract_path, env, stages)
        self.plugins = list(PLUGINS)  # this process's plug-ins, registered again in the actor's
        self.ctx: StageContext | None = None

    def __call__(self, index: int, count: int) -> bytes:
        if self.ctx is None:
            from promote.contract.model import load_contract

            load_plugins(self.plugins)
            path, env, stages = self.setup
            contract, _ = load_contract(path, env={**os.environ, **env})
            self.ctx = StageContext(contract, frozenset(stages))
        return compute_partial(self.ctx, index, count).to_bytes()


def ray_offline(ctx: StageContext, stages: set[str], *, address: str | None = None, workers: int = 2,
                shards: int | None = None, threads: int = 1) -> dict[str, Thunk]:
    """Run the offline stages ``stages`` as ``shards`` (default ``workers``) shards on ``workers`` actors."""
    from promote.scale.ray_engine import run_shards

    contract = ctx.contract
    names = wanted_offline(stages)
    ctx.evalset  # noqa: B018 - a bad data file is a usage error here, before any actor starts
    partials = run_shards(ShardComputer(str(contract.path.resolve()), contract.variables, names), address=address,
                          workers=workers, shards=shards, threads=threads)
    return from_partials(ctx, partials)
