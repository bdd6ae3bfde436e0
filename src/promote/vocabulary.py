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
    sampled: bool = False  # exact from the log-prob of the sampled token alone (sampled-token records)
    on_demand: bool = False  # summarised only when a clause names it (the RL metrics)
    level: str = "token"  # token | sequence (one value per sequence) | run (one value per run: `ess`)


# Parameters of `pg_bias` / `clip_budget_used` come from `numerical.implications`, not from the clause.
IMPLIED_SCALE = "implications.advantage_max·score_norm"
IMPLIED_CLIP = "implications.clip"

METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("kl", "causal-lm", "higher", divergence=True),
    Metric("kl_rev", "causal-lm", "higher", divergence=True),
    Metric("tv", "causal-lm", "higher", divergence=True),
    Metric("logit_drift", "causal-lm", "higher", divergence=True),
    Metric("logit_osc", "causal-lm", "higher", divergence=True),
    Metric("log_ratio", "causal-lm", "abs", sampled=True),
    Metric("abs_log_ratio", "causal-lm", "higher", divergence=True, sampled=True),
    Metric("argmax_agree", "causal-lm", "lower"),
    Metric("nonfinite", "both", "higher", divergence=True, sampled=True),
    Metric("entropy_ratio", "causal-lm", "higher"),
    Metric("ratio_outside", "causal-lm", "higher", param="cap", param_default=2.0, sampled=True),
    # RL trainer-vs-rollout metrics (metrics/rl.py): functions of the sampled token's log w only.
    Metric("is_ratio", "causal-lm", "higher", sampled=True, on_demand=True),
    Metric("k1", "causal-lm", "abs", sampled=True, on_demand=True),
    Metric("k3", "causal-lm", "higher", sampled=True, on_demand=True),
    Metric("chi2", "causal-lm", "higher", sampled=True, on_demand=True),
    Metric("ratio_above", "causal-lm", "higher", param="cap", param_default=2.0, sampled=True, on_demand=True),
    Metric("ratio_below", "causal-lm", "higher", param="cap", param_default=2.0, sampled=True, on_demand=True),
    Metric("pg_bias", "causal-lm", "higher", param=IMPLIED_SCALE, param_default=1.0, sampled=True, on_demand=True),
    Metric("clip_budget_used", "causal-lm", "higher", param=IMPLIED_CLIP, param_default=0.2, sampled=True,
           on_demand=True),
    Metric("seq_log_ratio", "causal-lm", "abs", sampled=True, on_demand=True, level="sequence"),
    Metric("seq_geo_ratio", "causal-lm", "higher", sampled=True, on_demand=True, level="sequence"),
    Metric("seq_masked", "causal-lm", "higher", param="cap", param_default=2.0, sampled=True, on_demand=True,
           level="sequence"),
    Metric("ess", "causal-lm", "lower", sampled=True, on_demand=True, level="run"),
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
METRIC_NAMES = tuple(m.name for m in METRICS.values()
                     if m.task in ("causal-lm", "both") and m.param is None and not m.on_demand)
# Exact on sampled-token records (only `target_logprobs`); any other LM metric needs the distribution.
SAMPLED_METRICS = tuple(m.name for m in METRICS.values() if m.sampled)
RL_METRICS = tuple(m.name for m in METRICS.values() if m.on_demand)
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
