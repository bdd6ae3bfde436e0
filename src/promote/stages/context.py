"""What a stage's ``run(context)`` receives: the typed contract, the eval set and kernels (built on
first use, or injected), the results so far, and the shared offline pass.

Injectable (issue 10): calibration passes a fault-wrapped candidate, a watch loop keeps kernels open
across runs, a test passes an in-memory eval set. Injected kernels are opened if needed and never
closed here (their owner closes them); kernels built here are closed when the run ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from promote.contract.model import Contract
from promote.data import EvalSet, load_evalset
from promote.identity.result import IdentityResult
from promote.kernels import build_kernel
from promote.kernels.base import Kernel
from promote.results import ClauseResult, StageResult

Progress = Callable[[int, int], None]


@dataclass
class StageContext:
    """Everything a stage may use; heavy parts are created lazily, once per run."""

    contract: Contract
    wanted: frozenset[str]  # stages selected and present in the contract
    progress: Progress | None = None
    evalset_given: EvalSet | None = None
    kernels_given: Mapping[str, Kernel] | None = None
    results: list[StageResult] = field(default_factory=list)  # earlier stages of this run, in order
    fingerprints: dict[str, Any] = field(default_factory=lambda: {"reference": None, "candidate": None})
    cache: dict[str, Any] = field(default_factory=dict)  # per-run state shared by stages (the offline pass)
    # Replaces the in-process offline pass (``stages.offline``): merged partials or Ray shards (``scale/``).
    offline_engine: Callable[[StageContext, set[str]], dict[str, Any]] | None = None
    no_kernels: str | None = None  # why no kernel may be built in this run (merge without --contract)
    identity: IdentityResult | None = None  # the identity check's result (stages/identity_gate.py), once run
    _evalset: EvalSet | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def evalset(self) -> EvalSet:
        """The eval set (read on first use; raises UsageError for a bad file)."""
        if self._evalset is None:
            self._evalset = self.evalset_given or load_evalset(self.contract.data)
        return self._evalset

    @property
    def evalset_loaded(self) -> EvalSet | None:
        return self._evalset

    def kernels(self) -> tuple[Kernel, Kernel]:
        """Reference and candidate, open; fingerprints recorded. Built from the contract unless given."""
        if "kernels" not in self.cache:
            given = dict(self.kernels_given or {})
            pair = []
            for role in ("reference", "candidate"):
                kernel = given.get(role)
                if kernel is None:
                    if self.no_kernels:
                        from promote.errors import UsageError

                        raise UsageError(self.no_kernels)
                    kernel = build_kernel(getattr(self.contract, role), role=role)
                    self._stack.enter_context(kernel)
                else:
                    kernel.open()
                self.fingerprints[role] = kernel.fingerprint()
                pair.append(kernel)
            self.cache["kernels"] = tuple(pair)
        return self.cache["kernels"]

    def close(self) -> None:
        """Close the kernels this run built (injected ones stay open for their owner). Kernels whose
        fingerprint counts what happened (an HTTP kernel's requests, retries, errors) are
        fingerprinted again first, so the report covers the whole run, not just the opening."""
        for role, kernel in zip(("reference", "candidate"), self.cache.get("kernels", ()), strict=False):
            if getattr(kernel, "counts_in_fingerprint", False):
                self.fingerprints[role] = kernel.fingerprint()
        self._stack.close()
        self.cache.pop("kernels", None)

    def blanket(self, stage: str, status: str, message: str) -> StageResult:
        """A stage whose every clause gets one status (skipped, or error when it cannot run)."""
        from promote.sections import section_of

        clauses = [ClauseResult(id=cid, stage=stage, status=status, message=message, line=line)
                   for cid, line in self.contract.clause_lines(section_of(stage))]
        return StageResult(name=stage, status=status if clauses else "skipped", clauses=clauses, notes=[message])
