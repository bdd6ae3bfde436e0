"""Identity findings: what the identity check (issue 23) says about a reference/candidate pair.

A leaf type, below ``kernels/`` and ``stages/``, so a kernel kind (the ``openai`` kernel sees the echoed
prompt ids, a records file declares its sampler) can report a finding without importing the identity
package, and the report, ``calibrate`` and ``watch`` can read findings without importing the checks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from promote.errors import EvaluationError

#: ``invalid``: the two kernels do not compute on the same thing; the run's metrics are never judged.
#: ``note``: worth showing (padded vocabulary rows excluded, a tempered sampler declared), not a mismatch.
Severity = Literal["invalid", "note"]
#: Which side a finding is about: ``reference``, ``candidate``, ``both`` (they differ from each other) or
#: ``eval_set`` (the data itself, e.g. ids beyond either vocabulary).
Side = Literal["reference", "candidate", "both", "eval_set"]


@dataclass(frozen=True)
class Finding:
    """One identity finding: which check, about which side, what differs and how to fix it."""

    check: str  # e.g. "vocabulary", "prompt", "value_semantics", "sampling", "fingerprint"
    severity: Severity
    side: Side
    message: str  # what differs, with the values seen on each side
    fix: str  # what the user changes so the two sides compute on the same thing
    evidence: dict[str, Any] = field(default_factory=dict)  # JSON-safe values behind the message

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def is_invalid(findings: list[Finding]) -> bool:
    """True when any finding makes the run ``invalid``."""
    return any(finding.severity == "invalid" for finding in findings)


def finding_from_json(data: dict[str, Any]) -> Finding:
    """A finding read back from a report's ``identity.findings`` (already schema-checked)."""
    return Finding(check=data["check"], severity=data["severity"], side=data["side"], message=data["message"],
                   fix=data["fix"], evidence=dict(data.get("evidence") or {}))


class IdentityInvalid(EvaluationError):
    """Raised where a mismatch is seen mid-run (a server that echoes other ids than it was sent, past the
    identity probe): the run becomes ``invalid`` with ``findings`` (exit 3), never a numerical verdict."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = list(findings)
        first = self.findings[0] if self.findings else None
        super().__init__(f"identity: {first.message}; fix: {first.fix}" if first else "identity: invalid")
