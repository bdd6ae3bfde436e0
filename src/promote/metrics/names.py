"""Metric names, importable without numba or torch (the contract layer and `validate` use them)."""

from __future__ import annotations

METRIC_NAMES = (
    "kl", "kl_rev", "tv", "logit_drift", "logit_osc", "log_ratio", "abs_log_ratio", "argmax_agree", "nonfinite",
)
# Metrics where larger means more divergent (a noise floor and a floor ratio make sense for these;
# `argmax_agree` is a rate where higher is better and `log_ratio` is signed).
DIVERGENCE_METRICS = ("kl", "kl_rev", "tv", "logit_drift", "logit_osc", "abs_log_ratio", "nonfinite")
# Per-position facts besides the metrics: argmax flips at near ties, the reference's top token and
# its entropy (slices bucket positions by it).
EXTRA_NAMES = ("tie_flip", "ref_argmax", "ref_entropy")
