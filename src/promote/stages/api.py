"""The one protocol a stage implements; each stage is a package under ``stages/`` exposing ``STAGE``.

Shaped after pytest's plug-ins (a feature module owns its options and typed state): a stage owns its
contract section's parser and checks, its section's schema fragment, and how it is evaluated:

- a **live** stage (``LiveStage``: runtime, observability) does its own work in ``run(ctx)``;
- an **offline** stage (``OfflineStage``: numerics, slices) never runs a kernel: it declares the
  consumers it wants fed by the one offline pass (``consumers(ctx)``, keyed by a name of its own),
  and judges their states afterwards (``judge(ctx, states, record)``). ``stages/offline.py`` runs
  that pass once for every wanted offline stage, in one process, per shard (``--shard``), merged
  from partials (``promote merge``) or on Ray actors, and always judges merged states, so the three
  give one result and ``scale/`` needs to know no stage.

The declaration (name, section, needs) is the stage's line in ``sections.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from promote.sections import decls

if TYPE_CHECKING:
    from promote.contract.load import LoadedDocument, Problem
    from promote.kernels.base import Kernel
    from promote.results import StageResult
    from promote.stages.context import StageContext


@dataclass
class PassRecord:
    """What the offline pass tells a judge besides consumer states: timings, the kernels' notes, the
    stage's own extras (``OfflineStage.extras``: JSON, e.g. numerics' localisation), and which states
    were loaded rather than fed (a cached noise floor)."""

    seconds: float = 0.0  # the pass (attributed to the first offline stage that runs; the others get 0)
    kernel_seconds: dict[str, float] = field(default_factory=dict)  # role -> seconds in this pass
    notes: list[str] = field(default_factory=list)  # the kernels' notes (precision fallbacks, ...)
    extras: dict[str, Any] = field(default_factory=dict)
    loaded: tuple[str, ...] = ()  # state keys filled before the pass (not fed by it)
    merged: bool = False  # the states were folded from shards


class Stage:
    """Parser, checks and schema of a stage's contract section (shared by live and offline stages)."""

    name: str = ""

    def parse(self, doc: LoadedDocument, raw: Any, problems: list[Problem], parts: Mapping[str, Any]) -> Any:
        """The section's typed spec (``Contract.sections[section]``); ``parts`` holds what other
        sections give (``task``: `data.task`, ``slices``: the slice definitions). By default: the clauses'
        ids and lines and the raw section (``contract.model.RawSection``)."""
        from promote.contract.model import raw_section

        section = next((d.section for d in decls() if d.name == self.name), self.name)
        return raw_section(doc, section, raw)

    def problems(self, doc: LoadedDocument) -> list[Problem]:
        """What the schema cannot say about this stage's section (called whether or not it is present)."""
        return []

    def schema(self) -> dict[str, Any] | None:
        """The section's JSON Schema fragment (``tools/gen_contract_schema.py`` assembles them; helpers:
        ``contract/schema_parts.py``)."""
        return None


class LiveStage(Stage):
    def run(self, ctx: StageContext) -> StageResult:
        raise NotImplementedError


class OfflineStage(Stage):
    def consumers(self, ctx: StageContext) -> dict[str, Any]:
        """Fresh consumers of the offline pass, keyed by name: ``state.Mergeable``s fed every scored
        batch (``update(scored)``; for `data.task: tensor`, ``update(ids, ref, cand)``), or
        ``engine.passes.Floor``s fed a kernel against itself. Built before any kernel runs, so bad
        input is a usage error first; called again to make the blanks partials merge into."""
        return {}

    def tie_margin(self, ctx: StageContext) -> float | None:
        """The near-tie margin this stage's scoring needs (None: no opinion; ``vocabulary.DEFAULT_TIE_MARGIN``)."""
        return None

    def preload(self, ctx: StageContext, consumers: dict[str, Any], kernels: Mapping[str, Kernel],
                first: bool) -> tuple[str, ...]:
        """Fill consumers from elsewhere before the pass (a cached noise floor); returns their keys,
        which the pass then does not feed. ``first``: this pass holds the eval set's first shard (a
        filled state must be counted once across shards)."""
        return ()

    def extras(self, ctx: StageContext, consumers: dict[str, Any], kernels: Mapping[str, Kernel],
               first: bool) -> dict[str, Any]:
        """JSON facts computed after the pass, travelling with the states (partials included)."""
        return {}

    def judge(self, ctx: StageContext, states: dict[str, Any], record: PassRecord) -> StageResult:
        raise NotImplementedError

    def covered(self, ctx: StageContext, states: dict[str, Any]) -> str | None:
        """Why merged states do not cover the eval set (None when they do): never a verdict on part
        of the data."""
        return None
