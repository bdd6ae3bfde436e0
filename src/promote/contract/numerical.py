"""Typed `numerical:` section (stage 1, offline numerics) and the checks a schema cannot express.

The numerics stage (``stages/numerics``) names ``parse_numerical`` and ``numerical_problems`` as its
parser; the types live in the contract layer because lower layers read them too (the RL monitor builds
``NumericalClause``s, calibration derives bounds from them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promote.contract.kernel_specs import resolve_path
from promote.contract.kinds import MODULES, RERUN, capabilities_of
from promote.contract.load import LoadedDocument, Problem
from promote.contract.sampled import rl_param
from promote.vocabulary import (
    DEFAULT_TIE_MARGIN,
    DEFAULT_VACUOUS_BELOW,
    DIVERGENCE_METRICS,
    PARAMETERIZED_METRICS,
    SHARED_METRICS,
    TENSOR_METRICS,
    never_fails,
    range_text,
)


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
    return NumericalSpec(clauses=clauses, tie_margin=raw.get("tie_margin", DEFAULT_TIE_MARGIN),
                         noise_floor=noise_floor,
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


def _bounds_can_fail(doc: LoadedDocument, problems: list[Problem]) -> None:
    """A written bound at or beyond the end of the metric's range (`tv` max 1, `argmax_agree` min 0) can
    never fail: the clause would pass whatever the kernels do. `calibrate --derive` refuses such a bound;
    so must `validate`, or `check` would report a pass that no run could have turned into a fail."""
    for index, clause in enumerate((doc.data.get("numerical") or {}).get("clauses", [])):
        for op in ("max", "min"):
            bound = clause.get(op)
            if isinstance(bound, bool) or not isinstance(bound, (int, float)):
                continue  # the schema reports a non-number
            metric, stat = clause.get("metric", ""), clause.get("stat")
            if never_fails(op, float(bound), metric, stat):
                problems.append(doc.problem(
                    ("numerical", "clauses", index, op),
                    f"clause `{clause.get('id')}`: `{op}: {bound}` can never fail: `{metric}`"
                    f"{f' ({stat})' if stat else ''} lies in {range_text(metric, stat)}; write a bound inside "
                    "that range with room beyond it (or derive one: `promote calibrate --derive`)"))


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


def _live_kernel_checks(doc: LoadedDocument, problems: list[Problem]) -> None:
    """Features that re-run kernels need kernels that can run: records cannot be re-run, and module
    hooks exist only on torch modules."""
    numerical = doc.data.get("numerical") or {}
    if not all(role in doc.data for role in ("reference", "candidate")):
        return  # no kernels (observability only; the schema requires both for any stage that runs them)
    kinds = {role: doc.data[role]["kind"] for role in ("reference", "candidate")}
    if "noise_floor" in numerical and RERUN not in capabilities_of(kinds["reference"]):
        problems.append(doc.problem(("numerical", "noise_floor"), "a noise floor re-runs the reference, but a "
                                    f"`{kinds['reference']}` reference cannot be re-run; use a live reference (torch "
                                    "or onnx) or drop `noise_floor`", key=True))
    if numerical.get("localize") and not all(MODULES in capabilities_of(k) for k in kinds.values()):
        problems.append(doc.problem(("numerical", "localize"), "`localize` hooks module outputs and needs two "
                                    f"`torch` kernels (here: reference {kinds['reference']}, candidate "
                                    f"{kinds['candidate']})", key=True))


def numerical_problems(doc: LoadedDocument) -> list[Problem]:
    """What the schema cannot say about `numerical:` (floors, parameters, task fit, live kernels)."""
    problems: list[Problem] = []
    _floor_clauses_have_a_floor(doc, problems)
    _bounds_can_fail(doc, problems)
    _parameter_keys_fit(doc, problems)
    _task_checks(doc, problems)
    _live_kernel_checks(doc, problems)
    return problems


def parse_numerical(doc: LoadedDocument, raw: dict[str, Any], problems: list[Problem],
                    parts: dict[str, Any]) -> NumericalSpec:
    """The typed section; ``parts["task"]`` is `data.task` (tensor clauses carry their own options)."""
    return _numerical(doc, raw, parts.get("task") or "causal-lm")
