"""Metric names, importable without numba or torch (the contract layer and `validate` use them)."""

from __future__ import annotations

METRIC_NAMES = (
    "kl", "kl_rev", "tv", "logit_drift", "logit_osc", "log_ratio", "abs_log_ratio", "argmax_agree", "nonfinite",
    "entropy_ratio",
)
# Metrics with a parameter from the clause: `ratio_outside` (cap C: |log w| > log C) and
# `topk_overlap` (k). Their summaries are keyed `NAME@PARAM` (see ``parameterized_key``).
PARAMETERIZED_METRICS = {"ratio_outside": ("cap", 2.0), "topk_overlap": ("k", 5)}
# Metrics where larger means more divergent (a noise floor and a floor ratio make sense for these;
# `argmax_agree` is a rate where higher is better and `log_ratio` is signed).
DIVERGENCE_METRICS = ("kl", "kl_rev", "tv", "logit_drift", "logit_osc", "abs_log_ratio", "nonfinite")
# Per-position facts besides the metrics: argmax flips at near ties, the reference's top token and
# its entropy (slices bucket positions by it).
EXTRA_NAMES = ("tie_flip", "ref_argmax", "ref_entropy", "cand_entropy")


def parameterized_key(metric: str, param: float | None) -> str:
    """Summary key of a metric: ``ratio_outside@2``, ``topk_overlap@5``, or the metric name itself."""
    if metric not in PARAMETERIZED_METRICS:
        return metric
    value = PARAMETERIZED_METRICS[metric][1] if param is None else param
    return f"{metric}@{value:g}"
