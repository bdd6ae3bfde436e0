"""Generate schemas/contract.schema.json (kept in Python so shared pieces are written once).

Run `python tools/gen_contract_schema.py` after editing; a test checks the committed file is current.
"""

from __future__ import annotations

import json
from pathlib import Path

METRICS = {
    "kl": "KL(p‖q) per scored position, p = softmax(reference), q = softmax(candidate), in nats.",
    "kl_rev": "KL(q‖p) per scored position, in nats.",
    "tv": "Total variation ½‖p − q‖₁ per scored position, in [0, 1].",
    "logit_drift": "‖z_c − z_r‖∞: largest absolute logit difference per position.",
    "logit_osc": "max(z_c − z_r) − min(z_c − z_r): shift-invariant logit oscillation per position.",
    "log_ratio": "log p_y − log q_y on the next input token y (log importance weight).",
    "abs_log_ratio": "|log p_y − log q_y| on the next input token y.",
    "argmax_agree": "1 where the candidate's top token equals the reference's, else 0; stat mean = agreement rate.",
    "nonfinite": "Count of non-finite (NaN or ±Inf) candidate or reference logits per position.",
}
STATS = {
    "mean": "Arithmetic mean over scored positions.",
    "p50": "Median over scored positions.",
    "p90": "90th percentile over scored positions.",
    "p99": "99th percentile over scored positions.",
    "p99.9": "99.9th percentile over scored positions.",
    "max": "Largest value over scored positions.",
    "min": "Smallest value over scored positions.",
    "sum": "Sum over scored positions (e.g. total non-finite logits).",
}
PRECISIONS = {
    "fp32": "float32 with TF32 explicitly off (the reference default).",
    "tf32": "float32 storage, TF32 matmuls allowed.",
    "bf16": "bfloat16 autocast around the forward pass; weights stay float32.",
    "fp16": "float16 autocast around the forward pass; weights stay float32.",
    "bf16-weights": "weights and activations cast to bfloat16 (no autocast).",
    "fp16-weights": "weights and activations cast to float16 (no autocast).",
}
ACTIONS = ["pass", "warn", "block", "route-to-reference", "shadow-only", "rollback"]
STAGES = ["numerics", "slices", "runtime", "observability"]
STATUSES = ["pass", "warn", "fail", "inconclusive", "vacuous", "error", "skipped"]
ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def described_enum(values: dict[str, str], description: str) -> dict:
    """An enum whose allowed values are each documented (oneOf of consts keeps per-value text)."""
    return {
        "description": description + " Allowed: " + "; ".join(f"`{k}`: {v}" for k, v in values.items()),
        "enum": list(values),
    }


def obj(description: str, properties: dict, required: list[str] | None = None, **extra) -> dict:
    out = {"type": "object", "description": description, "additionalProperties": False,
           "properties": properties}
    if required:
        out["required"] = required
    out.update(extra)
    return out


def string(description: str, **extra) -> dict:
    return {"type": "string", "description": description, **extra}


def number(description: str, **extra) -> dict:
    return {"type": "number", "description": description, **extra}


def integer(description: str, **extra) -> dict:
    return {"type": "integer", "description": description, **extra}


def clause_common() -> dict:
    return {
        "id": string("Unique clause id (across the whole contract); used in reports, policy rules and annotations.",
                     pattern=ID_PATTERN),
        "description": string("Why this clause exists; shown in the report."),
    }


torch_kernel = obj(
    "A PyTorch module run in-process by promote.",
    {
        "kind": {"const": "torch", "description": "Kernel kind: `torch` runs an nn.Module in this process."},
        "model": string("Python file and factory, `path/to/model.py:build` (path relative to the contract file), "
                        "or an importable `package.module:build`. The factory takes no arguments and returns an "
                        "nn.Module whose forward(input_ids[B,T]) returns logits [B,T,V].",
                        pattern="^[^:]+:[A-Za-z_][A-Za-z0-9_]*$"),
        "weights": string("safetensors file with the state dict, loaded strictly (relative to the contract file)."),
        "precision": described_enum(PRECISIONS, "Numeric precision of the forward pass; flags are set and restored "
                                    "around each call and recorded in the report. Default `fp32`."),
        "device": {"enum": ["cpu", "cuda"], "description": "Device to run on. Default `cpu`."},
        "batch_size": integer("Sequences per forward pass. Default 16.", minimum=1),
        "threads": integer("torch intra-op threads during this kernel's calls (default: torch's own choice).",
                           minimum=1),
    },
    ["kind", "model"],
)

kernel = {
    "description": "How to obtain one kernel's outputs. Chosen by `kind`.",
    "type": "object",
    "required": ["kind"],
    "properties": {"kind": {"enum": ["torch"], "description": "Kernel kind. Allowed: `torch`."}},
    "oneOf": [torch_kernel],
}

data = obj(
    "The evaluation set both kernels are run on.",
    {
        "path": string("JSONL eval set, one sample a line: `id` (unique string), `input_ids` (list of int), "
                       "`tags` (string → string). Relative to the contract file."),
        "task": {"enum": ["causal-lm"], "description": "What the outputs mean. `causal-lm`: logits [B,T,V]; "
                 "position t is scored on predicting input_ids[t+1]. Default `causal-lm`."},
        "limit": integer("Use only the first N samples (quick local runs). Default: all.", minimum=1),
    },
    ["path"],
)

SLICE_KEY_PATTERN = "^(tags\\.[^\\s]+|length|position|token_frequency|entropy|margin)$"
SLICE_KEYS_TEXT = ("`tags.NAME` (a sample tag; samples without it form a `(missing)` slice), `length` (sequence "
                   "length in tokens), `position` (token position t), `token_frequency` (how often the predicted "
                   "token occurs in the eval set), `entropy` (entropy of the reference distribution, nats), "
                   "`margin` (reference top-1 minus top-2 logit)")

slice_def = obj(
    "A family of slices of the eval set, judged by the statistical stage (`per_slice` clauses).",
    {
        "name": string("Slice family name; slices are labelled `NAME=VALUE` (e.g. `script=cyrillic`) in reports "
                       "and escalation rules.", pattern=ID_PATTERN),
        "by": {"description": "Key to slice by, or a list of keys for crossed slices (every combination that "
               "occurs). Keys: " + SLICE_KEYS_TEXT + ".",
               "oneOf": [string("One slice key.", pattern=SLICE_KEY_PATTERN),
                         {"type": "array", "items": string("A slice key.", pattern=SLICE_KEY_PATTERN),
                          "minItems": 1, "description": "Crossed slice keys."}]},
        "buckets": {"type": "array", "items": {"type": "number"}, "minItems": 1,
                    "description": "Explicit, strictly increasing bucket edges for numeric keys: "
                    "[e0, e1, …] gives [e0, e1), [e1, e2), …; values below e0 or from the last edge on get "
                    "their own bucket when present. Declared buckets with no samples are reported "
                    "(inconclusive), not dropped."},
        "quantiles": integer("Number of equal-count buckets for numeric keys, from the observed values. "
                             "Default 4 when neither `buckets` nor `quantiles` is given.", minimum=2),
        "max_values": integer("Most distinct tag values kept as separate slices; the rarest beyond this are merged "
                              "into `(other)` and a note says so. Default 50.", minimum=2),
    },
    ["name", "by"],
)

bound_props = {
    "max": number("Upper bound: the clause fails when the observed statistic exceeds it."),
    "min": number("Lower bound: the clause fails when the observed statistic is below it."),
}

numerical_clause = obj(
    "A bound on one statistic of one per-position metric, reference vs candidate.",
    {
        **clause_common(),
        "metric": described_enum(METRICS, "Per-position metric."),
        "stat": described_enum(STATS, "Statistic over all scored positions."),
        **bound_props,
        "severity": {"enum": ["fail", "warn"], "description": "Status a violated clause gets. Default `fail`."},
    },
    ["id", "metric", "stat"],
    anyOf=[{"required": ["max"]}, {"required": ["min"]}],
)

numerical = obj(
    "Stage 1, offline numerics (N): reference vs candidate on the eval set.",
    {
        "clauses": {"type": "array", "items": numerical_clause, "minItems": 1,
                    "description": "Numerical clauses; each bounds one metric statistic."},
        "tie_margin": number("Reference top-2 logit margin below which an argmax flip counts as a tie flip "
                             "(reported apart). Default 1e-3.", minimum=0),
    },
    ["clauses"],
)

NOT_YET = " Not evaluated by this version of promote: when the stage runs its clauses report `error` (never `pass`)."

TASK_METRICS = {
    "accuracy": "next-token accuracy (causal LM): argmax equals the next input token; items are positions",
    "exact_match": "per sample: the argmax equals every token of the sample's `target` (list of ids at the end "
                   "of input_ids) or `label` (one id, the last input token); needs one of them on every sample",
    "reward": "per sample paired value from the data file, `reward: {reference: x, candidate: y}`",
    "score": "per sample paired value from the data file, `score: {reference: x, candidate: y}`",
}

statistical_clause = obj(
    "A per-slice bound on a divergence metric (`max`/`min`), or a paired comparison of a task metric between "
    "reference and candidate (`max_drop`/`margin`). Verdicts come from confidence intervals: inside the bound → "
    "pass, beyond → fail, straddling → inconclusive.",
    {
        **clause_common(),
        "metric": {"enum": [*METRICS, *TASK_METRICS], "description": "A numerical metric (judged per slice with a "
                   "sequence-bootstrap CI) or a task metric. Task metrics: " +
                   "; ".join(f"`{k}`: {v}" for k, v in TASK_METRICS.items()) + "."},
        "stat": {"enum": [*STATS, "max_over_slices"], "description": "Statistic per slice (numerical metrics; "
                 "`max`/`min`/`sum` are judged on the observed value, without a CI), or `max_over_slices`: judge every "
                 "slice's mean and report the worst slice by name. Default `mean`."},
        **bound_props,
        "max_drop": number("Task metrics: largest allowed drop (reference − candidate, in the metric's units). "
                           "Pass when the whole CI of the candidate − reference difference is ≥ −max_drop.",
                           minimum=0),
        "margin": number("Task metrics: two-sided equivalence margin: pass when the CI of the difference lies in "
                         "[−margin, margin].", minimum=0),
        "per_slice": {"type": "boolean", "description": "Judge the clause in every slice (one result per slice); "
                      "false judges the whole eval set. Default false."},
        "slices": {"type": "array", "items": string("A slice family name."), "minItems": 1,
                   "description": "Slice families this clause uses. Default: all of them."},
        "test": {"enum": ["mcnemar", "wilcoxon", "paired-bootstrap"], "description": "Difference test reported "
                 "(and corrected for multiplicity) for task metrics: `mcnemar` (exact, binary metrics; default "
                 "for them), `wilcoxon` (signed-rank, continuous; default for them), `paired-bootstrap`."},
        "severity": {"enum": ["fail", "warn"], "description": "Status a violated clause gets. Default `fail`."},
    },
    ["id", "metric"],
)

runtime_clause = obj(
    "A bound on a runtime measurement of the candidate against the reference (or a baseline).",
    {
        **clause_common(),
        "metric": {"enum": ["latency_ms", "throughput_tps", "peak_memory_mb", "error_rate", "rerun_equal",
                            "batch_invariant"], "description": "Runtime metric."},
        "stat": described_enum(STATS, "Statistic over timed runs."),
        **bound_props,
        "max_ratio": number("Largest allowed candidate / baseline ratio.", exclusiveMinimum=0),
        "require": {"type": "boolean", "description": "For boolean metrics: the value required."},
    },
    ["id", "metric"],
)

observability_clause = obj(
    "A check against live monitoring: a PromQL query with thresholds, or a required, fresh series.",
    {
        **clause_common(),
        "query": string("PromQL expression evaluated at the end of the window."),
        "metric": string("Metric name whose presence and freshness is checked."),
        **bound_props,
        "require": {"enum": ["present"], "description": "`present`: the series must exist."},
        "max_age": string("Largest allowed age of the newest sample, e.g. `5m`.", pattern="^[0-9]+(ms|s|m|h|d)$"),
        "on_missing": {"enum": ["fail", "inconclusive", "pass"], "description": "Status when the query returns "
                       "no data. Default `fail` (fail closed)."},
    },
    ["id"],
)


def stage(description: str, extra: dict, clause: dict) -> dict:
    return obj(description + NOT_YET, {
        **extra,
        "clauses": {"type": "array", "items": clause, "minItems": 1, "description": "Clauses of this stage."},
    }, ["clauses"])


statistical = obj(
    "Stage 2, statistical slice tests (S): per-slice divergences with sequence-bootstrap confidence intervals, "
    "paired task-metric tests, multiplicity control, three-way verdicts. See docs/statistics.md.",
    {
        "alpha": number("Level of each one-sided test; intervals are two-sided 1 − 2·alpha (TOST). Default 0.05.",
                        exclusiveMinimum=0, exclusiveMaximum=0.5),
        "correction": {"enum": ["holm", "bh", "none"], "description": "Multiple-comparison correction of the "
                       "`fail` claims across all slices and clauses of the stage: `holm` (family-wise error; the "
                       "default, for blocking gates), `bh` (false discovery rate; exploratory), `none`."},
        "min_samples": integer("Slices with fewer scored sequences are `inconclusive`, never pass. Default 30.",
                               minimum=2),
        "resamples": integer("Bootstrap resamples per interval. The smallest bootstrap p-value is "
                             "1/(resamples + 1). Default 2000.", minimum=99),
        "seed": integer("Seed of the bootstrap (results are reproducible). Default 0.", minimum=0),
        "power": number("Power used for the minimum detectable effect reported per slice. Default 0.8.",
                        exclusiveMinimum=0, exclusiveMaximum=1),
        "clauses": {"type": "array", "items": statistical_clause, "minItems": 1,
                    "description": "Clauses of this stage."},
    },
    ["clauses"],
)
runtime = stage(
    "Stage 3, canary runtime checks (R).",
    {
        "warmup": integer("Untimed warm-up runs.", minimum=0),
        "repeats": integer("Timed runs.", minimum=1),
    },
    runtime_clause,
)
observability = stage(
    "Stage 4, observability sign-off (O).",
    {
        "source": obj("Where metrics are read from.", {
            "kind": {"enum": ["prometheus", "exposition"], "description": "A Prometheus HTTP API or an "
                     "exposition-format snapshot file."},
            "url": string("Prometheus base URL (for `prometheus`)."),
            "path": string("Snapshot file (for `exposition`), relative to the contract file."),
            "window": string("Look-back window, e.g. `30m`.", pattern="^[0-9]+(ms|s|m|h|d)$"),
        }, ["kind"]),
    },
    observability_clause,
)

rule = obj(
    "One escalation rule: the first rule whose `when` matches a clause result decides its action.",
    {
        "when": obj("Conditions, all of which must match; omitted conditions match anything.", {
            "stage": {"enum": STAGES, "description": "Stage the clause belongs to."},
            "clause": string("Clause id or shell-style glob (e.g. `kl-*`)."),
            "status": {"description": "Clause status (or list of statuses) to match.",
                       "oneOf": [{"enum": STATUSES, "description": "One status."},
                                 {"type": "array", "items": {"enum": STATUSES}, "minItems": 1,
                                  "description": "Any of these statuses."}]},
            "slice": string("Slice glob (e.g. `script=*`)."),
        }),
        "action": {"enum": ACTIONS, "description": "Action taken: " + ", ".join(ACTIONS) + "."},
    },
    ["when", "action"],
)

escalation = obj(
    "Escalation policy Π: maps clause results to actions; the verdict is the most severe action.",
    {
        "default": {"enum": ACTIONS, "description": "Action for a violated clause (fail, vacuous, inconclusive) "
                    "that no rule matches. Default `block`."},
        "rules": {"type": "array", "items": rule, "description": "Ordered rules; the first match wins."},
    },
)

schema = obj(
    "A kernel contract: how far a candidate (inference) kernel may drift from its reference kernel.",
    {
        "$schema": string("Optional JSON Schema URI, for editors."),
        "version": {"const": 1, "description": "Contract DSL version. Must be 1."},
        "name": string("Contract name, shown in reports and used in the PR comment marker.", minLength=1,
                       maxLength=200),
        "description": string("What this contract protects and why."),
        "reference": {**kernel, "description": "The reference kernel K_ref (e.g. the fp32 training kernel)."},
        "candidate": {**kernel, "description": "The candidate kernel K_cand being promoted."},
        "data": data,
        "slices": {"type": "array", "items": slice_def, "description": "Slice families (statistical stage)."},
        "numerical": numerical,
        "statistical": statistical,
        "runtime": runtime,
        "observability": observability,
        "escalation": escalation,
    },
    ["version", "name", "reference", "candidate", "data"],
)
schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
          "$id": "https://promote.dev/schemas/contract.schema.json", "title": "promote kernel contract", **schema}

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "schemas" / "contract.schema.json"
    out.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")
