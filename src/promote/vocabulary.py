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
    doc: str = ""  # what it measures: the contract schema and docs/contract.md print it


# Parameters of `pg_bias` / `clip_budget_used` come from `numerical.implications`, not from the clause.
IMPLIED_SCALE = "implications.advantage_max·score_norm"
IMPLIED_CLIP = "implications.clip"

METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("kl", "causal-lm", "higher", divergence=True,
           doc="KL(p‖q) per scored position, p = softmax(reference), q = softmax(candidate), in nats."),
    Metric("kl_rev", "causal-lm", "higher", divergence=True,
           doc="KL(q‖p) per scored position, in nats."),
    Metric("tv", "causal-lm", "higher", divergence=True,
           doc="Total variation ½‖p − q‖₁ per scored position, in [0, 1]."),
    Metric("logit_drift", "causal-lm", "higher", divergence=True,
           doc="‖z_c − z_r‖∞: largest absolute logit difference per position."),
    Metric("logit_osc", "causal-lm", "higher", divergence=True,
           doc="max(z_c − z_r) − min(z_c − z_r): shift-invariant logit oscillation per position."),
    Metric("log_ratio", "causal-lm", "abs", sampled=True,
           doc="log p_y − log q_y on the next input token y (log importance weight)."),
    Metric("abs_log_ratio", "causal-lm", "higher", divergence=True, sampled=True,
           doc="|log p_y − log q_y| on the next input token y."),
    Metric("argmax_agree", "causal-lm", "lower",
           doc="1 where the candidate's top token equals the reference's, else 0; stat mean = agreement rate."),
    Metric("nonfinite", "both", "higher", divergence=True, sampled=True,
           doc="Count of non-finite (NaN or ±Inf) candidate or reference logits per position."),
    Metric("entropy_ratio", "causal-lm", "higher",
           doc="H(q)/H(p): candidate entropy over reference entropy per position (1 = same sharpness; a temperature "
               "bug moves it while argmax agreement stays 100 %)."),
    Metric("ratio_outside", "causal-lm", "higher", param="cap", param_default=2.0, sampled=True,
           doc="1 where the importance weight w = p_y/q_y on the next token lies outside [1/cap, cap]; stat mean = "
               "the fraction outside (cap from the clause, default 2)."),
    # RL trainer-vs-rollout metrics (metrics/rl.py): functions of the sampled token's log w only.
    Metric("is_ratio", "causal-lm", "higher", sampled=True, on_demand=True,
           doc="RL: importance ratio w = π_train(y)/π_infer(y) = exp(log_ratio) on the sampled token."),
    Metric("k1", "causal-lm", "abs", sampled=True, on_demand=True,
           doc="RL: k1 KL estimator −log w per token; its mean estimates KL(π_infer‖π_train) (verl's signed `kl`)."),
    Metric("k3", "causal-lm", "higher", sampled=True, on_demand=True,
           doc="RL: k3 KL estimator w − 1 − log w ≥ 0 per token; its mean estimates KL(π_infer‖π_train)."),
    Metric("chi2", "causal-lm", "higher", sampled=True, on_demand=True,
           doc="RL: (w − 1)² per token; its mean estimates χ²(π_train‖π_infer)."),
    Metric("ratio_above", "causal-lm", "higher", param="cap", param_default=2.0, sampled=True, on_demand=True,
           doc="RL: 1 where w > cap (the upper tail a TIS clip truncates); stat mean = that fraction."),
    Metric("ratio_below", "causal-lm", "higher", param="cap", param_default=2.0, sampled=True, on_demand=True,
           doc="RL: 1 where w < 1/cap (the lower tail an MIS mask drops); stat mean = that fraction."),
    Metric("pg_bias", "causal-lm", "higher", param=IMPLIED_SCALE, param_default=1.0, sampled=True, on_demand=True,
           doc="RL: per-token policy-gradient bias bound A_max·G·(e^|log w| − 1), A_max and G from "
               "`numerical.implications` (`advantage_max`, `score_norm`; default 1 each: the factor)."),
    Metric("clip_budget_used", "causal-lm", "higher", param=IMPLIED_CLIP, param_default=0.2, sampled=True,
           on_demand=True,
           doc="RL: |log w| / log(1 + ε) per token, ε = `numerical.implications.clip` (default 0.2); above 1 the "
               "kernel mismatch alone reaches the PPO/GRPO clip."),
    Metric("seq_log_ratio", "causal-lm", "abs", sampled=True, on_demand=True, level="sequence",
           doc="RL: Σ log w over one sequence's scored tokens, one value per sequence (the product ratio)."),
    Metric("seq_geo_ratio", "causal-lm", "higher", sampled=True, on_demand=True, level="sequence",
           doc="RL: exp(mean log w) over one sequence's scored tokens, one value per sequence."),
    Metric("seq_masked", "causal-lm", "higher", param="cap", param_default=2.0, sampled=True, on_demand=True,
           level="sequence",
           doc="RL: 1 per sequence whose geometric-mean ratio exp(mean log w) lies outside [1/cap, cap]; stat mean ="
               " the fraction of sequences a sequence-level mask would drop (cap default 2)."),
    Metric("ess", "causal-lm", "lower", sampled=True, on_demand=True, level="run",
           doc="RL: normalised effective sample size (Σw)² / (n·Σw²) of the token importance weights, one value per "
               "run (write `stat: mean`)."),
    Metric("topk_overlap", "causal-lm", "lower", param="k", param_default=5,
           doc="|top-k(p) ∩ top-k(q)| / k per position (k from the clause, default 5); needs full logits."),
    Metric("abs", "tensor", "higher",
           doc="tensor: |c − r| per element, computed in float64."),
    Metric("rel", "tensor", "higher",
           doc="tensor: |c − r| / max(|r|, rel_floor) per element (default floor 1e-6·max|r| of the sample)."),
    Metric("ulp", "tensor", "higher",
           doc="tensor: |c − r| in units of the reference dtype's ulp at |r|, per element."),
    Metric("cosine", "tensor", "lower",
           doc="tensor: cosine similarity of the candidate and reference tensor, one value per sample (1 = same "
               "direction)."),
    Metric("sqnr", "tensor", "lower",
           doc="tensor: 10·log10(‖r‖² / ‖c − r‖²) in dB, one value per sample; identical tensors give +inf."),
    Metric("accuracy", "paired", "lower", paired="binary",
           doc="Next-token accuracy (causal LM): argmax equals the next input token; items are positions."),
    Metric("exact_match", "paired", "lower", paired="binary",
           doc="Per sample: the argmax equals every token of the sample's `target` (list of ids at the end of "
               "input_ids) or `label` (one id, the last input token); needs one of them on every sample."),
    Metric("reward", "paired", "lower", paired="continuous",
           doc="Per sample paired value from the data file, `reward: {reference: x, candidate: y}`."),
    Metric("score", "paired", "lower", paired="continuous",
           doc="Per sample paired value from the data file, `score: {reference: x, candidate: y}`."),
)}

# Stage 3 (runtime) metrics, measured per run by stages/runtime/measure.py and judged by the table
# stages/runtime/judge.JUDGES; the latency ones are per request (bootstrap CIs, ratios to a baseline).
LATENCY_METRICS = ("latency_ms", "latency_per_token_ms", "ttft_ms")
RUNTIME_METRICS: dict[str, str] = {
    "latency_ms": "Per-request latency in milliseconds (monotonic clock, client side; an `openai` "
                  "kernel's wire time, sent to last byte, promote's decoding excluded).",
    "latency_per_token_ms": "Per-request latency divided by the request's prompt tokens.",
    "ttft_ms": "Time to first token in milliseconds: a streamed one-token generation from each prompt "
               "(`openai` kernels with `api: vllm` or `openai`; extra passes, `repeats` per level). A "
               "kernel that cannot stream makes the clause `error`.",
    "throughput_tps": "Prompt tokens per second over the timed requests at one concurrency.",
    "peak_memory_mb": "Peak resident memory: promote's process for local kernels; for an `openai` kernel "
                      "the largest `process_resident_memory_bytes` its server's /metrics reported between "
                      "passes (error when the server exports none). `max`, `min` or `max_ratio` (vs the "
                      "baseline's).",
    "error_rate": "Fraction of timed requests that failed (after retries).",
    "rerun_equal": "Largest drift between two runs of the same prompts at concurrency 1 (0: bitwise equal).",
    "batch_invariance": "Largest drift of a prompt's values alone vs inside a concurrent batch.",
    "batch_invariant": "Alias of `batch_invariance`.",
}

# Causal-LM metrics every numerics pass summarises (in this order), and the parameterised ones.
METRIC_NAMES = tuple(m.name for m in METRICS.values()
                     if m.task in ("causal-lm", "both") and m.param is None and not m.on_demand)
# Exact on sampled-token records (only `target_logprobs`); any other LM metric needs the distribution.
SAMPLED_METRICS = tuple(m.name for m in METRICS.values() if m.sampled)
RL_METRICS = tuple(m.name for m in METRICS.values() if m.on_demand)
PARAMETERIZED_METRICS = {m.name: (m.param, m.param_default) for m in METRICS.values() if m.param}
DIVERGENCE_METRICS = tuple(m.name for m in METRICS.values() if m.divergence and m.task != "tensor")
# Per-position facts besides the metrics: argmax flips at near ties, the reference's top token and
# its entropy (slices bucket positions by it); whether both rows are constant (vacuity), the largest
# finite |reference logit| (float resolution) and the candidate's top token (slices' correctness).
EXTRA_NAMES = ("tie_flip", "ref_argmax", "ref_entropy", "cand_entropy", "degenerate", "ref_abs_max", "cand_argmax")
# `task: tensor`: per-element metrics, per-sample (tensor-level) ones, and all of them.
ELEMENT_METRICS = ("abs", "rel", "ulp", "nonfinite")
TENSOR_LEVEL_METRICS = ("cosine", "sqnr")
TENSOR_METRICS = ("abs", "rel", "ulp", "cosine", "sqnr", "nonfinite")
SHARED_METRICS = tuple(m.name for m in METRICS.values() if m.task == "both")
DEFAULT_VACUOUS_BELOW = 1e-12
#: `numerical.tie_margin` default: a reference top-2 logit margin below it makes an argmax flip a tie flip.
DEFAULT_TIE_MARGIN = 1e-3  # `vacuous_below` default of tensor clauses
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
