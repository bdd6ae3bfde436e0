"""RL trainer-vs-rollout metrics from the log-prob of the sampled token only (docs/metrics.md §RL).

What every RL framework has at hand is log π(y_t) of the token the inference engine sampled, from
both sides: the trainer (the reference kernel, π_train) and the engine (the candidate, π_infer).
With log w = log π_train(y) − log π_infer(y) (the existing ``log_ratio``), everything here is an exact
function of log w — no distribution beyond the sampled token is needed, so these metrics are as exact
on sampled-token records as on full logits.

Per token: ``is_ratio`` w, ``k1`` = −log w and ``k3`` = w − 1 − log w (estimators of
KL(π_infer‖π_train) under y ~ π_infer), ``chi2`` = (w − 1)² (its mean estimates χ²(π_train‖π_infer)),
``ratio_above@C`` / ``ratio_below@C`` (w > C, w < 1/C: the two tails a TIS/MIS clip acts on),
``pg_bias@S`` = S·(e^{|log w|} − 1) and ``clip_budget_used@ε`` = |log w| / log(1 + ε) (bounds.py).
Per sequence (its scored positions): ``seq_log_ratio`` Σ log w, ``seq_geo_ratio`` exp(mean log w),
``seq_masked@C`` 1 if the geometric-mean ratio is outside [1/C, C]. ``ess`` is one number per run.
Pure numpy; imports only the leaf ``bounds``.
"""

from __future__ import annotations

import math

import numpy as np

from promote.bounds import clip_budget

TOKEN_METRICS = ("is_ratio", "k1", "k3", "chi2")
SEQUENCE_METRICS = ("seq_log_ratio", "seq_geo_ratio", "seq_masked")
# ESS = (Σw)² / (n·Σw²) is judged from two exact sums; `is_ratio_sq` is the hidden second one.
ESS_PARTS = ("is_ratio", "is_ratio_sq")


def token_values(log_ratio: np.ndarray) -> dict[str, np.ndarray]:
    """Per-token RL metrics from log w = log π_train(y) − log π_infer(y) (float64 [P] each).

    k3 = w − 1 − log w is evaluated as expm1(x) − x, which stays ≥ 0 and accurate near x = 0
    (the usual case: kernel noise gives |log w| ~ 1e-3, where w − 1 − log w would cancel).
    """
    x = np.asarray(log_ratio, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        w = np.exp(x)
        em1 = np.expm1(x)
        return {"is_ratio": w, "k1": -x, "k3": em1 - x, "chi2": em1 * em1, "is_ratio_sq": w * w}


def parameterized_values(metric: str, param: float, log_ratio: np.ndarray) -> np.ndarray | None:
    """Per-token values of a parameterised RL metric (``ratio_above@2`` …); None if not one of them."""
    x = np.asarray(log_ratio, dtype=np.float64)
    cap = math.log(param) if metric in ("ratio_above", "ratio_below") and param > 0 else math.nan
    with np.errstate(invalid="ignore", over="ignore"):
        if metric == "ratio_above":
            return np.where(np.isnan(x), np.nan, (x > cap).astype(np.float64))
        if metric == "ratio_below":
            return np.where(np.isnan(x), np.nan, (x < -cap).astype(np.float64))
        if metric == "pg_bias":
            return param * np.expm1(np.abs(x))
        if metric == "clip_budget_used":
            return np.abs(x) / clip_budget(param)
    return None


def sequence_values(metric: str, param: float | None, log_ratio: np.ndarray,
                    rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values per sequence, index of each sequence's last position) for a sequence metric.

    ``rows`` says which sequence each position belongs to (positions of one sequence are contiguous,
    as the pass engine and ``RolloutMonitor`` produce them). A NaN log-ratio makes its sequence NaN.
    """
    x = np.asarray(log_ratio, dtype=np.float64)
    if x.size == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    last = np.r_[starts[1:], x.size] - 1
    total = np.add.reduceat(x, starts)
    count = np.diff(np.r_[starts, x.size]).astype(np.float64)
    if metric == "seq_log_ratio":
        return total, last
    mean = total / count
    with np.errstate(over="ignore", invalid="ignore"):
        if metric == "seq_geo_ratio":
            return np.exp(mean), last
        if metric == "seq_masked":
            cap = math.log(param if param is not None else 2.0)
            return np.where(np.isnan(mean), np.nan, (np.abs(mean) > cap).astype(np.float64)), last
    raise ValueError(f"not a sequence metric: {metric}")


def ess(sum_w: float, sum_w2: float, count: int) -> float:
    """Normalised effective sample size (Σw)² / (n·Σw²) ∈ (0, 1]; NaN with no token."""
    if count == 0 or not sum_w2 > 0:
        return math.nan
    return sum_w * sum_w / (count * sum_w2)


__all__ = ["ESS_PARTS", "SEQUENCE_METRICS", "TOKEN_METRICS", "ess", "parameterized_values", "sequence_values",
           "token_values"]
