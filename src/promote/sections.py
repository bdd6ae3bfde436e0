"""The stages a contract can have, in run order: the one list every layer reads (no numpy, no torch).

Each entry names a stage, its contract section, what it needs, and how it relates to the others:

- ``needs_evalset``: the stage reads the eval set (``data.path`` must exist); observability reads
  live monitoring only, so a contract with just that stage never forces the data file to exist.
- ``needs_kernels``: the stage runs the reference/candidate kernels.
- ``shared_pass``: the stage is computed from the one offline kernel pass (numerics and slices), so
  when an earlier stage blocks it costs nothing more and is still reported; stages that cost new work
  (runtime, observability) stop after a blocking stage unless ``--all-stages``.
- ``evaluated``: this version of promote implements the stage; a declared but unimplemented stage
  reports ``error`` (exit 3), never ``pass``. ``stages/registry.py`` checks its runners against it.

``contract/`` builds the typed sections from this list, ``stages/registry.py`` attaches a runner to
each, the CLI's ``--stage`` choices, the run loop, the schema generator and the docs all read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageDecl:
    """One stage: its name in reports and ``--stage``, its contract section, and what it needs."""

    name: str
    section: str
    title: str  # schema / docs heading
    needs_evalset: bool
    needs_kernels: bool
    shared_pass: bool
    evaluated: bool


STAGES: tuple[StageDecl, ...] = (
    StageDecl("numerics", "numerical", "Stage 1, offline numerics (N)", needs_evalset=True, needs_kernels=True,
              shared_pass=True, evaluated=True),
    StageDecl("slices", "statistical", "Stage 2, statistical slice tests (S)", needs_evalset=True,
              needs_kernels=True, shared_pass=True, evaluated=True),
    StageDecl("runtime", "runtime", "Stage 3, canary runtime checks (R)", needs_evalset=True, needs_kernels=True,
              shared_pass=False, evaluated=True),
    StageDecl("observability", "observability", "Stage 4, observability sign-off (O)", needs_evalset=False,
              needs_kernels=False, shared_pass=False, evaluated=True),
)
BY_NAME = {s.name: s for s in STAGES}
BY_SECTION = {s.section: s for s in STAGES}
STAGE_NAMES = tuple(s.name for s in STAGES)
SECTION_NAMES = tuple(s.section for s in STAGES)
# Contract section of each stage (the report uses stage names; the contract, section names).
STAGE_SECTIONS = {s.name: s.section for s in STAGES}
