"""Typed contract: dataclasses built from a schema-valid document, plus the checks a schema cannot
express (unique clause ids, referenced files exist, at least one stage). Paths resolve relative to
the contract file, never the working directory.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promote.bounded import file_problem
from promote.contract.consistency import acknowledged, chain_warnings
from promote.contract.evaluable import crossed_ranges, unevaluable_values
from promote.contract.fault_specs import CalibrationSpec, model_fault_problems, parse_calibration
from promote.contract.kernel_specs import (
    KernelSpec,
    display_path,
    kernel_spec,
    resolve_path,
)
from promote.contract.load import ContractError, LoadedDocument, Problem, load
from promote.contract.observability_spec import observability_problems
from promote.contract.sampled import rl_param, sampled_problems
from promote.contract.stage_specs import ObservabilitySpec, RuntimeSpec, parse_observability, parse_runtime
from promote.contract.statistical import SliceDef, StatisticalSpec, parse_slices, parse_statistical
from promote.resources import load_schema
from promote.sections import BY_SECTION, SECTION_NAMES
from promote.vocabulary import (
    DEFAULT_TIE_MARGIN,
    DEFAULT_VACUOUS_BELOW,
    DIVERGENCE_METRICS,
    PARAMETERIZED_METRICS,
    SHARED_METRICS,
    TENSOR_METRICS,
)

STAGE_SECTIONS = SECTION_NAMES  # stage sections in run order (sections.py)


@dataclass(frozen=True)
class DataSpec:
    path: Path
    display_path: str
    task: str = "causal-lm"
    limit: int | None = None
    inputs_file: Path | None = None  # task tensor: safetensors with `<sample id>/<input name>` tensors
    inputs_file_display: str | None = None


@dataclass(frozen=True)
class TensorOptions:
    """Clause keys of `data.task: tensor` (see stages/tensors.py for how each is used)."""

    output: str | None = None  # key-path glob; None: every output
    rel_floor: float | None = None  # None: 1e-6 · max|r| per sample
    vacuous_below: float = DEFAULT_VACUOUS_BELOW
    on_nonfinite: str = "fail"


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
    max_floor_ratio: float | None = None
    param: float | None = None  # `cap` of ratio_outside, `k` of topk_overlap
    tensor: TensorOptions | None = None  # set for `data.task: tensor`


@dataclass(frozen=True)
class NoiseFloorSpec:
    perturb: tuple[str, ...] = ("rerun", "odd_batch")  # each costs one extra pass; batch 1 only when asked
    odd_batch_size: int = 3
    kernels: tuple[str, ...] = ("reference",)  # whose own noise: the reference, and/or the candidate
    cache: Path | None = None  # directory of cached floors (keyed by kernels and eval set), or None


@dataclass(frozen=True)
class LocalizeSpec:
    factor: float = 10.0
    max_samples: int = 32


@dataclass(frozen=True)
class NumericalSpec:
    clauses: tuple[NumericalClause, ...]
    tie_margin: float = DEFAULT_TIE_MARGIN
    noise_floor: NoiseFloorSpec | None = None
    implications: dict[str, Any] = field(default_factory=dict)
    localize: LocalizeSpec | None = None


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
    numerical: NumericalSpec | None
    statistical: StatisticalSpec | None = None
    runtime: RuntimeSpec | None = None
    observability: ObservabilitySpec | None = None
    escalation: Escalation = field(default_factory=Escalation)
    #: Consistency warning ids the contract acknowledges (`consistency.ignore`, top level and numerical).
    consistency_ignore: tuple[str, ...] = ()
    calibration: CalibrationSpec = field(default_factory=CalibrationSpec)  # `promote calibrate` (fault_specs.py)

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
        if section not in BY_SECTION:
            raise KeyError(f"unknown stage section {section!r}")
        return getattr(self, section)

    def sections(self) -> tuple[str, ...]:
        """Stage sections present in the contract, in stage order."""
        return tuple(s for s in STAGE_SECTIONS if self.spec(s) is not None)

    def clause_lines(self, section: str) -> list[tuple[str, int | None]]:
        """(clause id, contract line) of every clause of a section, in contract order."""
        spec = self.spec(section)
        return [(c.id, c.line) for c in spec.clauses] if spec is not None else []

    @property
    def needs_evalset(self) -> bool:
        """Whether any stage present reads the eval set (observability alone does not)."""
        return any(BY_SECTION[s].needs_evalset for s in self.sections())


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


def _numerical(doc: LoadedDocument, raw: dict[str, Any], task: str = "causal-lm") -> NumericalSpec:
    clauses = tuple(
        NumericalClause(
            id=c["id"], metric=c["metric"], stat=c["stat"], max=c.get("max"), min=c.get("min"),
            max_floor_ratio=c.get("max_floor_ratio"),
            param=c.get("cap", c.get("k", rl_param(c["metric"], raw.get("implications", {})))),
            severity=c.get("severity", "fail"), description=c.get("description"),
            line=doc.locate(("numerical", "clauses", i))[0],
            tensor=_tensor_options(c) if task == "tensor" else None,
        )
        for i, c in enumerate(raw["clauses"])
    )
    floor = raw.get("noise_floor")
    noise_floor = None
    if floor is not None:
        cache = floor.get("cache") or os.environ.get("PROMOTE_FLOOR_CACHE") or None
        noise_floor = NoiseFloorSpec(perturb=tuple(floor.get("perturb", NoiseFloorSpec.perturb)),
                                     odd_batch_size=floor.get("odd_batch_size", 3),
                                     kernels=tuple(floor.get("kernels", NoiseFloorSpec.kernels)),
                                     cache=resolve_path(doc, cache).resolve() if cache else None)
    localize = raw.get("localize", False)
    if localize is True:
        localize = {}
    return NumericalSpec(clauses=clauses, tie_margin=raw.get("tie_margin", DEFAULT_TIE_MARGIN), noise_floor=noise_floor,
                         implications=dict(raw.get("implications", {})),
                         localize=LocalizeSpec(**localize) if localize is not False else None)


def _parameter_keys_fit(doc: LoadedDocument, problems: list[Problem]) -> None:
    for index, clause in enumerate((doc.data.get("numerical") or {}).get("clauses", [])):
        for key in {k for k, _ in PARAMETERIZED_METRICS.values()}:
            takes = [m for m, (k, _) in PARAMETERIZED_METRICS.items() if k == key]
            if key in clause and clause["metric"] not in takes:
                problems.append(doc.problem(("numerical", "clauses", index, key), f"`{key}` applies to metric"
                                            f"{'s' if len(takes) > 1 else ''} {', '.join(f'`{m}`' for m in takes)}"
                                            f" only (this clause's metric is `{clause['metric']}`)", key=True))


def _floor_clauses_have_a_floor(doc: LoadedDocument, problems: list[Problem]) -> None:
    numerical = doc.data.get("numerical") or {}
    for index, clause in enumerate(numerical.get("clauses", [])):
        if "max_floor_ratio" in clause and clause["metric"] not in DIVERGENCE_METRICS:
            problems.append(doc.problem(("numerical", "clauses", index, "max_floor_ratio"),
                                        f"`max_floor_ratio` needs a metric where larger is worse; `{clause['metric']}`"
                                        f" is not one (use one of {', '.join(DIVERGENCE_METRICS)})", key=True))
        elif "max_floor_ratio" in clause and "noise_floor" not in numerical:
            problems.append(doc.problem(("numerical", "clauses", index, "max_floor_ratio"),
                                        f"clause `{clause['id']}` bounds `max_floor_ratio` but no noise floor is "
                                        "measured; add `numerical.noise_floor: {perturb: [rerun, batch_size]}`",
                                        key=True))


def _tensor_options(raw: dict[str, Any]) -> TensorOptions:
    return TensorOptions(output=raw.get("output"), rel_floor=raw.get("rel_floor"),
                         vacuous_below=raw.get("vacuous_below", DEFAULT_VACUOUS_BELOW),
                         on_nonfinite=raw.get("on_nonfinite", "fail"))


_TENSOR_KEYS = ("output", "rel_floor", "vacuous_below", "on_nonfinite")


def _task_checks(doc: LoadedDocument, problems: list[Problem]) -> None:
    """Metrics and clause keys must fit `data.task`: an LM metric means nothing on a tensor output."""
    if "data" not in doc.data:
        return  # no eval set (observability only): no task to fit
    task = doc.data["data"].get("task", "causal-lm")
    for index, clause in enumerate((doc.data.get("numerical") or {}).get("clauses", [])):
        metric = clause["metric"]
        if task == "tensor" and metric not in TENSOR_METRICS:
            problems.append(doc.problem(("numerical", "clauses", index, "metric"),
                                        f"metric `{metric}` is a causal-LM metric but `data.task` is `tensor`; "
                                        f"tensor metrics: {', '.join(TENSOR_METRICS)}"))
        elif task != "tensor" and metric in TENSOR_METRICS and metric not in SHARED_METRICS:
            problems.append(doc.problem(("numerical", "clauses", index, "metric"),
                                        f"metric `{metric}` compares generic tensors and needs `data.task: tensor` "
                                        f"(this contract's task is `{task}`)"))
        if "rel_floor" in clause and metric != "rel":
            problems.append(doc.problem(("numerical", "clauses", index, "rel_floor"),
                                        f"`rel_floor` applies to metric `rel` only (this clause's metric is "
                                        f"`{metric}`)", key=True))
        for key in _TENSOR_KEYS if task != "tensor" else ():
            if key in clause:
                problems.append(doc.problem(("numerical", "clauses", index, key),
                                            f"`{key}` applies to `data.task: tensor` only (this contract's task "
                                            f"is `{task}`)", key=True))
    if task == "tensor" and "tie_margin" in (doc.data.get("numerical") or {}):
        problems.append(doc.problem(("numerical", "tie_margin"), "`tie_margin` is about causal-LM argmax flips and "
                                    "is ignored with `data.task: tensor`", key=True, severity="warning"))
    if "inputs_file" in doc.data["data"] and task != "tensor":
        problems.append(doc.problem(("data", "inputs_file"), "`inputs_file` needs `data.task: tensor`", key=True))


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


def _live_kernel_checks(doc: LoadedDocument, problems: list[Problem]) -> None:
    """Features that re-run kernels need kernels that can run: records cannot be re-run, and module
    hooks exist only on torch modules."""
    numerical = doc.data.get("numerical") or {}
    if not all(role in doc.data for role in ("reference", "candidate")):
        return  # no kernels (observability only; the schema requires both for any stage that runs them)
    kinds = {role: doc.data[role]["kind"] for role in ("reference", "candidate")}
    if "noise_floor" in numerical and kinds["reference"] == "records":
        problems.append(doc.problem(("numerical", "noise_floor"), "a noise floor re-runs the reference, but a "
                                    "`records` reference cannot be re-run; use a live reference (torch or onnx) "
                                    "or drop `noise_floor`", key=True))
    if numerical.get("localize") and set(kinds.values()) != {"torch"}:
        problems.append(doc.problem(("numerical", "localize"), "`localize` hooks module outputs and needs two "
                                    f"`torch` kernels (here: reference {kinds['reference']}, candidate "
                                    f"{kinds['candidate']})", key=True))


def _data_spec(doc: LoadedDocument, present: list[str], problems: list[Problem]) -> DataSpec:
    """The eval set; its files must exist only when a present stage reads it (observability does not)."""
    raw_data = doc.data["data"]
    data_path = resolve_path(doc, raw_data["path"]).resolve()
    needs_data = any(BY_SECTION[s].needs_evalset for s in present)
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
        if not BY_SECTION[section].evaluated:
            problems.append(doc.problem((section,), f"stage `{section}` is not evaluated by this version of "
                                        "promote; its clauses will report `error` (exit 3) when the stage runs",
                                        key=True, severity="warning"))
    _clause_ids(doc, problems)
    # Schema-valid documents from load() have no unevaluable values; a document built another way
    # (tests, tools) gets the same guarantee here rather than a crash in `check`.
    problems.extend(unevaluable_values(doc))
    problems.extend(crossed_ranges(doc))
    _floor_clauses_have_a_floor(doc, problems)
    _parameter_keys_fit(doc, problems)
    problems.extend(chain_warnings(doc))
    _task_checks(doc, problems)
    _live_kernel_checks(doc, problems)
    problems.extend(observability_problems(doc))
    problems.extend(sampled_problems(doc))
    problems.extend(model_fault_problems(doc))
    reference, candidate = (kernel_spec(doc, role, data[role], problems) if role in data else None
                            for role in ("reference", "candidate"))
    data_spec = _data_spec(doc, present, problems) if "data" in data else None
    slices = parse_slices(doc, data.get("slices", []), problems)
    statistical = parse_statistical(doc, data["statistical"], slices, problems) if "statistical" in data else None
    runtime = parse_runtime(doc, data["runtime"], problems) if "runtime" in data else None
    calibration = parse_calibration(doc, data.get("calibration"), problems)
    if any(p.severity == "error" for p in problems):
        return None, problems
    contract = Contract(
        version=data["version"], name=data["name"], description=data.get("description"), source=doc,
        reference=reference, candidate=candidate,
        data=data_spec,
        slices=slices,
        numerical=_numerical(doc, data["numerical"], data_spec.task if data_spec else "causal-lm")
        if "numerical" in data else None,
        statistical=statistical,
        runtime=runtime,
        observability=parse_observability(doc, data["observability"]) if "observability" in data else None,
        escalation=_escalation(data.get("escalation")),
        consistency_ignore=acknowledged(data),
        calibration=calibration,
    )
    return contract, problems


def load_contract(path: str | os.PathLike[str], *, env: dict[str, str] | None = None) -> tuple[Contract, list[Problem]]:
    """Parse, schema-check and build a contract: (contract, warnings); ContractError lists every error."""
    contract, problems = build_contract(load(path, load_schema("contract"), env=env))
    if contract is None:
        raise ContractError(sorted(problems, key=lambda p: p.severity != "error"))  # errors first, order kept
    return contract, problems
