"""The stages a contract can have, in run order: the one registry every layer reads (no numpy, no torch).

Each entry declares a stage (its name in reports and ``--stage``, its contract section, what it needs)
and names the package that implements it (``plugin``, ``"module:attribute"``, loaded on first use):

- ``needs_evalset``: the stage reads the eval set (``data.path`` must exist); observability reads
  live monitoring only, so a contract with just that stage never forces the data file to exist.
- ``needs_kernels``: the stage runs the reference/candidate kernels.
- ``offline``: the stage is computed from the one offline kernel pass (``stages/offline.py``: its
  consumers are fed by the pass, its judge reads their merged states), so when an earlier stage blocks
  it costs nothing more and is still reported, and ``--shard``/``merge``/``--engine ray`` compute it;
  the other stages (runtime, observability) cost new work and stop after a blocking stage unless
  ``--all-stages``.
- ``plugin``: the stage's implementation (``stages/api.py``: parser, schema fragment, and ``run`` or
  ``consumers`` + ``judge``); None for a declared stage this version does not implement, whose clauses
  report ``error`` (exit 3), never ``pass``.

Adding a stage is one package under ``stages/`` and one ``STAGES.register`` line here; a plug-in
outside ``src/`` registers itself the same way (``tests/toy_plugins.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from promote.registry import Registry


@dataclass(frozen=True)
class StageDecl:
    """One stage: its name in reports and ``--stage``, its contract section, and what it needs."""

    name: str
    section: str
    title: str  # schema / docs heading
    needs_evalset: bool
    needs_kernels: bool
    offline: bool
    plugin: Any = None  # "module:attribute" or the object (stages/api.py); None: not implemented

    @property
    def evaluated(self) -> bool:
        """Whether this version implements the stage (a declared stage without one reports ``error``)."""
        return self.plugin is not None

    def implementation(self) -> Any:
        """The stage object (``stages.api.LiveStage`` / ``OfflineStage``), imported on first use."""
        if isinstance(self.plugin, str):
            from importlib import import_module

            module, _, attribute = self.plugin.partition(":")
            return getattr(import_module(module), attribute)
        return self.plugin


STAGES: Registry[StageDecl] = Registry("stage")


#: What a stage name may look like: the report schema allows any such name (a plug-in's included) and
#: ``report/load.py`` then checks the names are registered; ``--stage`` checks them at run time.
STAGE_NAME_PATTERN = "^[a-z][a-z0-9_-]{0,63}$"


def register(decl: StageDecl, *, replace: bool = False) -> StageDecl:
    """Add a stage (a built-in below, or a plug-in); its name must match ``STAGE_NAME_PATTERN``."""
    if not re.fullmatch(STAGE_NAME_PATTERN, decl.name):
        raise ValueError(f"stage name {decl.name!r} does not match {STAGE_NAME_PATTERN}")
    STAGES.register(decl.name, decl, replace=replace)
    return decl


register(StageDecl("numerics", "numerical", "Stage 1, offline numerics (N)", needs_evalset=True, needs_kernels=True,
                   offline=True, plugin="promote.stages.numerics:STAGE"))
register(StageDecl("slices", "statistical", "Stage 2, statistical slice tests (S)", needs_evalset=True,
                   needs_kernels=True, offline=True, plugin="promote.stages.slices:STAGE"))
register(StageDecl("runtime", "runtime", "Stage 3, canary runtime checks (R)", needs_evalset=True,
                   needs_kernels=True, offline=False, plugin="promote.stages.runtime:STAGE"))
register(StageDecl("observability", "observability", "Stage 4, observability sign-off (O)", needs_evalset=False,
                   needs_kernels=False, offline=False, plugin="promote.stages.observability:STAGE"))

# The built-in stages at import time (the generated calibration schema's). Everything else reads the
# registry through the functions below, so a stage registered later (a plug-in) is seen.
STAGE_NAMES = STAGES.names()


def decls() -> list[StageDecl]:
    """Every registered stage, in run order."""
    return [STAGES.get(name) for name in STAGES]


def stage_names() -> tuple[str, ...]:
    return STAGES.names()


def section_names() -> tuple[str, ...]:
    return tuple(d.section for d in decls())


def by_name(name: str) -> StageDecl:
    return STAGES.get(name)


def by_section(section: str) -> StageDecl:
    for decl in decls():
        if decl.section == section:
            return decl
    raise KeyError(f"unknown stage section {section!r}")


def section_of(stage: str) -> str:
    """The contract section of stage ``stage`` (reports use stage names; the contract, sections)."""
    return STAGES.get(stage).section
