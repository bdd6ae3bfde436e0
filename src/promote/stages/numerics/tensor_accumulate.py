"""What the `task: tensor` numerics pass keeps per output key path: mergeable accumulators.

Both kernels' outputs go batch by batch into one ``OutputAccumulator`` per key path (``scores``,
``hidden_states[3]``): streaming summaries of the per-element metrics (abs, rel, ulp, nonfinite) and
the per-sample ones (cosine, sqnr), value ranges for vacuity, shapes, dtypes and the first examples
of each problem. Like every pass consumer the state is declared with its merge rule
(``state.Mergeable``): counts and summaries merge exactly in any order; the few examples kept
(missing ids, problems, non-finite elements) are the first ones in merge order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from promote.metrics.summary import MetricSummary
from promote.metrics.tensor import Range, dtype_kind, element_metrics, tensor_metrics
from promote.state import Field, Mergeable, StateError
from promote.vocabulary import ELEMENT_METRICS, TENSOR_LEVEL_METRICS

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
class OutputAccumulator(Mergeable):
    """Everything kept about one output key path across batches."""

    KIND: ClassVar[str] = "tensor_output"
    VERSION: ClassVar[int] = 1
    STATE: ClassVar[tuple[Field, ...]] = (
        Field("summaries", dict, "custom"), Field("ranges", lambda: {s: Range() for s in SIDES}, "custom"),
        Field("dtypes", lambda: {s: [] for s in SIDES}, "custom"), Field("shapes", list, "ordered_union"),
        Field("missing", lambda: {s: [] for s in SIDES}, "custom"),
        Field("missing_count", lambda: dict.fromkeys(SIDES, 0), "custom"), Field("problems", list, "custom"),
        Field("samples", int, "sum"),
        Field("elements", int, "sum"), Field("nonfinite", int, "sum"), Field("matching", int, "sum"),
        Field("nonfinite_examples", list, "custom"), Field("floored", dict, "custom"), Field("both_zero", int, "sum"),
    )

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

    def reset(self) -> None:
        super().reset()
        self.__post_init__()

    def _merge_custom(self, other: Any) -> None:
        for key, summary in other.summaries.items():
            mine = self.summaries.get(key)
            self.summaries[key] = summary if mine is None else mine.update_from(summary)
        for side in SIDES:
            self.ranges[side] = self.ranges[side].merge(other.ranges[side])
            self.dtypes[side] = [*self.dtypes[side], *(d for d in other.dtypes[side] if d not in self.dtypes[side])]
            self.missing[side] = (self.missing[side] + other.missing[side])[:_EXAMPLES]
            self.missing_count[side] += other.missing_count[side]
        for message in other.problems:
            self._problem(message)
        self.nonfinite_examples = (self.nonfinite_examples + other.nonfinite_examples)[:_EXAMPLES]
        for key, hits in other.floored.items():
            self.floored[key] = self.floored.get(key, 0) + hits

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["summaries"] = {k: v.state_dict() for k, v in self.summaries.items()}
        state["summary_metrics"] = {k: v.metric for k, v in self.summaries.items()}
        state["ranges"] = {s: (r.minimum, r.maximum, r.max_abs, r.finite) for s, r in self.ranges.items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict({**state, "summaries": {}, "ranges": {s: Range() for s in SIDES}})
        for key, sub in state["summaries"].items():
            summary = MetricSummary(state["summary_metrics"][key])
            summary.load_state_dict(sub)
            self.summaries[key] = summary
        self.ranges = {s: Range(*values) for s, values in state["ranges"].items()}
        self.shapes = [tuple(s) for s in self.shapes]

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


class TensorAccumulator(Mergeable):
    """Per-output accumulators plus the key sets each kernel returned (in order of first appearance)."""

    KIND: ClassVar[str] = "tensors"
    VERSION: ClassVar[int] = 1
    STATE: ClassVar[tuple[Field, ...]] = (Field("outputs", dict, "custom"), Field("keys", dict, "custom"),
                                          Field("samples", int, "sum"))

    def __init__(self, rel_floors: Sequence[float] = ()) -> None:
        self.rel_floors = tuple(dict.fromkeys(rel_floors))
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.keys = {s: {} for s in SIDES}

    def _merge_custom(self, other: Any) -> None:
        if other.rel_floors != self.rel_floors:
            raise StateError("tensor states use different `rel_floor`s; were they built from the same contract?")
        for path, acc in other.outputs.items():
            mine = self.outputs.get(path)
            self.outputs[path] = acc if mine is None else mine.merge(acc)  # type: ignore[assignment]
        for side in SIDES:
            self.keys[side].update(other.keys[side])

    def state_dict(self) -> dict[str, Any]:
        return {"outputs": {p: a.state_dict() for p, a in self.outputs.items()},
                "keys": {s: list(k) for s, k in self.keys.items()}, "samples": self.samples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.samples = state["samples"]
        self.keys = {s: dict.fromkeys(k) for s, k in state["keys"].items()}
        self.outputs = {}
        for path, sub in state["outputs"].items():
            acc = OutputAccumulator(path, self.rel_floors)
            acc.load_state_dict(sub)
            self.outputs[path] = acc

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


