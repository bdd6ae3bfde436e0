"""The stage registry: each stage of ``sections.STAGES`` with its runner, in run order.

A stage is its declaration (name, contract section, what it needs — ``sections.py``), its typed spec
(``Contract.spec(section)``) and ``run(context) -> StageResult``. The CLI's ``--stage`` choices and
the run loop read this registry; a new stage is a declaration in ``sections.py``, a typed section in
``contract/``, and a runner here. A declared stage without a runner reports ``error`` — never
``pass`` — and ``sections.StageDecl.evaluated`` must agree with having a runner (a test checks it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from promote import __version__
from promote.results import StageResult
from promote.sections import STAGES as DECLS
from promote.sections import StageDecl
from promote.stages.context import StageContext

Runner = Callable[[StageContext], StageResult]


@dataclass(frozen=True)
class Stage:
    decl: StageDecl
    runner: Runner | None  # None: declared, not implemented in this version

    @property
    def name(self) -> str:
        return self.decl.name

    @property
    def implemented(self) -> bool:
        return self.runner is not None

    def spec(self, contract: Any) -> Any:
        """This stage's typed contract section (None when the contract has none)."""
        return contract.spec(self.decl.section)

    def run(self, ctx: StageContext) -> StageResult:
        if self.runner is None:
            return ctx.blanket(self.name, "error", f"stage `{self.name}` is not implemented in promote "
                               f"{__version__}; its clauses cannot be evaluated")
        return self.runner(ctx)


def _numerics(ctx: StageContext) -> StageResult:
    from promote.stages.offline import offline_result

    return offline_result(ctx, "numerics")


def _slices(ctx: StageContext) -> StageResult:
    from promote.stages.offline import offline_result

    return offline_result(ctx, "slices")


def _runtime(ctx: StageContext) -> StageResult:
    from promote.stages.runtime import run_runtime

    return run_runtime(ctx)


def _observability(ctx: StageContext) -> StageResult:
    from promote.stages.observability import run_observability

    return run_observability(ctx)


RUNNERS: dict[str, Runner] = {"numerics": _numerics, "slices": _slices, "runtime": _runtime,
                              "observability": _observability}
STAGES: dict[str, Stage] = {d.name: Stage(d, RUNNERS.get(d.name)) for d in DECLS}
