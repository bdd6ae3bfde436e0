"""Sinks for `promote watch`, built from ``--sink`` flags and the contract's ``watch.sinks`` through the
``sinks.api.SINKS`` registry, and called for every decision (idempotent by protocol).

What each sink is asked (``for_sinks``): the decision, except that ``stop`` is sent as ``route_back`` (an
``invalid`` candidate must lose its traffic before the loop ends; routing sinks change nothing on
``stop``); that a ``hold`` while routed back (weight 0) is sent as ``route_back`` — idempotent, so it
sends nothing while the target reads 0 and puts 0 back when anything changed it since
(tests/test_watch_e2e.py sets the weights by hand on a real HAProxy); and that any other ``hold`` is sent
to a sink whose last weight-changing call was not confirmed (``ok: false``) as that call again — a
failed restore is retried every window until the sink confirms it. A sink that raises (against the
protocol) is reported as ``ok: false`` with the exception's type and message: a decision is always
recorded, whatever a sink did. ``--dry-run`` calls each sink with ``dry_run=True`` (the sink reads back
but sets nothing) and says so on stderr.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from promote import console
from promote.redact import redact_message
from promote.sinks.api import Decision, Sink, SinkResult
from promote.sinks.build import build_sink
from promote.watch.spec import SinkSpec


def build_sinks(specs: Iterable[SinkSpec]) -> list[Sink]:
    """Every sink, built (nothing contacted); UsageError naming the flag or contract key of a bad one."""
    from promote.contract.plugins import load_env_plugins

    load_env_plugins()  # a plug-in's sinks ($PROMOTE_PLUGINS)
    return [build_sink({**spec.options, "kind": spec.kind}, spec.where) for spec in specs]


def for_sinks(decision: Decision, count: int, unconfirmed: Mapping[int, str]) -> list[Decision]:
    """What each of ``count`` sinks is asked for ``decision`` (see the module docstring); ``unconfirmed``:
    sink index → the weight-changing action it has not confirmed yet."""
    if decision.action == "stop":
        decision = replace(decision, action="route_back", candidate_weight=0,
                           reason=f"stop: the candidate loses its traffic first; {decision.reason}")
    if decision.action == "hold" and decision.candidate_weight == 0:  # routed back: keep it so, every window
        decision = replace(decision, action="route_back",
                           reason=f"hold while routed back: weight 0 re-asserted; {decision.reason}")
    out = []
    for index in range(count):
        retry = unconfirmed.get(index) if decision.action == "hold" else None
        out.append(replace(decision, action=retry, reason=f"retry of the unconfirmed {retry}; {decision.reason}")
                   if retry else decision)
    return out


def apply_all(sinks: Sequence[Sink], decisions: Sequence[Decision], *, dry_run: bool) -> list[dict[str, Any]]:
    """Each sink's result for its decision as JSON (with the ``action`` it was sent), in order (a raising
    sink becomes ``ok: false``)."""
    out = []
    for sink, decision in zip(sinks, decisions, strict=True):
        name = str(getattr(sink, "name", type(sink).__name__))
        if dry_run:
            console.message(f"promote watch: dry run: sink {name}: apply(action={decision.action}, "
                            f"candidate_weight={decision.candidate_weight}) — not acting")
        try:
            result = sink.apply(decision, dry_run=dry_run)
            if not isinstance(result, SinkResult):
                raise TypeError(f"apply returned {type(result).__name__}, not a SinkResult")
        except Exception as exc:  # noqa: BLE001 - a sink's failure is recorded, never lost with the decision
            result = SinkResult(sink=name, ok=False, dry_run=dry_run, changed=False,
                                message=redact_message(f"{type(exc).__name__}: {exc}")[:500])
        if not result.ok:
            console.message(f"promote watch: sink {name} did not reach the asked state: {result.message}")
        out.append({"call": "apply", "action": decision.action, "candidate_weight": decision.candidate_weight,
                    **result.to_json()})
    return out


def unconfirmed_after(before: Mapping[int, str], results: Sequence[dict[str, Any]]) -> dict[int, str]:
    """Sink index → the weight-changing action still to confirm, after ``results`` (a confirmed or newer
    action replaces the old one; ``hold`` and dry runs change nothing)."""
    out = dict(before)
    for index, result in enumerate(results):
        if result["action"] == "hold" or result.get("dry_run"):
            continue
        if result["ok"]:
            out.pop(index, None)
        else:
            out[index] = result["action"]
    return out
