"""What the slice stage keeps from the shared kernel pass, and the task fields it reads from the data.

``SliceCollector`` is a consumer of the pass engine (``engine.passes.kernel_pass``): it receives
each scored batch (the kernels run once for numerics and slices) and keeps, per scored position,
only what the clauses need — the sample it belongs to, its position and target, the metric values used by
clauses, key values (entropy, margin, token frequency) and the correctness of each kernel's argmax.
Memory is O(positions × metrics used), never the logits. Its state is mergeable (``cat`` per
column; ``finish`` orders positions by sample and position), so shards merge in any order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from promote.contract.statistical import BINARY_TASK_METRICS, CONTINUOUS_TASK_METRICS, SliceDef, StatisticalSpec
from promote.data import EvalSet, Sample
from promote.engine.scoring import ScoredBatch
from promote.errors import UsageError
from promote.metrics.distribution import METRIC_NAMES
from promote.metrics.rl import TOKEN_METRICS as RL_TOKEN_METRICS
from promote.stages.slices.keys import KeyInputs, is_position_key, reference_entropy, token_counts, top2_margin
from promote.state import Field, Mergeable, StateError

_NEEDS_FIELD = {"exact_match": "`target` (list of token ids ending input_ids) or `label` (the last token id)",
                "reward": "`reward: {reference: x, candidate: y}`", "score": "`score: {reference: x, candidate: y}`"}


def _on_device(name: str) -> Any:
    """metrics/device.py's ``name``, imported (with torch) only when a batch's logits are on a device."""
    def call(logits: Any) -> Any:
        from promote.metrics import device

        return getattr(device, name)(logits)

    return call


@dataclass
class PositionTable:
    """Per scored position arrays (all the same length), in eval-set order."""

    seq: np.ndarray
    col: np.ndarray
    target: np.ndarray
    values: dict[str, np.ndarray]
    keys: dict[str, np.ndarray]
    ref_correct: np.ndarray | None
    cand_correct: np.ndarray | None


@dataclass
class TaskItems:
    """Per-sample paired values for sample-level task metrics (exact_match, reward, score)."""

    reference: np.ndarray
    candidate: np.ndarray


@dataclass
class SliceCollector(Mergeable):
    """Consumer of scored batches; ``finish()`` returns the position table once the pass is over.

    ``evalset`` is the whole eval set (sample indices are global), even when a shard feeds it.
    """

    KIND: ClassVar[str] = "slices"
    VERSION: ClassVar[int] = 1
    STATE: ClassVar[tuple[Field, ...]] = (Field("_parts", dict, "custom"),)

    evalset: EvalSet
    metrics: set[str]
    position_keys: set[str]
    need_correct: bool
    _index: dict[str, int] = field(default_factory=dict)
    _parts: dict[str, list[np.ndarray]] = field(default_factory=dict)
    _freq: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index = {s.id: i for i, s in enumerate(self.evalset.samples)}
        if "token_frequency" in self.position_keys:
            self._freq = dict(token_counts([s.input_ids for s in self.evalset.samples]))

    def _add(self, name: str, values: np.ndarray) -> None:
        self._parts.setdefault(name, []).append(np.asarray(values))

    def update(self, scored: ScoredBatch) -> None:
        """Add one scored batch (the pass engine calls this)."""
        self(scored)

    def _merge_custom(self, other: Any) -> None:
        if self._parts and other._parts and set(self._parts) != set(other._parts):
            raise StateError("slice states collected different columns; were they built from the same contract?")
        for name, parts in other._parts.items():
            self._parts.setdefault(name, []).extend(parts)

    def state_dict(self) -> dict[str, Any]:
        return {"_parts": {k: [np.concatenate(v)] if v else [] for k, v in self._parts.items()}}

    def __call__(self, scored: ScoredBatch) -> None:
        local = np.array([self._index[s.id] for s in scored.batch.samples], dtype=np.int64)
        self._add("seq", local[scored.rows] if scored.rows.size else np.zeros(0, dtype=np.int64))
        self._add("col", scored.cols)
        self._add("target", scored.targets)
        for metric in self.metrics:
            if metric in scored.values:  # sampled-token records have no distribution metrics
                self._add(f"m:{metric}", scored.values[metric])
        if "entropy" in self.position_keys:
            self._add("k:entropy", scored.per_position(reference_entropy, _on_device("reference_entropy")))
        if "margin" in self.position_keys:
            self._add("k:margin", scored.per_position(top2_margin, _on_device("top2_margin")))
        if "token_frequency" in self.position_keys:
            self._add("k:token_frequency", np.array([self._freq.get(int(t), 0) for t in scored.targets],
                                                    dtype=np.float64))
        if "position" in self.position_keys:
            self._add("k:position", scored.cols.astype(np.float64))
        if "response_position" in self.position_keys:  # rank among the sample's scored positions
            rows = scored.rows
            starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if rows.size else np.zeros(0, np.int64)
            first = np.repeat(starts, np.diff(np.r_[starts, rows.size]))
            self._add("k:response_position", (np.arange(rows.size) - first).astype(np.float64))
        if self.need_correct:
            self._add("ref_correct", scored.values["ref_argmax"].astype(np.int64) == scored.targets)
            if "cand_argmax" in scored.values:
                cand = scored.values["cand_argmax"].astype(np.int64)
            else:
                cand = np.argmax(scored.cand_logits, axis=-1) if scored.rows.size else np.zeros(0, dtype=np.int64)
            self._add("cand_correct", cand == scored.targets)

    def finish(self) -> PositionTable:
        def raw(name: str, dtype: Any = np.float64) -> np.ndarray:
            parts = self._parts.get(name)
            return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

        # Eval-set order (sample, then position) whatever order batches or merged shards came in.
        order = np.lexsort((raw("col", np.int64), raw("seq", np.int64)))

        def cat(name: str, dtype: Any = np.float64) -> np.ndarray:
            return raw(name, dtype)[order]

        return PositionTable(
            seq=cat("seq", np.int64).astype(np.int64), col=cat("col", np.int64), target=cat("target", np.int64),
            values={m: cat(f"m:{m}") for m in self.metrics if self._parts.get(f"m:{m}")},
            keys={k: cat(f"k:{k}") for k in self.position_keys},
            ref_correct=cat("ref_correct", bool).astype(bool) if self.need_correct else None,
            cand_correct=cat("cand_correct", bool).astype(bool) if self.need_correct else None,
        )

    def key_inputs(self, table: PositionTable) -> KeyInputs:
        samples = self.evalset.samples
        return KeyInputs(tags=[s.tags for s in samples], lengths=np.array([len(s.input_ids) for s in samples]),
                         seq=table.seq, position_values=table.keys)


def _paired(sample: Sample, name: str) -> tuple[float, float] | None:
    value = sample.task.get(name)
    if not isinstance(value, dict) or set(value) != {"reference", "candidate"}:
        return None
    ref, cand = value["reference"], value["candidate"]
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (ref, cand))
    return (float(ref), float(cand)) if ok else None


def _target(sample: Sample) -> tuple[int, ...] | None:
    if "target" in sample.task:
        target = sample.task["target"]
        ok = isinstance(target, list) and target and all(isinstance(t, int) and not isinstance(t, bool)
                                                          for t in target)
        return tuple(target) if ok else None
    label = sample.task.get("label")
    return (label,) if isinstance(label, int) and not isinstance(label, bool) else None


def check_task_fields(spec: StatisticalSpec, evalset: EvalSet, contract_display: str) -> None:
    """Fail fast (exit 2, before any kernel runs) when a task clause lacks the data it needs."""
    for clause in spec.clauses:
        if clause.metric not in _NEEDS_FIELD:
            continue
        bad: list[Sample] = []
        for sample in evalset.samples:
            if clause.metric == "exact_match":
                target = _target(sample)
                if target is None:
                    bad.append(sample)
                elif len(target) >= len(sample.input_ids) or tuple(sample.input_ids[-len(target):]) != target:
                    raise UsageError(f"{evalset.display_path}:{sample.line}: sample `{sample.id}`: the target "
                                     f"{list(target)} must be the last tokens of input_ids, after at least one "
                                     f"prompt token (clause `{clause.id}` at {contract_display}:{clause.line})")
            elif _paired(sample, clause.metric) is None:
                bad.append(sample)
        if bad:
            first = bad[0]
            raise UsageError(
                f"{contract_display}:{clause.line}: clause `{clause.id}` (metric `{clause.metric}`) needs "
                f"{_NEEDS_FIELD[clause.metric]} on every sample, but {len(bad)} of {len(evalset.samples)} samples "
                f"in {evalset.display_path} lack it or have a malformed value (first: line {first.line}, id "
                f"`{first.id}`); add the field to the data or remove the clause")


def task_items(metric: str, evalset: EvalSet, table: PositionTable) -> TaskItems:
    """Per-sample reference and candidate values of a sample-level task metric (fields already checked)."""
    n = len(evalset.samples)
    if metric in CONTINUOUS_TASK_METRICS:
        pairs = [_paired(s, metric) for s in evalset.samples]
        return TaskItems(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))  # type: ignore[index]
    assert metric in BINARY_TASK_METRICS and table.ref_correct is not None and table.cand_correct is not None
    first = np.array([len(s.input_ids) - 1 - len(_target(s) or ()) for s in evalset.samples])
    in_target = table.col >= first[table.seq]
    ref_wrong = np.bincount(table.seq[in_target & ~table.ref_correct], minlength=n)
    cand_wrong = np.bincount(table.seq[in_target & ~table.cand_correct], minlength=n)
    return TaskItems((ref_wrong == 0).astype(np.float64), (cand_wrong == 0).astype(np.float64))


def clause_needs(spec: StatisticalSpec, defs: tuple[SliceDef, ...]) -> tuple[set[str], set[str], bool]:
    """Metrics, position-level keys, and whether argmax correctness must be collected."""
    # every metric is summarised per slice, bounded by a clause or not; RL metrics when a clause names them
    metrics = set(METRIC_NAMES) | {c.metric for c in spec.clauses if c.metric in RL_TOKEN_METRICS}
    keys = {k for d in defs for k in d.keys if is_position_key(k)}
    correct = any(c.metric in BINARY_TASK_METRICS for c in spec.clauses)
    return metrics, keys, correct
