"""Typed contract: dataclasses built from a schema-valid document, plus the checks a schema cannot
express (unique clause ids, referenced files exist, at least one stage). Paths resolve relative to
the contract file, never the working directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promote.contract.load import ContractError, LoadedDocument, Problem, load
from promote.contract.statistical import SliceDef, StatisticalSpec, parse_slices, parse_statistical
from promote.resources import load_schema

STAGE_SECTIONS = ("numerical", "statistical", "runtime", "observability")
IMPLEMENTED_SECTIONS = ("numerical", "statistical")


@dataclass(frozen=True)
class TorchKernelSpec:
    """`kind: torch` — see schemas/contract.schema.json for each field's meaning."""

    kind: str
    model: str
    model_file: Path | None
    module: str | None
    factory: str
    weights: Path | None
    weights_display: str | None
    precision: str = "fp32"
    device: str = "cpu"
    batch_size: int = 16
    threads: int | None = None

    def summary(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model, "weights": self.weights_display,
                "precision": self.precision, "device": self.device, "batch_size": self.batch_size}


@dataclass(frozen=True)
class DataSpec:
    path: Path
    display_path: str
    task: str = "causal-lm"
    limit: int | None = None


@dataclass(frozen=True)
class NumericalClause:
    id: str
    metric: str
    stat: str
    max: float | None
    min: float | None
    severity: str
    description: str | None
    line: int | None


@dataclass(frozen=True)
class NumericalSpec:
    clauses: tuple[NumericalClause, ...]
    tie_margin: float = 1e-3


@dataclass(frozen=True)
class StageSpec:
    """A stage section this version stores but does not evaluate (its clauses report `error`)."""

    section: str
    raw: dict[str, Any]
    clause_lines: dict[str, int | None]


@dataclass(frozen=True)
class Rule:
    stage: str | None
    clause: str | None
    statuses: tuple[str, ...] | None
    slice: str | None
    action: str
    index: int


@dataclass(frozen=True)
class Escalation:
    default: str = "block"
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class Contract:
    version: int
    name: str
    description: str | None
    source: LoadedDocument
    reference: TorchKernelSpec
    candidate: TorchKernelSpec
    data: DataSpec
    slices: tuple[SliceDef, ...]
    numerical: NumericalSpec | None
    statistical: StatisticalSpec | None = None
    other_stages: dict[str, StageSpec] = field(default_factory=dict)
    escalation: Escalation = field(default_factory=Escalation)

    @property
    def path(self) -> Path:
        return self.source.path

    @property
    def sha256(self) -> str:
        return self.source.sha256

    def sections(self) -> tuple[str, ...]:
        """Stage sections present in the contract, in stage order."""
        present = {"numerical"} if self.numerical else set()
        present |= {"statistical"} if self.statistical else set()
        present |= set(self.other_stages)
        return tuple(s for s in STAGE_SECTIONS if s in present)


def _resolve(doc: LoadedDocument, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (doc.path.parent / path)


def _display(doc: LoadedDocument, value: str) -> str:
    """A referenced path as a user can open it: relative to the working directory when possible."""
    resolved = _resolve(doc, value).resolve()
    try:
        return str(resolved.relative_to(Path.cwd()))
    except ValueError:
        return str(resolved)


def _kernel(doc: LoadedDocument, role: str, raw: dict[str, Any], problems: list[Problem]) -> TorchKernelSpec:
    target, _, factory = raw["model"].rpartition(":")
    model_file = module = None
    if target.endswith(".py") or "/" in target or os.sep in target:
        model_file = _resolve(doc, target).resolve()
        if not model_file.is_file():
            problems.append(doc.problem((role, "model"), f"model file `{target}` not found (looked for "
                                        f"{model_file}); paths are relative to the contract file"))
    else:
        module = target
    weights = weights_display = None
    if "weights" in raw:
        weights = _resolve(doc, raw["weights"]).resolve()
        weights_display = _display(doc, raw["weights"])
        if not weights.is_file():
            problems.append(doc.problem((role, "weights"), f"weights file `{raw['weights']}` not found (looked for "
                                        f"{weights}); paths are relative to the contract file"))
    return TorchKernelSpec(
        kind="torch", model=raw["model"], model_file=model_file, module=module, factory=factory,
        weights=weights, weights_display=weights_display, precision=raw.get("precision", "fp32"),
        device=raw.get("device", "cpu"), batch_size=raw.get("batch_size", 16), threads=raw.get("threads"),
    )


def _clause_ids(doc: LoadedDocument, problems: list[Problem]) -> None:
    seen: dict[str, int | None] = {}
    for section in STAGE_SECTIONS:
        for index, clause in enumerate((doc.data.get(section) or {}).get("clauses", [])):
            where = (section, "clauses", index, "id")
            line, _ = doc.locate(where)
            clause_id = clause["id"]
            if clause_id in seen:
                first = f" (first used at line {seen[clause_id]})" if seen[clause_id] else ""
                problems.append(doc.problem(where, f"duplicate clause id `{clause_id}`{first}; clause ids must be "
                                            "unique across the contract"))
            else:
                seen[clause_id] = line


def _numerical(doc: LoadedDocument, raw: dict[str, Any]) -> NumericalSpec:
    clauses = tuple(
        NumericalClause(
            id=c["id"], metric=c["metric"], stat=c["stat"], max=c.get("max"), min=c.get("min"),
            severity=c.get("severity", "fail"), description=c.get("description"),
            line=doc.locate(("numerical", "clauses", i))[0],
        )
        for i, c in enumerate(raw["clauses"])
    )
    return NumericalSpec(clauses=clauses, tie_margin=raw.get("tie_margin", 1e-3))


def _escalation(raw: dict[str, Any] | None) -> Escalation:
    if not raw:
        return Escalation()
    rules = []
    for index, rule in enumerate(raw.get("rules", [])):
        when = rule["when"]
        status = when.get("status")
        statuses = (status,) if isinstance(status, str) else (tuple(status) if status else None)
        rules.append(Rule(stage=when.get("stage"), clause=when.get("clause"), statuses=statuses,
                          slice=when.get("slice"), action=rule["action"], index=index))
    return Escalation(default=raw.get("default", "block"), rules=tuple(rules))


def build_contract(doc: LoadedDocument) -> tuple[Contract | None, list[Problem]]:
    """Typed contract from a schema-valid document, with every semantic problem found.

    Returns ``(contract, problems)``; ``contract`` is None when any problem is an error.
    Warnings (e.g. a stage this version does not evaluate) come back with a contract.
    """
    data = doc.data
    problems: list[Problem] = []
    present = [s for s in STAGE_SECTIONS if s in data]
    if not present:
        problems.append(doc.problem((), "the contract names no stage: add at least one of "
                                    + ", ".join(f"`{s}`" for s in STAGE_SECTIONS) + " with clauses"))
    for section in present:
        if section not in IMPLEMENTED_SECTIONS:
            problems.append(doc.problem((section,), f"stage `{section}` is not evaluated by this version of "
                                        "promote; its clauses will report `error` (exit 3) when the stage runs",
                                        key=True, severity="warning"))
    _clause_ids(doc, problems)
    reference = _kernel(doc, "reference", data["reference"], problems)
    candidate = _kernel(doc, "candidate", data["candidate"], problems)
    raw_data = data["data"]
    data_path = _resolve(doc, raw_data["path"]).resolve()
    if not data_path.is_file():
        problems.append(doc.problem(("data", "path"), f"data file `{raw_data['path']}` not found (looked for "
                                    f"{data_path}); paths are relative to the contract file"))
    slices = parse_slices(doc, data.get("slices", []), problems)
    statistical = parse_statistical(doc, data["statistical"], slices, problems) if "statistical" in data else None
    if any(p.severity == "error" for p in problems):
        return None, problems
    other = {
        s: StageSpec(section=s, raw=data[s], clause_lines={
            c["id"]: doc.locate((s, "clauses", i))[0] for i, c in enumerate(data[s]["clauses"])})
        for s in present if s not in IMPLEMENTED_SECTIONS
    }
    contract = Contract(
        version=data["version"], name=data["name"], description=data.get("description"), source=doc,
        reference=reference, candidate=candidate,
        data=DataSpec(path=data_path, display_path=_display(doc, raw_data["path"]),
                      task=raw_data.get("task", "causal-lm"), limit=raw_data.get("limit")),
        slices=slices,
        numerical=_numerical(doc, data["numerical"]) if "numerical" in data else None,
        statistical=statistical,
        other_stages=other, escalation=_escalation(data.get("escalation")),
    )
    return contract, problems


def load_contract(path: str | os.PathLike[str], *, env: dict[str, str] | None = None) -> tuple[Contract, list[Problem]]:
    """Parse, schema-check and build a contract; raise ContractError listing every error.

    Returns the contract and its warnings.
    """
    doc = load(path, load_schema("contract"), env=env)
    contract, problems = build_contract(doc)
    if contract is None:
        raise ContractError([p for p in problems if p.severity == "error"] +
                            [p for p in problems if p.severity != "error"])
    return contract, problems
