"""The `numerical` section's JSON Schema fragment (``Numerics.schema``)."""

from __future__ import annotations

from promote.contract.schema_parts import (
    BATCH_MAX,
    COUNT_MAX,
    METRICS,
    PARAM_METRICS,
    STATS,
    TENSOR_METRICS,
    bound_props,
    clause_common,
    consistency,
    described_enum,
    integer,
    number,
    obj,
    string,
)
from promote.vocabulary import DEFAULT_TIE_MARGIN

numerical_clause = obj(
    "A bound on one statistic of one per-position (or, for `task: tensor`, per-element or per-sample) metric, "
    "reference vs candidate.",
    {
        **clause_common(),
        "metric": described_enum({**METRICS, **PARAM_METRICS, **TENSOR_METRICS}, "Metric; `data.task` decides "
                                 "which are allowed "
                                 "(`tensor:` ones need `task: tensor`, the others `task: causal-lm`; `nonfinite` "
                                 "fits both)."),
        "stat": described_enum(STATS, "Statistic over all scored positions (tensor: over elements, or over "
                               "samples for cosine/sqnr)."),
        **bound_props,
        "cap": number("`ratio_outside`, `ratio_above`, `ratio_below`, `seq_masked` only: the importance-weight "
                      "cap C (weights outside [1/C, C] count; `ratio_above` only w > C, `ratio_below` only "
                      "w < 1/C). Default 2 (verl's and SkyRL's truncated-IS default).", exclusiveMinimum=1),
        "k": integer("`topk_overlap` only: how many top tokens are compared. Default 5.", minimum=1,
                     maximum=1_000_000),
        "max_floor_ratio": number("Upper bound on observed / noise floor (the same statistic of the reference "
                                  "against itself, see `numerical.noise_floor`, which must be set).",
                                  exclusiveMinimum=0),
        "output": string("`task: tensor` only: key-path glob selecting the outputs this clause judges (`*` any "
                         "characters, `?` one; brackets and dots are literal, e.g. `hidden_states[3]`). Each "
                         "matched output is judged separately (one result per output, slice `output=PATH`). "
                         "Default: every output."),
        "rel_floor": number("`task: tensor`, metric `rel` only: denominator floor, rel = |c − r| / max(|r|, "
                            "rel_floor). Default: 1e-6 · max|r| of each sample's tensor. The report says how "
                            "many elements used the floor.", minimum=0),
        "vacuous_below": number("`task: tensor` only: an output whose max |x| is below this on both sides is "
                                "`vacuous` (nothing was compared). Default 1e-12.", minimum=0),
        "on_nonfinite": {"enum": ["fail", "skip-matching", "skip"], "description": "`task: tensor` only: what "
                         "non-finite (NaN/±Inf) elements do to this clause. `fail` (default): any fails it; "
                         "`skip-matching`: elements holding the same ±Inf on both sides (masks) are left out, "
                         "others fail; `skip`: all are left out and only finite pairs are judged (bound them "
                         "with a `nonfinite` clause)."},
        "severity": {"enum": ["fail", "warn"], "description": "Status a violated clause gets. Default `fail`."},
    },
    ["id", "metric", "stat"],
    anyOf=[{"required": ["max"]}, {"required": ["min"]}, {"required": ["max_floor_ratio"]}],
)

noise_floor = obj(
    "Measure the noise floor: the reference against itself under legitimate perturbations. The floor of a "
    "metric statistic is its largest value over the perturbations; a floor of exactly 0 means the reference "
    "is bitwise reproducible under them.",
    {
        "perturb": {"type": "array", "minItems": 1, "uniqueItems": True,
                    "items": {"enum": ["rerun", "batch_size", "odd_batch"], "description": "A perturbation."},
                    "description": "Perturbations: `rerun` (same batches again: nondeterminism), `batch_size` "
                                   "(every sample alone, batch 1 vs N), `odd_batch` (batches of "
                                   "`odd_batch_size`). Each costs one extra pass of each floored kernel. Default "
                                   "[rerun, odd_batch]: the per-sample batch-1 run only when asked."},
        "odd_batch_size": integer("Batch size of the `odd_batch` perturbation. Default 3.", minimum=1,
                                  maximum=BATCH_MAX),
        "kernels": {"type": "array", "minItems": 1, "uniqueItems": True,
                    "items": {"enum": ["reference", "candidate"], "description": "A kernel."},
                    "description": "Whose own noise is measured: each kernel against itself under the "
                                   "perturbations. The floor of a statistic is the largest over kernels and "
                                   "perturbations, so a bf16 candidate's own batch noise counts as legitimate. "
                                   "Default [reference]."},
        "cache": string("Directory where measured floors are kept and reused by later runs of the same kernels "
                        "on the same eval set (key: each floored kernel's spec, referenced files' size and "
                        "mtime, fingerprint, the eval set's ids and tokens, the perturbations); relative to the "
                        "contract file. Default: $PROMOTE_FLOOR_CACHE, else no cache (floors are still reused "
                        "within one process, e.g. across `promote calibrate` rows)."),
    },
)

SECTION = obj(
    "Stage 1, offline numerics (N): reference vs candidate on the eval set.",
    {
        "clauses": {"type": "array", "items": numerical_clause, "minItems": 1,
                    "description": "Numerical clauses; each bounds one metric statistic."},
        "tie_margin": number("Reference top-2 logit margin below which an argmax flip counts as a tie flip "
                             f"(reported apart). Default {DEFAULT_TIE_MARGIN:g}.", minimum=0),
        "noise_floor": noise_floor,
        "localize": {
            "description": "Activation tier (torch kernels only): record every module's output on both kernels "
                           "and report the first module whose drift exceeds its own noise floor (batch 1 vs N) "
                           "by `factor`, with a per-layer drift profile. `true` uses the defaults.",
            "oneOf": [
                {"type": "boolean", "description": "`true`: localise with default settings."},
                obj("Localisation settings.", {
                    "factor": number("A module diverges when its relative L2 drift exceeds factor × its floor. "
                                     "Default 10.", exclusiveMinimum=0),
                    "max_samples": integer("Localise on the first N samples (hooks keep every module's "
                                           "output of a batch in memory). Default 32.", minimum=1,
                                           maximum=100_000),
                }),
            ],
        },
        "implications": obj(
            "Context for the bounds chain: what the measured logit drift implies for your use "
            "(see `promote bounds`). Reported with every numerics result; `clip` also makes "
            "`promote validate` warn about logit clauses beyond the PPO clip budget.",
            {
                "seq_len": integer("Sequence length T for sequence-level TV and KL bounds.", minimum=1,
                                   maximum=COUNT_MAX),
                "reward_range": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2,
                                 "description": "Bounded reward [a, b]: |E_p r − E_q r| ≤ (b − a)·TV."},
                "clip": number("PPO clip ε: the budget osc ≤ log(1 + ε).", exclusiveMinimum=0),
                "advantage_max": number("|A| ≤ A_max, for the policy-gradient bias bound.", minimum=0),
                "score_norm": number("‖∇ log π‖ ≤ G, for the policy-gradient bias bound.", minimum=0),
            },
        ),
        "consistency": consistency("Under `numerical`: the same as the top-level `consistency`; both lists count."),
    },
    ["clauses"],
)
