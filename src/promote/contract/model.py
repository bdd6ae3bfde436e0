"""Typed contract: dataclasses built from a schema-valid document, plus the checks a schema cannot
express (unique clause ids, referenced files exist, at least one stage). Paths resolve relative to
the contract file, never the working directory.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from promote.bounded import file_problem
from promote.contract.consistency import acknowledged, chain_warnings
from promote.contract.evaluable import crossed_ranges, unevaluable_values
from promote.contract.fault_specs import CalibrationSpec, model_fault_problems, parse_calibration
from promote.contract.identity_spec import IdentitySpec, parse_identity
from promote.contract.kernel_specs import KernelSpec, display_path, kernel_spec, resolve_path
from promote.contract.load import ContractError, LoadedDocument, Problem, load
from promote.contract.plugins import contract_schema
from promote.contract.sampled import sampled_problems
from promote.contract.statistical import SliceDef, parse_slices
from promote.sections import by_section, decls, section_names


@dataclass(frozen=True)
class DataSpec:
    path: Path
    display_path: str
    task: str = "causal-lm"
    limit: int | None = None
    inputs_file: Path | None = None  # task tensor: safetensors with `<sample id>/<input name>` tensors
    inputs_file_display: str | None = None


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
    # None in a contract whose stages need neither (observability only: sections.py's needs).
    reference: KernelSpec | None
    candidate: KernelSpec | None
    data: DataSpec | None
    slices: tuple[SliceDef, ...]
    # section name -> that stage's typed spec (its parser: the stage's package, via sections.STAGES),
    # only the sections present, in stage order.
    sections: dict[str, Any] = field(default_factory=dict)
    escalation: Escalation = field(default_factory=Escalation)
    #: Consistency warning ids the contract acknowledges (`consistency.ignore`, top level and numerical).
    consistency_ignore: tuple[str, ...] = ()
    calibration: CalibrationSpec = field(default_factory=CalibrationSpec)  # `promote calibrate` (fault_specs.py)
    identity: IdentitySpec = field(default_factory=IdentitySpec)  # `identity:` (identity_spec.py, docs/identity.md)

    @property
    def path(self) -> Path:
        return self.source.path

    @property
    def sha256(self) -> str:
        """sha256 of the contract as evaluated: its data after ``${VAR}`` interpolation, as canonical
        JSON (sorted keys, no spaces). Two runs with different values for a variable (another
        candidate, another bound) get different hashes, so ``--merge`` cannot mix them up."""
        text = json.dumps(self.source.data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @property
    def raw_sha256(self) -> str:
        """sha256 of the contract file's bytes, before interpolation."""
        return self.source.sha256

    @property
    def variables(self) -> dict[str, str]:
        """Environment variables the contract's ``${...}`` references took values from."""
        return dict(self.source.variables)

    def spec(self, section: str) -> Any:
        """The typed spec of a stage section (``numerical``, ``runtime``, …), None when absent."""
        by_section(section)  # KeyError for a section no stage declares
        return self.sections.get(section)

    def present(self) -> tuple[str, ...]:
        """Stage sections present in the contract, in stage order."""
        return tuple(s for s in section_names() if s in self.sections)

    def with_section(self, section: str, spec: Any) -> Contract:
        """This contract with section ``section`` replaced (``dataclasses.replace`` for a stage spec)."""
        return replace(self, sections={s: (spec if s == section else v) for s, v in self.sections.items()})

    # Read accessors of the built-in sections (lower layers and tests read them by name).
    numerical = property(lambda self: self.sections.get("numerical"))
    statistical = property(lambda self: self.sections.get("statistical"))
    runtime = property(lambda self: self.sections.get("runtime"))
    observability = property(lambda self: self.sections.get("observability"))

    def clause_lines(self, section: str) -> list[tuple[str, int | None]]:
        """(clause id, contract line) of every clause of a section, in contract order."""
        spec = self.spec(section)
        return [(c.id, c.line) for c in spec.clauses] if spec is not None else []

    @property
    def needs_evalset(self) -> bool:
        """Whether any stage present reads the eval set (observability alone does not)."""
        return any(by_section(s).needs_evalset for s in self.present())


def _clause_ids(doc: LoadedDocument, problems: list[Problem]) -> None:
    seen: dict[str, int | None] = {}
    for section in section_names():
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


def _data_spec(doc: LoadedDocument, present: list[str], problems: list[Problem]) -> DataSpec:
    """The eval set; its files must exist only when a present stage reads it (observability does not)."""
    raw_data = doc.data["data"]
    data_path = resolve_path(doc, raw_data["path"]).resolve()
    needs_data = any(by_section(s).needs_evalset for s in present)
    problem = needs_data and file_problem(data_path, raw_data["path"], "data file")
    if problem:
        problems.append(doc.problem(("data", "path"), problem))
    inputs_file = inputs_display = None
    if "inputs_file" in raw_data:
        inputs_file = resolve_path(doc, raw_data["inputs_file"]).resolve()
        inputs_display = display_path(doc, raw_data["inputs_file"])
        problem = needs_data and file_problem(inputs_file, raw_data["inputs_file"], "inputs file")
        if problem:
            problems.append(doc.problem(("data", "inputs_file"), problem))
    return DataSpec(path=data_path, display_path=display_path(doc, raw_data["path"]),
                    task=raw_data.get("task", "causal-lm"), limit=raw_data.get("limit"),
                    inputs_file=inputs_file, inputs_file_display=inputs_display)


def _stage_problems(doc: LoadedDocument, present: list[str], problems: list[Problem]) -> None:
    if not present:
        problems.append(doc.problem((), "the contract names no stage: add at least one of "
                                    + ", ".join(f"`{s}`" for s in section_names()) + " with clauses"))
    for section in present:
        if not by_section(section).evaluated:
            problems.append(doc.problem((section,), f"stage `{section}` is not evaluated by this version of "
                                        "promote; its clauses will report `error` (exit 3) when the stage runs",
                                        key=True, severity="warning"))


@dataclass(frozen=True)
class RawClause:
    id: str
    line: int | None


@dataclass(frozen=True)
class RawSection:
    """A section typed no further than its clauses' ids and lines, and the section as written: a
    declared stage this version does not implement (its clauses report ``error``), or a stage whose
    parser keeps the raw section (``stages.api.Stage.parse``'s default)."""

    clauses: tuple[RawClause, ...]
    raw: Any


def raw_section(doc: LoadedDocument, section: str, raw: Any) -> RawSection:
    clauses = (raw or {}).get("clauses", []) if isinstance(raw, dict) else []
    return RawSection(tuple(RawClause(c.get("id", f"{section}[{i}]"), doc.locate((section, "clauses", i))[0])
                            for i, c in enumerate(clauses)), raw)


def _sections(doc: LoadedDocument, parts: dict[str, Any], problems: list[Problem]) -> dict[str, Any]:
    """Each present stage section typed by its stage's own parser (``stages.api.Stage.parse``)."""
    out: dict[str, Any] = {}
    for decl in decls():
        if decl.section in doc.data:
            stage = decl.implementation()
            raw = doc.data[decl.section]
            out[decl.section] = stage.parse(doc, raw, problems, parts) if stage is not None else \
                raw_section(doc, decl.section, raw)
    return out


def build_contract(doc: LoadedDocument) -> tuple[Contract | None, list[Problem]]:
    """Typed contract from a schema-valid document, with every semantic problem found.

    Returns ``(contract, problems)``; ``contract`` is None when any problem is an error.
    Warnings (e.g. a stage this version does not evaluate) come back with a contract.
    """
    data = doc.data
    problems: list[Problem] = []
    present = [s for s in section_names() if s in data]
    _stage_problems(doc, present, problems)
    _clause_ids(doc, problems)
    # Schema-valid documents from load() have no unevaluable values; a document built another way
    # (tests, tools) gets the same guarantee here rather than a crash in `check`.
    problems.extend(unevaluable_values(doc))
    problems.extend(crossed_ranges(doc))
    problems.extend(chain_warnings(doc))
    for decl in decls():  # each stage's own checks of the document (stages.api.Stage.problems)
        stage = decl.implementation()
        if stage is not None:
            problems.extend(stage.problems(doc))
    problems.extend(sampled_problems(doc))
    problems.extend(model_fault_problems(doc))
    reference, candidate = (kernel_spec(doc, role, data[role], problems) if role in data else None
                            for role in ("reference", "candidate"))
    data_spec = _data_spec(doc, present, problems) if "data" in data else None
    slices = parse_slices(doc, data.get("slices", []), problems)
    parts = {"task": data_spec.task if data_spec else None, "slices": slices}
    sections = _sections(doc, parts, problems)
    calibration = parse_calibration(doc, data.get("calibration"), problems)
    identity = parse_identity(doc, data.get("identity"), problems)
    if any(p.severity == "error" for p in problems):
        return None, problems
    contract = Contract(
        version=data["version"], name=data["name"], description=data.get("description"), source=doc,
        reference=reference, candidate=candidate, data=data_spec, slices=slices, sections=sections,
        escalation=_escalation(data.get("escalation")),
        consistency_ignore=acknowledged(data),
        calibration=calibration,
        identity=identity,
    )
    return contract, problems


def load_contract(path: str | os.PathLike[str], *, env: dict[str, str] | None = None) -> tuple[Contract, list[Problem]]:
    """Parse, schema-check and build a contract: (contract, warnings); ContractError lists every error.
    The schema is the shipped one plus what registered plug-ins add (contract/plugins.py)."""
    contract, problems = build_contract(load(path, contract_schema(), env=env))
    if contract is None:
        raise ContractError(sorted(problems, key=lambda p: p.severity != "error"))  # errors first, order kept
    return contract, problems
