"""Stage 2, statistical slice tests (S): the package (``stages/api.py``) behind ``sections.STAGES["slices"]``.

One consumer of the offline pass, the slice collector (``collector``: per-position metrics with the
keys slices are cut by); judging derives the slices, tests every clause on every slice and corrects
for multiplicity (``judge.py``; intervals and tests in ``evaluate.py``, slice keys in ``keys.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from promote.contract.load import LoadedDocument, Problem
from promote.contract.statistical import parse_statistical
from promote.results import StageResult
from promote.stages.api import OfflineStage, PassRecord
from promote.stages.context import StageContext


class Slices(OfflineStage):
    name = "slices"

    def parse(self, doc: LoadedDocument, raw: Any, problems: list[Problem], parts: Mapping[str, Any]) -> Any:
        return parse_statistical(doc, raw, parts["slices"], problems)

    @staticmethod
    def tensor(ctx: StageContext) -> bool:
        return ctx.contract.data.task == "tensor"

    def schema(self) -> dict[str, Any]:
        from promote.stages.slices.schema import SECTION

        return SECTION

    def tie_margin(self, ctx: StageContext) -> float | None:
        numerical = ctx.contract.numerical  # the margin argmax-based slice keys use, as numerics does
        return numerical.tie_margin if numerical is not None else None

    def consumers(self, ctx: StageContext) -> dict[str, Any]:
        if self.tensor(ctx):
            return {}
        from promote.stages.slices.judge import prepare

        return {"collector": prepare(ctx.contract, ctx.evalset)}

    def judge(self, ctx: StageContext, states: dict[str, Any], record: PassRecord) -> StageResult:
        if self.tensor(ctx):
            return ctx.blanket(self.name, "error", "the statistical slice stage supports `data.task: causal-lm` "
                               "only in this version")
        from promote.stages.slices.judge import run_slices

        return run_slices(ctx.contract, states["collector"], duration_s=record.seconds)


STAGE = Slices()
