"""Stage 1, offline numerics for `data.task: tensor`: non-LM models compared output by output.

Both kernels run batch by batch; each output key path (``scores``, ``hidden_states[3]``) gets its own
streaming summaries (``metrics.summary.MetricSummary``) of the per-element metrics (abs, rel, ulp,
nonfinite) and the per-sample ones (cosine, sqnr), so memory is O(batch) whatever the eval set's
size. Then every clause is judged once per output its ``output`` glob selects, as a ClauseResult
with ``slice: output=PATH`` (policy rules can match it), in this order — the first that applies:

1. the output is missing on one side → ``fail`` naming the side and the other side's outputs;
2. shapes or dtype kinds differ → ``fail`` naming both shapes / dtypes;
3. no element was compared (zero-size) → ``vacuous``;
4. non-finite elements the clause's ``on_nonfinite`` does not allow → the clause's severity;
5. both sides all-zero, constant, or tiny (``vacuous_below``) → ``vacuous``;
6. the statistic against the bounds → pass / fail (severity) / inconclusive (sketched quantile band).

A clause whose glob selects nothing is an ``error``, and so is every clause when the kernels have no
output in common: neither is ever a pass (Polygraphy's rule).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from promote import judgement
from promote.contract.model import NumericalClause, NumericalSpec, TensorOptions
from promote.data import EvalSet
from promote.engine.passes import tensor_pass
from promote.kernels.base import Kernel
from promote.metrics.summary import MetricSummary
from promote.metrics.tensor import (
    Range,
    compile_glob,
    dtype_kind,
    element_metrics,
    tensor_metrics,
    vacuous_reason,
)
from promote.results import Bound, ClauseResult, StageResult, bounds_text, format_value, json_safe, worst_status
from promote.vocabulary import ELEMENT_METRICS, TENSOR_LEVEL_METRICS

STAGE = "numerics"
SIDES = ("reference", "candidate")
_EXAMPLES = 3  # examples kept per problem (sample ids, non-finite elements)


class _At:
    """A read-only sequence computed per index, so a summary can name the few worst elements without
    one sample-id string per element being built."""

    def __init__(self, fn: Callable[[int], Any]) -> None:
        self._fn = fn

    def __getitem__(self, i: int) -> Any:
        return self._fn(int(i))


def rel_key(floor: float | None) -> str:
    return "rel" if floor is None else f"rel@{floor!r}"


@dataclass
class OutputAccumulator:
    """Everything kept about one output key path across batches."""

    path: str
    rel_floors: tuple[float, ...] = ()
    summaries: dict[str, MetricSummary] = field(default_factory=dict)
    ranges: dict[str, Range] = field(default_factory=lambda: {s: Range() for s in SIDES})
    dtypes: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in SIDES})
    shapes: list[tuple[int, ...]] = field(default_factory=list)
    missing: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in SIDES})
    missing_count: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIDES, 0))
    problems: list[str] = field(default_factory=list)
    samples: int = 0
    elements: int = 0
    nonfinite: int = 0  # elements with a NaN/±Inf on either side
    matching: int = 0  # … of which both sides hold the same ±Inf
    nonfinite_examples: list[dict[str, Any]] = field(default_factory=list)
    floored: dict[str, int] = field(default_factory=dict)
    both_zero: int = 0  # samples all-zero on both sides (left out of cosine/sqnr)

    def __post_init__(self) -> None:
        for name in (*ELEMENT_METRICS, *TENSOR_LEVEL_METRICS):
            self.summaries.setdefault(name, MetricSummary(name))
        for floor in self.rel_floors:
            self.summaries.setdefault(rel_key(floor), MetricSummary("rel"))

    def summary(self, metric: str, floor: float | None) -> MetricSummary:
        return self.summaries[rel_key(floor) if metric == "rel" else metric]

    def _problem(self, message: str) -> None:
        if message not in self.problems and len(self.problems) < _EXAMPLES:
            self.problems.append(message)

    def update(self, ids: list[str], ref: np.ndarray | None, cand: np.ndarray | None, dtypes: dict[str, str]) -> None:
        """Add one batch's output at this key path (None: that kernel did not return it)."""
        for side, array in zip(SIDES, (ref, cand), strict=True):
            if array is None:
                self.missing_count[side] += len(ids)
                self.missing[side] = (self.missing[side] + ids)[:_EXAMPLES]
            elif dtypes[side] not in self.dtypes[side]:
                self.dtypes[side].append(dtypes[side])
        if ref is None or cand is None:
            return
        if dtype_kind(dtypes["reference"]) != dtype_kind(dtypes["candidate"]):
            self._problem(f"dtypes differ in kind: reference {dtypes['reference']}, candidate {dtypes['candidate']}")
            return
        if ref.shape != cand.shape:
            self._problem(f"shapes differ: reference {list(ref.shape)}, candidate {list(cand.shape)} "
                          f"(batch of samples {', '.join(ids[:_EXAMPLES])}{', …' if len(ids) > _EXAMPLES else ''})")
            return
        rows = ref.shape[0]
        r, c = ref.reshape(rows, -1), cand.reshape(rows, -1)
        n = r.shape[1]
        self.samples += rows
        self.elements += r.size
        if ref.shape[1:] not in self.shapes:
            self.shapes.append(ref.shape[1:])
        if n == 0:
            return
        self._add_elements(ids, r, c, n, dtypes["reference"])
        cosine, sqnr, both_zero = tensor_metrics(r, c, valid=np.isfinite(r) & np.isfinite(c))
        kept = np.flatnonzero(~both_zero)
        self.both_zero += int(both_zero.sum())
        kept_ids = [ids[i] for i in kept]
        zeros = np.zeros(kept.size, dtype=np.int64)
        self.summaries["cosine"].update(cosine[kept], kept_ids, zeros, zeros)
        self.summaries["sqnr"].update(sqnr[kept], kept_ids, zeros, zeros)

    def _add_elements(self, ids: list[str], r: np.ndarray, c: np.ndarray, n: int, ref_dtype: str) -> None:
        values = element_metrics(r, c, ref_dtype=ref_dtype)
        self.ranges["reference"].update(r)
        self.ranges["candidate"].update(c)
        bad = np.flatnonzero(~values.valid.ravel())
        self.nonfinite += bad.size
        self.matching += int(values.matching.sum())
        for i in bad[: max(0, _EXAMPLES - len(self.nonfinite_examples))]:
            self.nonfinite_examples.append({"sample_id": ids[i // n], "element": int(i % n),
                                            "reference": float(r.flat[i]), "candidate": float(c.flat[i])})
        good = np.flatnonzero(values.valid.ravel())
        at_id, at_pos, at_zero = _At(lambda i: ids[good[i] // n]), _At(lambda i: good[i] % n), _At(lambda i: 0)
        self.summaries["abs"].update(values.abs.ravel()[good], at_id, at_pos, at_zero)
        self.summaries["ulp"].update(values.ulp.ravel()[good], at_id, at_pos, at_zero)
        self.summaries["rel"].update(values.rel.ravel()[good], at_id, at_pos, at_zero)
        self.floored["rel"] = self.floored.get("rel", 0) + int(values.floored.sum())
        for floor in self.rel_floors:
            floored = element_metrics(r, c, ref_dtype=ref_dtype, rel_floor=floor)
            key = rel_key(floor)
            self.summaries[key].update(floored.rel.ravel()[good], at_id, at_pos, at_zero)
            self.floored[key] = self.floored.get(key, 0) + int(floored.floored.sum())
        self.summaries["nonfinite"].update(values.nonfinite.ravel(), _At(lambda i: ids[i // n]),
                                           _At(lambda i: i % n), at_zero)

    def worst(self, summary: MetricSummary) -> list[dict[str, Any]]:
        """Worst values as evidence: sample id, and the element's index when the output has one shape."""
        out = []
        for p in summary.worst:
            item: dict[str, Any] = {"value": p.value if math.isfinite(p.value) else None, "sample_id": p.sample_id}
            if summary.metric not in TENSOR_LEVEL_METRICS:
                item["index"] = ([int(i) for i in np.unravel_index(p.position, self.shapes[0])]
                                 if len(self.shapes) == 1 and self.shapes[0] else p.position)
            out.append(item)
        return out

    def to_dict(self) -> dict[str, Any]:
        metrics = {}
        for key, summary in self.summaries.items():
            data = summary.to_dict()
            data["worst"] = self.worst(summary)
            metrics[key] = data
        return {"samples": self.samples, "elements": self.elements, "shapes": [list(s) for s in self.shapes],
                "dtypes": self.dtypes, "nonfinite": self.nonfinite, "matching_nonfinite": self.matching,
                "both_zero_samples": self.both_zero, "rel_floor_hits": self.floored, "metrics": metrics}


class TensorAccumulator:
    """Per-output accumulators plus the key sets each kernel returned (in order of first appearance)."""

    def __init__(self, rel_floors: Sequence[float] = ()) -> None:
        self.rel_floors = tuple(dict.fromkeys(rel_floors))
        self.outputs: dict[str, OutputAccumulator] = {}
        self.keys: dict[str, dict[str, None]] = {s: {} for s in SIDES}
        self.samples = 0

    def update(self, ids: list[str], ref: Any, cand: Any) -> None:
        """Add one batch: ``ref``/``cand`` are the kernels' Outputs (``named`` and ``dtype_of``)."""
        self.samples += len(ids)
        for side, out in zip(SIDES, (ref, cand), strict=True):
            self.keys[side].update(dict.fromkeys(out.named))
        for path in dict.fromkeys([*ref.named, *cand.named]):
            acc = self.outputs.setdefault(path, OutputAccumulator(path, self.rel_floors))
            dtypes = {side: out.dtype_of(path) for side, out in zip(SIDES, (ref, cand), strict=True)
                      if path in out.named}
            acc.update(ids, ref.named.get(path), cand.named.get(path), dtypes)

    @property
    def common(self) -> list[str]:
        return [k for k in self.keys["reference"] if k in self.keys["candidate"]]


def _needs(bounds: list[Bound]) -> str:
    """Bounds as written (up to 10 digits): a cosine bound of 0.99999 must not print as 1."""
    return bounds_text(bounds, fmt=lambda value: f"{value:.10g}")


def _shown(metric: str, value: float) -> str:
    if metric == "cosine" and math.isfinite(value):  # near 1, the 4 digits of format_value say "1"
        return f"{value:.10g} (1 − cosine = {format_value(1.0 - value)})"
    return format_value(value)


def _keys(keys: dict[str, None]) -> str:
    return ", ".join(f"`{k}`" for k in keys) or "none"


def judge_output(clause: NumericalClause, acc: OutputAccumulator, keys: dict[str, dict[str, None]]) -> ClauseResult:
    """One clause on one output (see the module docstring for the order of checks)."""
    opts = clause.tensor or TensorOptions()
    bounds = [Bound(op, getattr(clause, op)) for op in ("max", "min") if getattr(clause, op) is not None]
    base = dict(id=clause.id, stage=STAGE, metric=clause.metric, stat=clause.stat, bounds=bounds, line=clause.line,
                slice=f"output={acc.path}")
    name = f"`{acc.path}`"
    evidence: dict[str, Any] = {"output": acc.path, "samples": acc.samples, "elements": acc.elements,
                                "shapes": [list(s) for s in acc.shapes], "dtypes": acc.dtypes}
    for side, other in (("candidate", "reference"), ("reference", "candidate")):
        if acc.missing_count[side]:
            evidence["missing_in"] = side
            return ClauseResult(status="fail", evidence=evidence, **base, message=(
                f"{name} is missing from the {side}'s outputs ({acc.missing_count[side]} samples, e.g. "
                f"{', '.join(acc.missing[side])}); the {other} has it. {side} outputs: {_keys(keys[side])}"))
    if acc.problems:
        return ClauseResult(status="fail", evidence=evidence, **base, message=f"{name}: " + "; ".join(acc.problems))
    if acc.elements == 0:
        return ClauseResult(status="vacuous", evidence=evidence, **base,
                            message=f"{name}: no element compared (the output is empty for every sample)")
    evidence.update(nonfinite=acc.nonfinite, matching_nonfinite=acc.matching)
    if acc.nonfinite_examples:
        evidence["nonfinite_examples"] = acc.nonfinite_examples
    if clause.metric != "nonfinite":
        disallowed = {"fail": acc.nonfinite, "skip-matching": acc.nonfinite - acc.matching, "skip": 0}[
            opts.on_nonfinite]
        if disallowed:
            first = acc.nonfinite_examples[0] if acc.nonfinite_examples else None
            where = (f"; first at sample {first['sample_id']} element {first['element']}: reference "
                     f"{first['reference']:.6g}, candidate {first['candidate']:.6g}") if first else ""
            return ClauseResult(status=clause.severity, observed=math.nan, evidence=evidence, **base, message=(
                f"{name}: {disallowed} non-finite elements (NaN/±Inf) of {acc.elements}{where}; not allowed by "
                f"on_nonfinite: {opts.on_nonfinite}"))
    reason = vacuous_reason(acc.ranges["reference"], acc.ranges["candidate"], below=opts.vacuous_below)
    if reason:
        return ClauseResult(status="vacuous", evidence=evidence, **base, message=f"{name}: {reason}; nothing was "
                            "compared")
    summary = acc.summary(clause.metric, opts.rel_floor)
    if summary.count == 0:
        what = "every sample is all-zero on both sides" if clause.metric in TENSOR_LEVEL_METRICS else \
            "no finite element pair"
        return ClauseResult(status="vacuous", evidence=evidence, **base, message=f"{name}: {what}; nothing compared")
    low, observed, high = summary.band(clause.stat)
    worst_key = "worst_samples" if clause.metric in TENSOR_LEVEL_METRICS else "worst_elements"
    evidence[worst_key] = acc.worst(summary)
    shown = f"{name}: {clause.stat}({clause.metric}) = {_shown(clause.metric, observed)}"
    if low < high:
        evidence["band"] = [low, high]
        shown += f" (sketch rank-error band [{format_value(low)}, {format_value(high)}])"
    if clause.metric == "rel":
        hits = acc.floored.get(rel_key(opts.rel_floor), 0)
        evidence["rel_floor_hits"] = hits
        if hits:
            floor = f"{opts.rel_floor:g}" if opts.rel_floor is not None else "1e-6·max|r| per sample"
            shown += f" [warning: {hits} of {acc.elements} elements had |r| below the floor ({floor}), which " \
                     "replaced |r| as the denominator]"
    verdict = judgement.judge(bounds, observed, low, high)
    result = ClauseResult(status="pass", observed=observed, evidence=evidence, **base, message="").judged(
        verdict, low=low, high=high, samples=summary.count)
    if verdict.status == "fail":
        worst = evidence[worst_key][0] if evidence[worst_key] else None
        at = f"; worst at sample {worst['sample_id']}" + (f" {worst['index']}" if "index" in worst else "") \
            if worst else ""
        result.status, result.message = clause.severity, f"{shown}, required {_needs(list(verdict.violated))}{at}"
    elif verdict.status == "inconclusive":
        result.status = "inconclusive"
        result.message = f"{shown}: the bound {_needs(list(verdict.straddled))} lies inside the quantile sketch's " \
                         "error band"
    else:
        result.message = f"{shown} {_needs(bounds)}"
    return result


def judge(clause: NumericalClause, acc: TensorAccumulator) -> list[ClauseResult]:
    """A clause's results, one per selected output; an ``error`` when it selects nothing comparable."""
    base = dict(id=clause.id, stage=STAGE, metric=clause.metric, stat=clause.stat, line=clause.line)
    if not acc.common:
        return [ClauseResult(status="error", **base, message=(
            f"the kernels have no output in common: reference {_keys(acc.keys['reference'])}, candidate "
            f"{_keys(acc.keys['candidate'])}; nothing can be compared"))]
    pattern = (clause.tensor or TensorOptions()).output
    selected = [p for p in acc.outputs if pattern is None or compile_glob(pattern)(p)]
    if not selected:
        return [ClauseResult(status="error", **base, message=(
            f"`output: {pattern}` selects none of the outputs ({_keys(dict.fromkeys(acc.outputs))}); "
            "`*` matches any characters, brackets and dots are literal"))]
    return [judge_output(clause, acc.outputs[p], acc.keys) for p in selected]


def run_tensors(
    spec: NumericalSpec,
    evalset: EvalSet,
    reference: Kernel,
    candidate: Kernel,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> StageResult:
    """Run both kernels over a `task: tensor` eval set and judge every numerical clause per output."""
    start = time.perf_counter()
    floors = [c.tensor.rel_floor for c in spec.clauses if c.metric == "rel" and c.tensor and c.tensor.rel_floor
              is not None]
    acc = TensorAccumulator(floors)
    tensor_pass(evalset, reference, candidate, lambda batch, ref, cand: acc.update(batch.ids, ref, cand),
                progress=progress)
    clauses = [result for clause in spec.clauses for result in judge(clause, acc)]
    notes = []
    only = {side: [k for k in acc.keys[side] if k not in acc.keys[other]]
            for side, other in (("reference", "candidate"), ("candidate", "reference"))}
    for side, keys in only.items():
        if keys:
            notes.append(f"outputs only the {side} returned: {', '.join(keys)}")
    details = json_safe({
        "task": "tensor",
        "samples": acc.samples,
        "outputs": {path: out.to_dict() for path, out in acc.outputs.items()},
        "keys": {side: list(keys) for side, keys in acc.keys.items()},
        "kernel_seconds": {"reference": round(reference.seconds, 6), "candidate": round(candidate.seconds, 6)},
    })
    return StageResult(name=STAGE, status=worst_status([c.status for c in clauses]), clauses=clauses,
                       duration_s=time.perf_counter() - start, notes=notes, details=details)
