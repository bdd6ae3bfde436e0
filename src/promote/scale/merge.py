"""``promote merge``: check that partial files make up exactly one run, then fold them into results.

Checks, each an error naming the files (exit 2: the set of files given is wrong, and the fix is to
give the right ones): every partial has the same contract sha256 (after ``${VAR}`` interpolation),
the same kernel fingerprints, shard count, batch size and eval set; each shard index appears exactly
once (missing and duplicated shards are named, never a partial pass); the contract, re-read here,
still has that sha256; and each shard's sample ids are the ones the split gives. After the fold the
merged sample and position counts must equal the eval set's (exit 3 otherwise). Merging is
order-independent (``state.Mergeable``), so the order of files or of Ray's returns does not matter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from promote.contract.model import Contract
from promote.errors import EvaluationError, UsageError
from promote.results import StageResult
from promote.scale.compute import describe, input_files
from promote.scale.partial import Partial
from promote.scale.split import content_digest
from promote.stages.context import StageContext


@dataclass
class _Tally:
    """Stands in for a kernel in ``stage_result``: the shards' summed seconds and their notes."""

    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _blank(acc: Any) -> Any:
    """An empty accumulator configured like ``acc`` (the state bytes carry no configuration)."""
    return type(acc)(acc.metrics, parameterized=acc.parameterized)


def _same(partials: Sequence[tuple[str, Partial]], what: str, get: Any, fix: str) -> None:
    first_where, first = partials[0]
    for where, partial in partials[1:]:
        if get(partial) != get(first):
            raise UsageError(f"{where} and {first_where} are partials of different {what}; {fix}")


def check_partials(partials: Sequence[tuple[str, Partial]]) -> None:
    """Same contract, kernels, split; every shard exactly once (``(where, partial)`` pairs)."""
    if not partials:
        raise UsageError("no partial files given: pass every `--partial` file of the run")
    rerun = "recompute the shards with one contract, kernels and eval set"
    _same(partials, "contracts (interpolated sha256 differs)", lambda p: p.contract["sha256"], rerun)
    _same(partials, "shard counts", lambda p: p.shard["count"], "merge the shards of one --shard I/N run")
    _same(partials, "eval sets", lambda p: p.evalset, rerun)
    _same(partials, "batch sizes", lambda p: p.shard["batch_size"], rerun)
    _same(partials, "stage selections", lambda p: p.stages, "run every shard with the same --stage flags")
    done = [(w, p) for w, p in partials if p.error is None]
    if done:
        _same(done, "kernels (fingerprints differ: library versions, device, precision or threads)",
              lambda p: p.kernels, "run every shard in the same environment")
    count = partials[0][1].shard["count"]
    seen: dict[int, str] = {}
    for where, partial in partials:
        index = partial.shard["index"]
        if index in seen:
            raise UsageError(f"shard {index}/{count} given twice ({seen[index]} and {where}); give each shard once")
        seen[index] = where
    missing = [i for i in range(count) if i not in seen]  # count <= split.MAX_SHARDS (partial.py)
    if missing:
        names = ", ".join(f"{i}/{count}" for i in missing[:10]) + (f" and {len(missing) - 10} more"
                                                                   if len(missing) > 10 else "")
        raise UsageError(f"shard{'s' if len(missing) > 1 else ''} {names} missing: {len(seen)} of {count} partial "
                         "files given; compute the missing shards (promote check CONTRACT --shard I/N --partial OUT)")


def check_against(contract: Contract, ctx: StageContext, partials: Sequence[tuple[str, Partial]]) -> None:
    """The contract and eval set read here are the ones the shards ran on, sample for sample."""
    where, first = partials[0]
    if contract.sha256 != first.contract["sha256"]:
        raise UsageError(f"{contract.source.display_path}: the contract (after ${{VAR}} interpolation) is not the one "
                         f"the shards ran ({where}): it or the variables it reads changed; run merge with the same "
                         "contract and environment, or recompute the shards")
    evalset = ctx.evalset
    files, content = input_files(contract), content_digest(evalset.samples)
    for where, partial in partials:
        expected = describe(contract, evalset, partial.shard["index"], partial.shard["count"], partial.stages,
                            files=files, content=content)
        if partial.evalset != expected.evalset or partial.shard["batch_size"] != expected.shard["batch_size"]:
            raise UsageError(f"{where}: shard computed on another eval set than {evalset.display_path} (its ids, "
                             "tokens or tags differ, or another batch size); recompute the shards")
        if partial.files != files:
            changed = sorted(k for k in {*files, *partial.files} if files.get(k) != partial.files.get(k))
            raise UsageError(f"{where}: shard computed with other kernel files than the contract names now "
                             f"({', '.join(changed)} differ); recompute the shards with the same model and weights")
        if partial.sample_ids != expected.sample_ids:
            raise UsageError(f"{where}: shard {partial.label} holds other samples than the split gives "
                             f"({len(partial.sample_ids)} vs {len(expected.sample_ids)}); recompute the shard")


def merged_offline(ctx: StageContext, partials: Sequence[tuple[str, Partial]]) -> dict[str, Any]:
    """The offline stages' results from the partials, as ``stages.offline`` caches them (stage → thunk)."""
    check_partials(partials)
    check_against(ctx.contract, ctx, partials)
    ordered = sorted(partials, key=lambda wp: wp[1].shard["index"])
    stages = ordered[0][1].stages
    failed = [(w, p) for w, p in ordered if p.error is not None]
    if failed:
        message = f"shard {failed[0][1].label}: {failed[0][1].error}"
        return {s: (lambda s=s: ctx.blanket(s, "error", message)) for s in stages}
    ctx.fingerprints.update(ordered[0][1].kernels)
    return _fold(ctx, ordered, stages)


def _load(into: Any, where: str, partial: Partial, key: str, blank: Any = _blank) -> None:
    """Merge state ``key`` of ``partial`` into ``into``; a state that is missing, corrupt or of the wrong
    shape is a usage error naming the file (a partial from elsewhere is untrusted data)."""
    if key not in partial.states:
        raise UsageError(f"{where}: malformed promote partial file (`states.{key}` is missing); recompute the shard")
    try:
        into.merge(blank(into).load_bytes(partial.states[key]))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, RecursionError,
            ZeroDivisionError) as exc:  # StateError is a ValueError
        raise UsageError(f"{where}: corrupt `{key}` state in the partial file ({type(exc).__name__}: "
                         f"{str(exc)[:200]}); recompute the shard") from None


def _fold(ctx: StageContext, pairs: list[tuple[str, Partial]], stages: list[str]) -> dict[str, Any]:
    contract, evalset = ctx.contract, ctx.evalset
    partials = [p for _, p in pairs]
    out: dict[str, Any] = {}
    seconds = sum(p.kernel_seconds.get("pass", 0.0) for p in partials)
    if "numerics" in stages:
        from promote.stages.numerics import localize_note, prepare, stage_result

        spec = contract.numerical
        acc, floor = prepare(spec)
        for where, partial in pairs:
            _load(acc, where, partial, "numerics")
            if floor is not None:
                for kind, mine in floor.accumulators.items():
                    _load(mine, where, partial, f"floor:{kind}")
        if acc.samples != len(evalset.samples) or acc.positions != evalset.positions:
            raise EvaluationError(f"merged shards cover {acc.samples} of {len(evalset.samples)} samples and "
                                  f"{acc.positions} of {evalset.positions} positions; no verdict on part of the data")
        tallies = [_Tally(), _Tally()]
        for partial in partials:
            for tally, role in zip(tallies, ("reference", "candidate"), strict=True):
                tally.seconds += partial.kernel_seconds.get(role, 0.0)
                tally.notes.extend(n for n in partial.notes if n not in tally.notes)
        tallies[1].notes = []  # the notes are the kernels' together: keep them once
        result: StageResult = stage_result(spec, acc, tallies[0], tallies[1], seconds, floor=floor)  # type: ignore[arg-type]
        found = partials[0].localize
        if found is not None:
            result.details["localize"] = found
            result.notes.append(localize_note(found))
        out["numerics"] = lambda: result
    if "slices" in stages:
        from promote.stages.slices import prepare as prepare_slices
        from promote.stages.slices import run_slices

        collector = prepare_slices(contract, evalset)
        for where, partial in pairs:
            _load(collector, where, partial, "slices", lambda _: prepare_slices(contract, evalset))
        kernel_s = 0.0 if "numerics" in stages else seconds
        out["slices"] = lambda: run_slices(contract, collector, duration_s=kernel_s)
    return out
