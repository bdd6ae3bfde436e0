"""Stage 3, canary runtime (R): the package (``stages/api.py``) behind ``sections.STAGES["runtime"]``.

A live stage: ``run.py`` builds the kernels and the baseline, ``measure.py`` times them, ``judge.py``
judges each clause.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from promote.contract.load import LoadedDocument, Problem
from promote.contract.stage_specs import parse_runtime
from promote.results import StageResult
from promote.stages.api import LiveStage
from promote.stages.context import StageContext


class Runtime(LiveStage):
    name = "runtime"

    def parse(self, doc: LoadedDocument, raw: Any, problems: list[Problem], parts: Mapping[str, Any]) -> Any:
        return parse_runtime(doc, raw, problems)

    def schema(self) -> dict[str, Any]:
        from promote.stages.runtime.schema import SECTION

        return SECTION

    def run(self, ctx: StageContext) -> StageResult:
        from promote.stages.runtime.run import run_runtime

        return run_runtime(ctx)


STAGE = Runtime()
