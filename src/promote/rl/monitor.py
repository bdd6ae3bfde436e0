"""``RolloutMonitor``: judge RL clauses on a training step's sampled-token log-probs, in process.

A few lines in a training loop (docs/rl.md)::

    monitor = RolloutMonitor([{"id": "k3", "metric": "k3", "stat": "mean", "max": 1e-3}])
    monitor.add(trainer_logprobs, engine_logprobs, response_mask)   # [B, T] tensors, any device
    verdict = monitor.judge()                                        # end of step / epoch
    if not verdict.passed: ...                                       # stop, or switch on IS correction

Nothing new is computed here: ``add`` builds the same scored batch the pass engine builds for
sampled-token records (``engine.scoring.score_outputs``) and feeds the numerics accumulator
(``state.Mergeable``), and ``judge`` calls the numerics stage's clause judge. So a clause means the
same in a training loop as in ``promote check``, and monitors on several ranks merge exactly
(``to_bytes`` / ``merge``) before one rank judges.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema
import numpy as np

from promote.contract.numerical import NumericalClause
from promote.contract.sampled import rl_param
from promote.data import Batch, Sample
from promote.engine.accumulate import NumericsAccumulator
from promote.engine.numerics_judge import judge, summary_keys
from promote.engine.scoring import score_outputs
from promote.kernels.base import Outputs
from promote.resources import load_schema
from promote.results import ClauseResult, worst_status
from promote.vocabulary import SAMPLED_METRICS


def _logprobs(value: Any, side: str) -> np.ndarray:
    """Log-probs as float64; bool, complex and non-numeric input is refused (a cast would invent values).
    Values that are no log-prob (NaN, ±inf, above 0) pass through and are counted by ``nonfinite``."""
    kind = _kind(value)
    if kind not in "iuf":
        raise TypeError(f"RolloutMonitor.add: {side} log-probs must be real numbers, not {_dtype_name(value)}")
    return _numpy(value, np.float64)


def _mask(value: Any) -> np.ndarray:
    """A response mask: booleans, or numbers that are all 0 or 1 (``bool(2)`` would score padding)."""
    array = _numpy(value, None)
    if array.dtype.kind == "b":
        return array
    if array.dtype.kind not in "iuf" or not np.isin(array, (0, 1)).all():
        raise ValueError("RolloutMonitor.add: mask must hold booleans or 0/1, not "
                         + (_dtype_name(value) if array.dtype.kind not in "iuf" else "other numbers"))
    return array.astype(bool)


def _kind(value: Any) -> str:
    dtype = getattr(value, "dtype", None)
    if hasattr(value, "detach"):  # torch: no numpy dtype for bf16, so ask torch
        if dtype.is_complex:
            return "c"
        return "f" if dtype.is_floating_point else ("b" if str(dtype) == "torch.bool" else "i")
    return np.asarray(value).dtype.kind


def _dtype_name(value: Any) -> str:
    return str(getattr(value, "dtype", None) or np.asarray(value).dtype)


def _numpy(value: Any, dtype: Any) -> np.ndarray:
    """A torch tensor (any device, any dtype) or array-like as a numpy array of ``dtype``."""
    if hasattr(value, "detach"):
        import torch

        # float64 on the host whatever the device and dtype (bf16 has no numpy dtype); masks/ids as is.
        value = value.detach().to("cpu", torch.float64 if dtype is np.float64 else None).numpy()
    return np.asarray(value, dtype=dtype)


def _clause(raw: Mapping[str, Any], implications: Mapping[str, Any]) -> NumericalClause:
    schema = load_schema("contract")["properties"]["numerical"]["properties"]["clauses"]["items"]
    try:
        jsonschema.validate(dict(raw), schema)
    except jsonschema.ValidationError as exc:
        raise ValueError(f"RolloutMonitor clause {dict(raw)!r}: {exc.message}") from None
    metric = raw["metric"]
    if metric not in SAMPLED_METRICS:
        raise ValueError(f"RolloutMonitor clause `{raw['id']}`: metric `{metric}` needs the next-token distribution; "
                         "a training step has only the sampled tokens' log-probs. Use one of "
                         + ", ".join(SAMPLED_METRICS))
    if metric == "ess" and raw["stat"] != "mean":
        raise ValueError(f"RolloutMonitor clause `{raw['id']}`: `ess` is one number per run; write `stat: mean`")
    return NumericalClause(id=raw["id"], metric=metric, stat=raw["stat"], max=raw.get("max"), min=raw.get("min"),
                           severity=raw.get("severity", "fail"), description=raw.get("description"), line=None,
                           param=raw.get("cap", rl_param(metric, dict(implications))))


@dataclass
class MonitorVerdict:
    """The judged clauses of one ``RolloutMonitor.judge``: ``passed`` unless a clause did not pass."""

    status: str
    results: list[ClauseResult]
    tokens: int
    sequences: int

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def failed(self) -> list[ClauseResult]:
        return [r for r in self.results if r.status != "pass"]

    def __str__(self) -> str:
        lines = [f"{self.status}: {self.tokens} tokens in {self.sequences} sequences"]
        lines += [f"  {r.status.upper():<12} {r.id}: {r.message}" for r in self.results]
        return "\n".join(lines)


class RolloutMonitor:
    """Accumulates sampled-token log-probs of both sides and judges numerical clauses on them.

    ``clauses``: numerical clauses as in a contract (dicts with ``id``, ``metric``, ``stat``,
    ``max``/``min``, optional ``cap``, ``severity``), checked against the contract schema; only
    metrics exact on sampled tokens are allowed. ``implications``: ``clip`` (PPO/GRPO ε),
    ``advantage_max``, ``score_norm`` for ``clip_budget_used`` and ``pg_bias``.
    """

    def __init__(self, clauses: Sequence[Mapping[str, Any]], *, implications: Mapping[str, Any] | None = None) -> None:
        if not clauses:
            raise ValueError("RolloutMonitor needs at least one clause")
        self.implications = dict(implications or {})
        self.clauses = tuple(_clause(c, self.implications) for c in clauses)
        ids = [c.id for c in self.clauses]
        if len(set(ids)) != len(ids):
            raise ValueError(f"RolloutMonitor: clause ids repeat: {ids}")
        self.state = NumericsAccumulator(("log_ratio", "abs_log_ratio", "nonfinite"),
                                         parameterized=summary_keys(self.clauses))
        self._added = 0

    def add(self, trainer_logprobs: Any, engine_logprobs: Any, mask: Any = None, *,
            ids: Sequence[str] | None = None, tokens: Any = None) -> None:
        """Add one batch: log-probs [B, T] of the sampled tokens from the trainer (π_train) and the engine
        (π_infer), ``mask`` [B, T] (1 = a response token to score; default all), optional sample ``ids``
        (evidence names them; default ``sample-N``) and the sampled ``tokens`` [B, T] (evidence)."""
        train = _logprobs(trainer_logprobs, "trainer")
        engine = _logprobs(engine_logprobs, "engine")
        if train.ndim == 1:
            train, engine = train[None], engine[None]
            mask = None if mask is None else _mask(mask)[None]
            tokens = None if tokens is None else _numpy(tokens, np.int64)[None]
        if train.shape != engine.shape or train.ndim != 2:
            raise ValueError(f"RolloutMonitor.add: trainer {list(train.shape)} and engine {list(engine.shape)} "
                             "log-probs must both be [B, T]")
        b, t = train.shape
        keep = np.ones((b, t), bool) if mask is None else _mask(mask)
        toks = np.zeros((b, t), np.int64) if tokens is None else _numpy(tokens, np.int64)
        if keep.shape != (b, t) or toks.shape != (b, t):
            raise ValueError(f"RolloutMonitor.add: mask {list(keep.shape)} / tokens {list(toks.shape)} must be "
                             f"[{b}, {t}] like the log-probs")
        names = [f"sample-{self._added + i}" for i in range(b)] if ids is None else [str(i) for i in ids]
        if len(names) != b:
            raise ValueError(f"RolloutMonitor.add: {len(names)} ids for {b} rows")
        self._added += b
        # Records convention: position t scores input_ids[t + 1]; a leading slot puts token j at j + 1.
        input_ids = np.concatenate([np.zeros((b, 1), np.int64), toks], axis=1)
        pad = np.zeros((b, 1))
        samples = tuple(Sample(id=n, input_ids=tuple(row), tags={}, line=0) for n, row in zip(names, input_ids,
                                                                                             strict=True))
        batch = Batch(samples=samples, input_ids=input_ids, lengths=np.full(b, t + 1, dtype=np.int64))
        full_mask = np.concatenate([keep, np.zeros((b, 1), bool)], axis=1)
        ref = Outputs(target_logprobs=np.concatenate([train, pad], 1), mask=full_mask)
        cand = Outputs(target_logprobs=np.concatenate([engine, pad], 1), mask=full_mask)
        self.state.update(score_outputs(batch, ref, cand, tie_margin=0.0, labels=("trainer", "engine")))

    def judge(self) -> MonitorVerdict:
        """Judge every clause on what was added since the last ``reset`` (state is kept)."""
        results = [judge(c, self.state) for c in self.clauses]
        return MonitorVerdict(worst_status([r.status for r in results]), results, self.state.positions,
                              self.state.samples)

    def reset(self) -> None:
        """Forget the accumulated tokens (e.g. at the start of the next step)."""
        self.state.reset()

    def merge(self, other: RolloutMonitor) -> RolloutMonitor:
        """Fold another monitor (same clauses; e.g. another rank's) into this one."""
        self.state.merge(other.state)
        return self

    def to_bytes(self) -> bytes:
        """The accumulated state as versioned bytes (never pickle): send between ranks, then ``load_bytes``."""
        return self.state.to_bytes()

    def load_bytes(self, data: bytes) -> RolloutMonitor:
        """Replace the state by ``to_bytes`` of a monitor with the same clauses (ValueError otherwise)."""
        loaded = NumericsAccumulator(self.state.metrics, parameterized=self.state.parameterized).load_bytes(data)
        lacking = sorted(set(self.state.summaries) - set(loaded.summaries))
        if lacking:
            raise ValueError(f"RolloutMonitor.load_bytes: the bytes come from a monitor with other clauses (they lack "
                             f"{', '.join(lacking)}); load bytes from a monitor built with the same clauses")
        self.state = loaded
        return self

    def value(self, metric: str, stat: str = "mean") -> float:
        """A statistic of a summarised metric (``log_ratio``, ``abs_log_ratio`` or one a clause names)."""
        summary = self.state.summaries.get(metric)
        return math.nan if summary is None else summary.stat(stat)


__all__ = ["MonitorVerdict", "RolloutMonitor"]
