"""The one offline loop: consumers of every wanted offline stage → one kernel pass → states keyed by
stage → (serialise / merge) → judge (DESIGN of issue 21; ``stages/api.py``).

The first offline stage to run triggers the pass and caches a result per stage. The same loop serves
one process (``local``), one shard (``stages/shards.compute_partial``: the states leave as bytes),
and the fold of shards (``stages/shards.from_partials``: ``promote merge`` and ``--engine ray``), so
the noise-floor cache, `data.task: tensor` and every stage's extras behave alike in all three. Bad
input is a usage error raised before any kernel runs (consumers are built first); a kernel that
crashes makes every wanted offline stage an ``error`` (exit 3), never a silent gap. The identity check
(``stages/identity_gate.py``) sees the first batch before anything is scored: a mismatch stops the
pass and makes every wanted offline stage ``invalid`` (not judged; exit 3).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from promote import console
from promote.data import Sample
from promote.engine.passes import Floor, kernel_pass, tensor_pass
from promote.errors import EvaluationError
from promote.findings import IdentityInvalid
from promote.kernels.base import IdentityEvidence
from promote.redact import redact_message
from promote.results import StageResult
from promote.sections import by_name, decls
from promote.stages import identity_gate
from promote.stages.api import OfflineStage, PassRecord
from promote.stages.context import StageContext
from promote.vocabulary import DEFAULT_TIE_MARGIN

Thunk = Callable[[], StageResult]


def offline_result(ctx: StageContext, stage: str) -> StageResult:
    """The result of offline stage ``stage``, running the shared pass on first use."""
    if "offline" not in ctx.cache:
        engine = ctx.offline_engine or local  # merged shards (promote merge, --engine ray) or this process
        ctx.cache["offline"] = engine(ctx, set(wanted_offline(ctx.wanted)))
    return ctx.cache["offline"][stage]()


def wanted_offline(wanted: Sequence[str] | set[str] | frozenset[str]) -> list[str]:
    """The offline stages among ``wanted``, in run order."""
    return [d.name for d in decls() if d.offline and d.evaluated and d.name in wanted]


def implementation(name: str) -> OfflineStage:
    return by_name(name).implementation()


def state_of(consumer: Any) -> Any:
    """The mergeable state behind a consumer (a ``Floor`` feeds its own consumer)."""
    return consumer.consumer if isinstance(consumer, Floor) else consumer


def build_consumers(ctx: StageContext, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Fresh consumers of each stage, keyed stage → its own key (usage errors before any kernel)."""
    return {name: implementation(name).consumers(ctx) for name in names}


@dataclass
class PassOutcome:
    """One pass (a whole run or a shard): each stage's consumers, and the facts for its judge."""

    consumers: dict[str, dict[str, Any]]
    records: dict[str, PassRecord]


def run_pass(ctx: StageContext, names: Sequence[str], consumers: dict[str, dict[str, Any]], *,
             samples: Sequence[Sample] | None = None, first: bool = True) -> PassOutcome:
    """Open the kernels, let each stage preload, feed every consumer in one pass over ``samples``
    (default: the eval set), and collect each stage's extras. EvaluationError when a kernel fails,
    IdentityInvalid (one) when the identity check finds the two sides differ."""
    reference, candidate = ctx.kernels()
    kernels = {"reference": reference, "candidate": candidate}
    try:
        return _pass(ctx, names, consumers, kernels, samples=samples, first=first)
    except IdentityEvidence as exc:  # a kernel saw the mismatch itself (an id beyond its vocabulary, a server's echo)
        raise identity_gate.from_evidence(ctx, kernels, exc) from None


def _pass(ctx: StageContext, names: Sequence[str], consumers: dict[str, dict[str, Any]], kernels: dict[str, Any], *,
          samples: Sequence[Sample] | None, first: bool) -> PassOutcome:
    reference, candidate = kernels["reference"], kernels["candidate"]
    before = {role: k.seconds for role, k in kernels.items()}  # kernels kept open across runs or shards
    loaded = {n: implementation(n).preload(ctx, consumers[n], kernels, first) for n in names}
    fed = [c for n in names for key, c in consumers[n].items() if key not in loaded[n]]
    start = time.perf_counter()
    no_probe = not fed or ctx.contract.data.task == "tensor"  # the identity checks that need no probe
    if no_probe and identity_gate.static(ctx, kernels).invalid:
        raise IdentityInvalid(ctx.identity.findings if ctx.identity else [])
    if fed and ctx.contract.data.task == "tensor":  # non-LM outputs compared by key path
        tensor_pass(ctx.evalset, reference, candidate, lambda b, r, c: [x.update(b.ids, r, c) for x in fed],
                    progress=ctx.progress, samples=samples)
    elif fed:
        margins = [m for m in (implementation(n).tie_margin(ctx) for n in names) if m is not None]
        kernel_pass(ctx.evalset, reference, candidate, [c for c in fed if not isinstance(c, Floor)],
                    floors=[c for c in fed if isinstance(c, Floor)], progress=ctx.progress, samples=samples,
                    tie_margin=margins[0] if margins else DEFAULT_TIE_MARGIN,
                    before=identity_gate.hook(ctx, kernels))
    seconds = time.perf_counter() - start
    spent = {role: k.seconds - before[role] for role, k in kernels.items()}
    records = {}
    for index, name in enumerate(names):
        extras = implementation(name).extras(ctx, consumers[name], kernels, first)
        records[name] = PassRecord(seconds=seconds if index == 0 else 0.0, kernel_seconds=dict(spent),
                                   notes=[*reference.notes, *candidate.notes], extras=extras,
                                   loaded=tuple(loaded[name]))
    return PassOutcome(consumers, records)


def judged(ctx: StageContext, outcome: PassOutcome) -> dict[str, Thunk]:
    """Each stage's judge over its states (called when the stage's turn in the run comes)."""
    def thunk(name: str) -> Thunk:
        states = {key: state_of(c) for key, c in outcome.consumers[name].items()}
        return lambda: implementation(name).judge(ctx, states, outcome.records[name])

    return {name: thunk(name) for name in outcome.consumers}


def errors(ctx: StageContext, names: Sequence[str], message: str) -> dict[str, Thunk]:
    """Every offline stage ``error`` with ``message`` (already redacted)."""
    return {name: (lambda name=name: ctx.blanket(name, "error", message)) for name in names}


def invalid(ctx: StageContext, names: Sequence[str]) -> dict[str, Thunk]:
    """Every offline stage ``invalid``: not judged, the identity check's first finding as why."""
    return {name: (lambda name=name: identity_gate.not_judged(ctx, name)) for name in names}


def local(ctx: StageContext, wanted: set[str]) -> dict[str, Thunk]:
    """The offline stages of this process: one pass over the whole eval set."""
    names = [n for n in wanted_offline(wanted)]
    consumers = build_consumers(ctx, names)
    try:
        outcome = run_pass(ctx, names, consumers)
    except IdentityInvalid as exc:
        console.message(f"promote: invalid: {redact_message(exc.format_message())}")
        return invalid(ctx, names)
    except EvaluationError as exc:
        message = redact_message(exc.format_message())  # the report quotes it too: mask before both
        console.message(f"promote: error: {message}")
        return errors(ctx, names, message)
    return judged(ctx, outcome)


def merge_states(into: Mapping[str, Any], other: Mapping[str, Any]) -> None:
    for key, consumer in into.items():
        state_of(consumer).merge(state_of(other[key]))
