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
from typing import Any

from promote.contract.model import Contract
from promote.data import EvalSet
from promote.errors import UsageError
from promote.scale.compute import describe, input_files
from promote.scale.partial import Partial
from promote.scale.split import content_digest


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


def check_against(contract: Contract, evalset: EvalSet, partials: Sequence[tuple[str, Partial]]) -> None:
    """The contract and eval set read here are the ones the shards ran on, sample for sample."""
    where, first = partials[0]
    if contract.sha256 != first.contract["sha256"]:
        raise UsageError(f"{contract.source.display_path}: the contract (after ${{VAR}} interpolation) is not the one "
                         f"the shards ran ({where}): it or the variables it reads changed; run merge with the same "
                         "contract and environment, or recompute the shards")
    files, content = input_files(contract), content_digest(evalset.samples)
    for where, partial in partials:
        expected = describe(contract, evalset, partial.shard["index"], partial.shard["count"], partial.stages,
                            files=files, content=content)
        if partial.evalset != expected.evalset or partial.shard["batch_size"] != expected.shard["batch_size"]:
            raise UsageError(f"{where}: shard computed on another eval set than {evalset.display_path} (its ids, "
                             "tokens or tags differ, or another batch size); recompute the shards")
        if partial.files != files:
            changed = sorted(k for k in {*files, *partial.files} if files.get(k) != partial.files.get(k))
            raise UsageError(f"{where}: shard computed with other kernel or input files than the contract names "
                             f"now ({', '.join(changed)} differ); recompute the shards with the same model, weights "
                             "and inputs")
        if partial.sample_ids != expected.sample_ids:
            raise UsageError(f"{where}: shard {partial.label} holds other samples than the split gives "
                             f"({len(partial.sample_ids)} vs {len(expected.sample_ids)}); recompute the shard")


def load_state(into: Any, blank: Any, where: str, partial: Partial, stage: str, key: str) -> None:
    """Merge state ``key`` of ``stage`` in ``partial`` into ``into`` through ``blank`` (a fresh consumer
    configured like it: the bytes carry no configuration); a state that is missing, corrupt or of the
    wrong shape is a usage error naming the file (a partial from elsewhere is untrusted data)."""
    data = partial.states.get(stage, {}).get(key)
    if data is None:
        raise UsageError(f"{where}: malformed promote partial file (`states.{stage}.{key}` is missing); recompute "
                         "the shard")
    try:
        into.merge(blank.load_bytes(data))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, RecursionError,
            ZeroDivisionError) as exc:  # StateError is a ValueError
        raise UsageError(f"{where}: corrupt `{stage}.{key}` state in the partial file ({type(exc).__name__}: "
                         f"{str(exc)[:200]}); recompute the shard") from None


def summed_seconds(partials: Sequence[Partial]) -> tuple[float, dict[str, float]]:
    """The pass's seconds and each kernel's, summed over the shards."""
    roles: dict[str, float] = {}
    for partial in partials:
        for role in ("reference", "candidate"):
            roles[role] = roles.get(role, 0.0) + partial.kernel_seconds.get(role, 0.0)
    return sum(p.kernel_seconds.get("pass", 0.0) for p in partials), roles


def merged_notes(partials: Sequence[Partial]) -> list[str]:
    """The kernels' notes of every shard, each once, in shard order."""
    notes: list[str] = []
    for partial in partials:
        notes.extend(n for n in partial.notes if n not in notes)
    return notes
