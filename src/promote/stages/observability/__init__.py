"""Stage 4, observability sign-off (O): the package (``stages/api.py``) behind
``sections.STAGES["observability"]``.

A live stage reading live monitoring only (``observability/``: a Prometheus server or exposition
snapshot files), never the eval set or a kernel: ``run.py`` runs the clauses, ``clauses.py`` judges
them, ``source.py`` asks the source.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from promote.contract.load import LoadedDocument, Problem
from promote.contract.observability_spec import observability_problems, parse_observability
from promote.results import StageResult
from promote.stages.api import LiveStage
from promote.stages.context import StageContext


class Observability(LiveStage):
    name = "observability"

    def parse(self, doc: LoadedDocument, raw: Any, problems: list[Problem], parts: Mapping[str, Any]) -> Any:
        if any(p.severity == "error" for p in problems):
            return None  # the typed section is only built from a document without errors
        return parse_observability(doc, raw)

    def schema(self) -> dict[str, Any]:
        from promote.stages.observability.schema import SECTION

        return SECTION

    def problems(self, doc: LoadedDocument) -> list[Problem]:
        return observability_problems(doc)

    def run(self, ctx: StageContext) -> StageResult:
        from promote.stages.observability.run import run_observability

        return run_observability(ctx)


STAGE = Observability()
