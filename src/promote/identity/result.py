"""The report's ``identity`` part: the findings, each side's identity fingerprint, which checks ran
and which did not (with why). A first-class report part (``report/model.py``), shown first in every
rendering; its JSON is ``schemas/report.schema.json``'s ``identity``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from promote.findings import Finding, finding_from_json, is_invalid
from promote.results import json_safe


@dataclass
class IdentityResult:
    """What the identity check found. ``scored_vocab``: the vocabulary every metric is computed over
    when the model's padded rows are excluded (None: the whole logits row); ``probe_samples``: how many
    samples the probe batch held (0: no probe ran, only declared facts were compared)."""

    findings: list[Finding] = field(default_factory=list)
    fingerprints: dict[str, dict[str, Any]] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)
    not_checked: dict[str, str] = field(default_factory=dict)
    probe_samples: int = 0
    scored_vocab: int | None = None

    @property
    def invalid(self) -> bool:
        return is_invalid(self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"invalid": self.invalid, "findings": [json_safe(f.to_json()) for f in self.findings],
                "fingerprints": json_safe(self.fingerprints), "checked": list(self.checked),
                "not_checked": dict(self.not_checked), "probe_samples": self.probe_samples,
                "scored_vocab": self.scored_vocab}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IdentityResult:
        return cls(findings=[finding_from_json(f) for f in data.get("findings", [])],
                   fingerprints={k: dict(v) for k, v in (data.get("fingerprints") or {}).items()},
                   checked=list(data.get("checked", [])), not_checked=dict(data.get("not_checked", {})),
                   probe_samples=int(data.get("probe_samples", 0)), scored_vocab=data.get("scored_vocab"))

    def merged(self, other: IdentityResult) -> IdentityResult:
        """Two shards' results as one run's: findings once each, the first shard's fingerprints and probe
        (shard 0's first batch is the single run's), so a merged report equals the one-process report. A
        note measured on each shard's own probe (a temperature-like slope over 30 or 31 positions) is kept
        from the first shard only; every distinct `invalid` finding of any shard is kept."""
        seen = {_merge_key(f) for f in self.findings}
        extra = [f for f in other.findings if _merge_key(f) not in seen]
        return IdentityResult(findings=[*self.findings, *extra], fingerprints=self.fingerprints or other.fingerprints,
                              checked=list(dict.fromkeys([*self.checked, *other.checked])),
                              not_checked={**other.not_checked, **self.not_checked},
                              probe_samples=self.probe_samples or other.probe_samples,
                              scored_vocab=self.scored_vocab if self.scored_vocab is not None else other.scored_vocab)


def _merge_key(finding: Finding) -> tuple[str, ...]:
    """What makes two shards' findings the same: for a note its check, side and wording without its
    numbers (they come from each shard's own probe), for an `invalid` finding its whole message (each
    mismatch is reported)."""
    if finding.severity == "note":
        return (finding.check, finding.side, finding.severity, re.sub(r"\d+(\.\d+)?", "#", finding.message))
    return (finding.check, finding.side, finding.severity, finding.message)
