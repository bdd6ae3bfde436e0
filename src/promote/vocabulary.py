"""The metric vocabulary: every metric a contract may name, declared once (importable without numpy).

A metric's declaration says which task it belongs to (``causal-lm`` per-position divergences,
``tensor`` per-element/per-sample comparisons, ``paired`` task metrics judged on candidate −
reference), which direction is worse (so evidence ranks the worst positions and a noise floor
makes sense), and its parameters. ``contract/`` validates against these names, ``metrics/``
computes them, ``report/`` and ``docs`` describe them; none of them keeps its own list, so adding a
metric means one declaration here plus its computation in ``metrics/``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One metric: name, task, which direction is worse, and its clause parameter (if any)."""

    name: str
    task: str  # causal-lm | tensor | both | paired
    worse: str  # higher | lower | abs (signed: the magnitude is what hurts)
    divergence: bool = False  # larger = more divergent, and ≥ 0: a noise floor / floor ratio makes sense
    param: str | None = None  # clause key of the parameter (`cap`, `k`)
    param_default: float | None = None
    paired: str | None = None  # paired task metrics: binary | continuous


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("kl", "causal-lm", "higher", divergence=True),
    Metric("kl_rev", "causal-lm", "higher", divergence=True),
    Metric("tv", "causal-lm", "higher", divergence=True),
    Metric("logit_drift", "causal-lm", "higher", divergence=True),
    Metric("logit_osc", "causal-lm", "higher", divergence=True),
    Metric("log_ratio", "causal-lm", "abs"),
    Metric("abs_log_ratio", "causal-lm", "higher", divergence=True),
    Metric("argmax_agree", "causal-lm", "lower"),
    Metric("nonfinite", "both", "higher", divergence=True),
    Metric("entropy_ratio", "causal-lm", "higher"),
    Metric("ratio_outside", "causal-lm", "higher", param="cap", param_default=2.0),
    Metric("topk_overlap", "causal-lm", "lower", param="k", param_default=5),
    Metric("abs", "tensor", "higher"),
    Metric("rel", "tensor", "higher"),
    Metric("ulp", "tensor", "higher"),
    Metric("cosine", "tensor", "lower"),
    Metric("sqnr", "tensor", "lower"),
    Metric("accuracy", "paired", "lower", paired="binary"),
    Metric("exact_match", "paired", "lower", paired="binary"),
    Metric("reward", "paired", "lower", paired="continuous"),
    Metric("score", "paired", "lower", paired="continuous"),
)}

# Causal-LM metrics every numerics pass summarises (in this order), and the parameterised ones.
METRIC_NAMES = tuple(m.name for m in METRICS.values() if m.task in ("causal-lm", "both") and m.param is None)
PARAMETERIZED_METRICS = {m.name: (m.param, m.param_default) for m in METRICS.values() if m.param}
DIVERGENCE_METRICS = tuple(m.name for m in METRICS.values() if m.divergence and m.task != "tensor")
# Per-position facts besides the metrics: argmax flips at near ties, the reference's top token and
# its entropy (slices bucket positions by it).
EXTRA_NAMES = ("tie_flip", "ref_argmax", "ref_entropy", "cand_entropy")
# `task: tensor`: per-element metrics, per-sample (tensor-level) ones, and all of them.
ELEMENT_METRICS = ("abs", "rel", "ulp", "nonfinite")
TENSOR_LEVEL_METRICS = ("cosine", "sqnr")
TENSOR_METRICS = ("abs", "rel", "ulp", "cosine", "sqnr", "nonfinite")
SHARED_METRICS = tuple(m.name for m in METRICS.values() if m.task == "both")
DEFAULT_VACUOUS_BELOW = 1e-12  # `vacuous_below` default of tensor clauses
# Paired task metrics of the statistical stage.
BINARY_TASK_METRICS = tuple(m.name for m in METRICS.values() if m.paired == "binary")
CONTINUOUS_TASK_METRICS = tuple(m.name for m in METRICS.values() if m.paired == "continuous")
TASK_METRICS = BINARY_TASK_METRICS + CONTINUOUS_TASK_METRICS


def worse_direction(metric: str) -> str:
    """``higher`` / ``lower`` / ``abs`` for a metric or summary key (``rel@1e-3``, ``kl_upper``)."""
    name = metric.partition("@")[0]
    for suffix in ("_lower", "_upper"):
        if name not in METRICS and name.endswith(suffix):
            name = name[: -len(suffix)]
    found = METRICS.get(name)
    return found.worse if found else "higher"


def parameterized_key(metric: str, param: float | None) -> str:
    """Summary key of a metric: ``ratio_outside@2``, ``topk_overlap@5``, or the metric name itself."""
    if metric not in PARAMETERIZED_METRICS:
        return metric
    value = PARAMETERIZED_METRICS[metric][1] if param is None else param
    return f"{metric}@{value:g}"
