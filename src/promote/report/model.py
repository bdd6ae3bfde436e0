"""The Report: one object from which every rendering (text, markdown, JSON, JUnit) is made.

Its JSON form is the stable interface (``schemas/report.schema.json``, ``schema_version``): the PR
comment, a later merge of stage reports and other tools read it, so ``to_dict``/``from_dict``
round-trip exactly (a test asserts it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from promote.findings import Finding
from promote.identity.result import IdentityResult
from promote.policy import Action, Decision
from promote.redact import redact_data
from promote.results import ClauseResult, StageResult

SCHEMA_VERSION = 1


@dataclass
class Report:
    tool_version: str
    contract: dict[str, Any]
    kernels: dict[str, Any] | None  # None: the contract has no kernels (observability only)
    data: dict[str, Any] | None  # None: the contract has no eval set (observability only)
    stages: list[StageResult]
    decision: Decision
    command: str
    started_at: str
    finished_at: str
    duration_s: float
    warnings: list[str] = field(default_factory=list)
    commit: str | None = None
    implied: list[dict[str, Any]] = field(default_factory=list)
    # The identity check (docs/identity.md): findings, fingerprints, what was checked; None when no
    # kernel pair was built (observability only, a run whose stages were all merged from elsewhere).
    identity: IdentityResult | None = None

    @property
    def verdict(self) -> str:
        """``pass``, ``warn``, an action, ``error`` or ``invalid`` (``policy.VERDICTS``)."""
        return self.decision.verdict

    @property
    def invalid(self) -> bool:
        """The two sides do not compute on the same thing: nothing was judged (``verdict == "invalid"``,
        exit 3). ``promote watch`` stops on it."""
        return self.decision.verdict == "invalid"

    @property
    def findings(self) -> list[Finding]:
        """The identity findings, ``invalid`` ones and notes (empty when no identity check ran)."""
        return list(self.identity.findings) if self.identity is not None else []

    @property
    def exit_code(self) -> int:
        return self.decision.exit_code

    def counts(self) -> dict[str, int]:
        """How many clauses ended in each status."""
        out: dict[str, int] = {}
        for stage in self.stages:
            for clause in stage.clauses:
                out[clause.status] = out.get(clause.status, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "promote", "version": self.tool_version},
            "identity": self.identity.to_dict() if self.identity is not None else None,
            "contract": self.contract,
            "kernels": self.kernels,
            "data": self.data,
            "stages": [s.to_dict() for s in self.stages],
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "actions": [a.to_dict() for a in self.decision.actions],
            "routes": list(self.decision.routes),
            "implied": [dict(i) for i in self.implied],
            "counts": self.counts(),
            "command": self.command,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": round(self.duration_s, 6),
            "warnings": list(self.warnings),
            "commit": self.commit,
        }

    def to_json(self) -> str:
        """The JSON report with secret values masked (promote.redact), string by string so it stays JSON."""
        return json.dumps(redact_data(self.to_dict()), indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    def sha256(self) -> str:
        """sha256 of the JSON rendering: the footer quotes it so an artifact can be matched to a comment."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    def clauses(self) -> list[ClauseResult]:
        """Every clause of every stage, in run order."""
        return [c for s in self.stages for c in s.clauses]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        decision = Decision(actions=[Action(**a) for a in data["actions"]], verdict=data["verdict"],
                            exit_code=data["exit_code"], routes=list(data.get("routes", [])))
        return cls(
            tool_version=data["tool"]["version"], contract=data["contract"], kernels=data["kernels"],
            data=data["data"], stages=[StageResult.from_dict(s) for s in data["stages"]], decision=decision,
            command=data["command"], started_at=data["started_at"], finished_at=data["finished_at"],
            duration_s=data["duration_s"], warnings=list(data.get("warnings", [])), commit=data.get("commit"),
            implied=[dict(i) for i in data.get("implied", [])],
            identity=IdentityResult.from_dict(data["identity"]) if data.get("identity") else None,
        )
