"""Result types shared by stages, the policy and reports.

They sit below ``stages/``, ``policy.py`` and ``report/`` so that none of those layers has to import
a higher one (docs/architecture.md). Plain dataclasses with a JSON form; no behaviour beyond bookkeeping.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Literal


class Choice(str, Enum):
    """A closed set of names that stays a ``str``: ``status == "pass"``, dict look-ups, JSON, f-strings,
    ``!r`` and templates all see the plain value, so typing a field changes no output."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def __repr__(self) -> str:
        return repr(self.value)


class Status(Choice):
    """A clause's (and a stage's) outcome; the member order is the severity order, least severe first."""

    SKIPPED = "skipped"
    PASS = "pass"
    WARN = "warn"
    INCONCLUSIVE = "inconclusive"
    VACUOUS = "vacuous"
    FAIL = "fail"
    ERROR = "error"
    INVALID = "invalid"  # not judged: the identity check found the two sides do not compute on the same thing


#: The note every stage of an ``invalid`` run carries in place of a judgement (docs/identity.md).
NOT_JUDGED_INVALID = ("not judged: the identity check found the reference and candidate do not compute on the same "
                      "thing (see the identity findings)")


#: Severity rank of each status: how a set of clause statuses sums up into one stage status.
STATUS_SEVERITY: dict[str, int] = {status.value: rank for rank, status in enumerate(Status)}
#: Statuses that need no action: the clause held, or it was not evaluated on purpose.
GREEN: tuple[str, ...] = (Status.PASS.value, Status.SKIPPED.value)
#: A bound's direction: ``max`` (observed ≤ value) or ``min`` (observed ≥ value).
BoundOp = Literal["max", "min"]
BOUND_OPS: tuple[str, ...] = ("max", "min")


#: The note of a stage `--stage` left out; `check --merge` fills exactly those stages from the earlier report.
NOT_SELECTED = "not selected (--stage)"


def worst_status(statuses: list[str]) -> str:
    """The most severe status of a list (``skipped`` for an empty list)."""
    return max(statuses, key=STATUS_SEVERITY.__getitem__, default=Status.SKIPPED.value)


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN/Inf: such observations are stored as null with the reason in the message."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def json_safe(value: Any) -> Any:
    """Replace NaN/Inf (anywhere in nested evidence) by None: reports are strict JSON."""
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


@dataclass
class Bound:
    """The limit a clause sets: ``observed <= value`` (op ``max``) or ``observed >= value`` (``min``)."""

    op: BoundOp
    value: float

    def __post_init__(self) -> None:
        if self.op not in BOUND_OPS:
            raise ValueError(f"bound op must be one of {BOUND_OPS}, not {self.op!r}")

    def holds(self, observed: float) -> bool:
        """NaN never satisfies a bound: a non-finite observation fails, it does not slip through."""
        if math.isnan(observed):
            return False
        return observed <= self.value if self.op == "max" else observed >= self.value


#: ClauseResult fields a report leaves out when the clause was not judged (the report schema: optional).
JUDGED_FIELDS = ("interval", "margin", "would_pass", "samples", "p_value")


@dataclass
class ClauseResult:
    """One clause, evaluated: what was measured, against what, and the verdict with its evidence."""

    id: str
    stage: str
    status: Status
    message: str
    metric: str | None = None
    stat: str | None = None
    observed: float | None = None
    bounds: list[Bound] = field(default_factory=list)
    slice: str | None = None
    line: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    # Structured facts of the judgement (judgement.py), so renderers need not parse the message:
    interval: list[float] | None = None  # [low, high] the verdict was judged on (CI or sketch band)
    margin: float | None = None  # signed headroom of `observed` to the tightest bound (+ inside)
    would_pass: dict[str, float] | None = None  # op → the loosest bound value that would have passed
    samples: int | None = None  # positions (numerics), elements (tensors) or sequences (slices) judged
    p_value: float | None = None  # the (multiplicity-adjusted where applied) p-value of the fail claim

    def __post_init__(self) -> None:
        self.status = Status(self.status)  # a stage's typo is a ValueError here, not a wrong report

    def judged(self, verdict: Any, *, low: float | None = None, high: float | None = None,
               samples: int | None = None) -> ClauseResult:
        """Copy a ``judgement.Verdict``'s structured facts (and the interval judged) onto this result."""
        if verdict is not None:
            self.margin = verdict.margin
            self.would_pass = dict(verdict.would_pass) or None
        if low is not None and high is not None:
            self.interval = [low, high]
        self.samples = samples if samples is not None else self.samples
        return self

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["evidence"] = json_safe(self.evidence)
        out["observed"] = finite_or_none(self.observed)
        out["observed_text"] = format_value(self.observed)
        for key in JUDGED_FIELDS:  # absent when not judged
            if out[key] is None:
                del out[key]
            else:
                out[key] = json_safe(out[key])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClauseResult:
        data = {k: v for k, v in data.items() if k != "observed_text"}
        data["bounds"] = [Bound(**b) for b in data.get("bounds", [])]
        return cls(**data)


@dataclass
class StageResult:
    """A stage's clauses plus the stage-level facts (positions scored, timings, notes)."""

    name: str
    status: Status
    clauses: list[ClauseResult] = field(default_factory=list)
    duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.status = Status(self.status)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "duration_s": round(self.duration_s, 6),
            "notes": list(self.notes),
            "details": self.details,
            "clauses": [c.to_dict() for c in self.clauses],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageResult:
        return cls(
            name=data["name"],
            status=data["status"],
            clauses=[ClauseResult.from_dict(c) for c in data["clauses"]],
            duration_s=data.get("duration_s", 0.0),
            notes=list(data.get("notes", [])),
            details=dict(data.get("details", {})),
        )


def bounds_text(bounds: list[Bound], *, fmt: Callable[[float], str] | None = None, sep: str = ", ") -> str:
    """``≤ 0.001`` / ``≥ 0.98`` (joined by ``sep`` when a clause sets both): the one rendering of
    bounds for every stage and report; ``fmt`` defaults to ``format_value``."""
    show = fmt or format_value
    return sep.join(f"{'≤' if b.op == 'max' else '≥'} {show(b.value)}" for b in bounds)


def format_value(value: float | None, digits: int = 4) -> str:
    """Compact, precise rendering of an observed value (``n/a`` for missing, ``nan``/``inf`` kept),
    with ``digits`` significant digits (``comparison_digits`` picks more where a bound needs them)."""
    if value is None:
        return "n/a"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if 1e-3 <= abs(value) < 1e5:
        return f"{value:.{digits}g}"
    return f"{value:.{digits - 1}e}"


#: Never more digits than this: beyond it the difference is float noise, not a finding.
MAX_DIGITS = 12


def comparison_digits(observed: float | None, bounds: list[Bound], *, start: int = 4) -> int:
    """Significant digits that show why ``observed`` passes or fails each of ``bounds``.

    With 4 digits, 1.001409 against a bound of 1.000478 reads ``1.001: required ≤ 1``. Digits are
    added (up to ``MAX_DIGITS``) until each rendered value is within a tenth of the gap between
    observed and bound of its true value, so the printed numbers order as the real ones do and the
    gap between them is visible: ``1.0014: required ≤ 1.0005``.
    """
    if observed is None or not math.isfinite(observed):
        return start
    gaps = [(b.value, abs(observed - b.value)) for b in bounds if math.isfinite(b.value) and b.value != observed]
    digits = start
    while digits < MAX_DIGITS and any(
            abs(float(format_value(x, digits)) - x) > gap / 10 for value, gap in gaps for x in (observed, value)):
        digits += 1
    return digits


def compared(observed: float | None, bounds: list[Bound]) -> tuple[str, str]:
    """``observed`` and ``bounds`` rendered with the digits ``comparison_digits`` picks (bounds as
    ``bounds_text`` writes them): the one formatting of a value against its bound."""
    digits = comparison_digits(observed, bounds)
    return format_value(observed, digits), bounds_text(bounds, fmt=lambda value: format_value(value, digits))
