"""Scoring one batch: the scored positions of both kernels' outputs and every metric there, once.

``ScoredBatch`` is what the pass engine (``engine/passes.py``) hands to every consumer — numerics
summaries, noise-floor comparisons, slice statistics — so the metrics are computed once per batch
however many stages use them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from promote.data import Batch
from promote.data.rollouts import MAX_LOGPROB
from promote.engine.topk_scoring import check_vocab, score_topk
from promote.errors import UsageError
from promote.kernels.base import Outputs, rows_on_host
from promote.metrics.distribution import columns_to_values, is_degenerate, token_metrics_at, topk_overlap
from promote.metrics.rl import token_values
from promote.metrics.topk import BOUNDED_METRICS, log_softmax


@dataclass
class ScoredBatch:
    """One batch after both kernels ran: logits and metric values at its scored positions only.

    Consumers (numerics summaries, the noise floor, slice statistics) read this, so the kernels run
    once per batch however many stages use the outputs. Full logits are not gathered at the scored
    positions up front: torch logits stay on their device (``device``, engine/device_scoring.py), numpy
    logits stay whole (``host``). Consumers ask for per-position functions (``per_position``,
    ``topk_overlap``); reading ``ref_logits``/``cand_logits`` copies the scored rows to the host once.
    """

    batch: Batch
    rows: np.ndarray
    cols: np.ndarray
    targets: np.ndarray
    gathered_ref: np.ndarray | None  # [P, V] at the scored positions (``ref_logits``), once gathered
    gathered_cand: np.ndarray | None
    values: dict[str, np.ndarray]
    bounded: tuple[str, ...] = field(default=())  # metrics given as NAME_lower/NAME_upper (top-k records)
    sampled: bool = False  # a side gave only the sampled token's log-prob: only SAMPLED_METRICS exist
    device: Any = None  # engine.device_scoring.DeviceLogits: both sides' logits where the kernels left them
    host: tuple[np.ndarray, np.ndarray] | None = None  # both sides' whole [B, T, V] numpy logits, not yet gathered

    @property
    def ref_logits(self) -> np.ndarray | None:
        """Reference logits [P, V] at the scored positions as numpy (top-k values for top-k records), gathered
        on first read."""
        self._gather()
        return self.gathered_ref

    @property
    def cand_logits(self) -> np.ndarray | None:
        """Candidate logits [P, V] at the scored positions as numpy, gathered on first read."""
        self._gather()
        return self.gathered_cand

    @property
    def sample_ids(self) -> list[str]:
        return [self.batch.samples[r].id for r in self.rows]

    def per_position(self, host: Callable[..., np.ndarray], on_device: Callable[..., Any], *,
                     both: bool = False) -> np.ndarray:
        """A per-position function of the reference logits (``both``: of both sides' logits), float64 [P]:
        ``host`` on numpy logits, ``on_device`` (torch ops, metrics/device.py) chunk by chunk on the device."""
        if self.device is not None:
            return self.device.per_position(on_device, both=both)
        return np.asarray(host(self.ref_logits, self.cand_logits) if both else host(self.ref_logits))

    def _gather(self) -> None:
        """The logits at the scored positions as numpy, copied once, when a consumer (a plug-in, say) first reads
        them: numpy rows as they are, torch rows as float32 on the host (promote's own consumers use
        ``per_position`` instead, which never copies a whole batch off a GPU)."""
        if self.host is not None:
            ref, cand = self.host
            self.gathered_ref, self.gathered_cand = ref[self.rows, self.cols], cand[self.rows, self.cols]
            self.host = None
        elif self.device is not None and self.gathered_ref is None:
            self.gathered_ref = rows_on_host(self.device.ref, self.rows, self.cols)
            self.gathered_cand = rows_on_host(self.device.cand, self.rows, self.cols)

    def topk_overlap(self, k: int) -> np.ndarray:
        """|top-k(p) ∩ top-k(q)| / k per position (metrics/distribution.topk_overlap)."""
        def on_device(ref: Any, cand: Any) -> Any:
            from promote.metrics import device  # torch: only when a kernel gave torch logits

            return device.topk_overlap(ref, cand, k)

        return self.per_position(lambda r, c: topk_overlap(r, c, k), on_device, both=True)

    def degenerate_positions(self) -> int:
        """Positions where both kernels' logits are constant (nothing was compared)."""
        if "degenerate" in self.values:
            return int(self.values["degenerate"].sum())
        return int((is_degenerate(self.ref_logits) & is_degenerate(self.cand_logits)).sum())

    def ref_abs_max(self) -> float | None:
        """The largest finite |reference logit| at the scored positions (None: none finite or none scored)."""
        if "ref_abs_max" in self.values:
            found = self.values["ref_abs_max"]
            return float(found.max()) if found.size else None
        ref = self.ref_logits
        if ref is None or not ref.size:
            return None
        finite = np.abs(ref[np.isfinite(ref)])
        return float(finite.max()) if finite.size else None


def score_batch(batch: Batch, ref_logits: Any, cand_logits: Any, *, tie_margin: float,
                mask: np.ndarray | None = None, chunk: int | None = None) -> ScoredBatch:
    """Pick the scored positions of a batch (``mask``, default all) and compute every metric there.

    The numba kernel reads numpy logits (ONNX, served and vLLM kernels) in place at the scored positions
    (gathering them first cost a copy of the batch per side, ~1.5× the kernel's own time at V = 151 936);
    when a side is a torch tensor the positions are scored where the logits are, ``chunk`` at a time
    (engine/device_scoring.py)."""
    if ref_logits.shape[-1] != cand_logits.shape[-1]:
        raise UsageError(f"vocabulary sizes differ: reference {ref_logits.shape[-1]}, candidate "
                         f"{cand_logits.shape[-1]}; both kernels must score the same vocabulary")
    rows, cols = np.nonzero(batch.scored_mask() if mask is None else mask)
    targets = batch.input_ids[rows, cols + 1]
    if isinstance(ref_logits, np.ndarray) and isinstance(cand_logits, np.ndarray):  # no torch import for these
        values = token_metrics_at(ref_logits, cand_logits, rows, cols, targets, tie_margin=tie_margin)
        return ScoredBatch(batch, rows, cols, targets, None, None, values, host=(ref_logits, cand_logits))
    from promote.engine.device_scoring import DeviceLogits  # torch: only for torch outputs

    logits = DeviceLogits(ref_logits, cand_logits, rows, cols, chunk=chunk)
    values = columns_to_values(logits.columns(targets, tie_margin))
    return ScoredBatch(batch, rows, cols, targets, None, None, values, device=logits)


def metric_chunk(*outputs: Outputs) -> int | None:
    """Positions per metric chunk: the smallest `chunk` the kernels set (None: the default for V)."""
    chunks = [o.chunk for o in outputs if o.chunk is not None]
    return min(chunks) if chunks else None


def score_outputs(batch: Batch, ref: Outputs, cand: Outputs, *, tie_margin: float,
                  labels: tuple[str, str] = ("reference", "candidate")) -> ScoredBatch:
    """Score a batch from both kernels' outputs: full logits exactly (``score_batch``), top-k records
    with certified bounds (``engine/topk_scoring.py``). Positions a kernel's ``mask`` leaves out are
    not scored."""
    mask = batch.scored_mask()
    for out in (ref, cand):
        if out.mask is not None:
            mask = mask & out.mask
    if ref.is_sampled or cand.is_sampled:
        scored = score_sampled(batch, ref, cand, mask)
    elif ref.logits is not None and cand.logits is not None:
        check_vocab(labels, ref.logits.shape[-1], cand.logits.shape[-1])
        scored = score_batch(batch, ref.logits, cand.logits, tie_margin=tie_margin, mask=mask,
                             chunk=metric_chunk(ref, cand))
    else:
        rows, cols, targets, ref_view, cand_view, values = score_topk(batch, ref, cand, mask, labels=labels,
                                                                      tie_margin=tie_margin)
        scored = ScoredBatch(batch, rows, cols, targets, ref_view, cand_view, values, bounded=BOUNDED_METRICS)
    scored.values.update(token_values(scored.values["log_ratio"]))  # RL metrics: exact on every path
    return scored


def _sampled_logprob(out: Outputs, rows: np.ndarray, cols: np.ndarray, targets: np.ndarray) -> np.ndarray:
    if out.logits is not None:
        lp = log_softmax(rows_on_host(out.logits, rows, cols))
        return np.take_along_axis(lp, targets[:, None], -1)[:, 0]
    return np.asarray(out.target_logprobs[rows, cols], dtype=np.float64)


def score_sampled(batch: Batch, ref: Outputs, cand: Outputs, mask: np.ndarray) -> ScoredBatch:
    """Score a batch where a side recorded only the sampled token's log-prob (RL rollouts).

    Only metrics exact on that data exist (``log_ratio``, ``abs_log_ratio``, ``nonfinite`` and the RL
    metrics of ``metrics/rl.py``); KL, TV, logit oscillation and argmax need the distribution, and a
    clause on them is a contract error (contract/sampled.py), never a bound of [0, ∞].
    """
    rows, cols = np.nonzero(mask)
    targets = batch.input_ids[rows, cols + 1]
    t_r, t_c = _sampled_logprob(ref, rows, cols, targets), _sampled_logprob(cand, rows, cols, targets)
    # A sampled token has a finite log-prob ≤ 0 on both sides; anything else (NaN, ±inf — even −inf on
    # both sides, which is no agreement about a token that was sampled — or a log-prob above 0) is counted
    # by `nonfinite` and leaves log w undefined, never 0.
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(t_r) | ~np.isfinite(t_c) | (t_r > MAX_LOGPROB) | (t_c > MAX_LOGPROB)
        log_ratio = np.where(bad, np.nan, t_r - t_c)
    zeros = np.zeros(rows.size)
    values = {"log_ratio": log_ratio, "abs_log_ratio": np.abs(log_ratio), "nonfinite": bad.astype(np.float64),
              "tie_flip": zeros}
    return ScoredBatch(batch, rows, cols, targets, t_r[:, None], t_c[:, None], values, sampled=True)
