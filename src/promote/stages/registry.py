"""The run loop's view of the stage registry (``sections.STAGES``): each stage with how it runs.

A stage is its declaration (``sections.py``) and its package (``stages/<name>/``, ``stages/api.py``):
a live stage runs itself, an offline stage's result comes from the one offline pass
(``stages/offline.py``). A declared stage without an implementation reports ``error``, never ``pass``.
"""

from __future__ import annotations

from dataclasses import dataclass

from promote import __version__
from promote.results import StageResult
from promote.sections import StageDecl, decls
from promote.stages.context import StageContext


@dataclass(frozen=True)
class Stage:
    decl: StageDecl

    @property
    def name(self) -> str:
        return self.decl.name

    @property
    def implemented(self) -> bool:
        return self.decl.evaluated

    def run(self, ctx: StageContext) -> StageResult:
        if not self.implemented:
            return ctx.blanket(self.name, "error", f"stage `{self.name}` is not implemented in promote "
                               f"{__version__}; its clauses cannot be evaluated")
        if self.decl.offline:
            from promote.stages.offline import offline_result

            return offline_result(ctx, self.name)
        return self.decl.implementation().run(ctx)


def stages() -> dict[str, Stage]:
    """Every registered stage, in run order (plug-ins registered after import included)."""
    return {d.name: Stage(d) for d in decls()}
