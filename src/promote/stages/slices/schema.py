"""The `statistical` section's JSON Schema fragment (``Slices.schema``)."""

from __future__ import annotations

from promote.contract.schema_parts import (
    COUNT_MAX,
    METRICS,
    STATS,
    TASK_METRICS,
    bound_props,
    clause_common,
    integer,
    number,
    obj,
    string,
)

NOT_PER_SLICE = ("seq_log_ratio", "seq_geo_ratio", "ess", "pg_bias", "clip_budget_used")  # numerics stage only
statistical_clause = obj(
    "A per-slice bound on a divergence metric (`max`/`min`), or a paired comparison of a task metric between "
    "reference and candidate (`max_drop`/`margin`). Verdicts come from confidence intervals: inside the bound → "
    "pass, beyond → fail, straddling → inconclusive.",
    {
        **clause_common(),
        "metric": {"enum": [*(m for m in METRICS if m not in NOT_PER_SLICE), *TASK_METRICS], "description": "A "
                   "per-position numerical metric (judged per slice with a sequence-bootstrap CI; of the RL metrics "
                   "`is_ratio`, `k1`, `k3`, `chi2`) or a task metric. Task metrics: " +
                   " ".join(f"`{k}`: {v}" for k, v in TASK_METRICS.items())},
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
        "slice_bounds": {
            "type": "object", "propertyNames": {"minLength": 1},
            "description": "Per-slice bounds (`per_slice` or `max_over_slices` clauses): a mapping from a slice-label "
                           "pattern to the bounds of the slices it matches, so a noisy slice need not set the bound "
                           "of every other. Labels are the report's: `FAMILY=value` (e.g. `script=latin`, "
                           "`length=[0,64)`), crossed families `FAMILY:k=v,k2=v2`. In a pattern `*` matches any run "
                           "of characters and `?` one, everything else is literal. Patterns are tried in order and "
                           "the first match wins; a slice no pattern matches is judged against the clause's own "
                           "bound. Each entry sets only bounds of the clause's own kind (`max`/`min`, or "
                           "`max_drop`/`margin` for task metrics); a bound it leaves out stays the clause's. "
                           "`promote calibrate --derive` writes these where slices differ (docs/calibration.md).",
            "additionalProperties": obj(
                "The bounds of the slices this pattern matches (finite numbers).",
                {
                    "max": number("Upper bound for these slices (the clause has `max`)."),
                    "min": number("Lower bound for these slices (the clause has `min`)."),
                    "max_drop": number("Largest allowed drop for these slices (task metric with `max_drop`).",
                                       minimum=0),
                    "margin": number("Equivalence margin for these slices (task metric with `margin`).", minimum=0),
                },
                minProperties=1,
            ),
        },
        "test": {"enum": ["mcnemar", "wilcoxon", "paired-bootstrap"], "description": "Difference test reported "
                 "(and corrected for multiplicity) for task metrics: `mcnemar` (exact, binary metrics; default "
                 "for them), `wilcoxon` (signed-rank, continuous; default for them), `paired-bootstrap`."},
        "severity": {"enum": ["fail", "warn"], "description": "Status a violated clause gets. Default `fail`."},
    },
    ["id", "metric"],
)


SECTION = obj(
    "Stage 2, statistical slice tests (S): per-slice divergences with sequence-bootstrap confidence intervals, "
    "paired task-metric tests, multiplicity control, three-way verdicts. See docs/statistics.md.",
    {
        "alpha": number("Level of each one-sided test; intervals are two-sided 1 − 2·alpha (TOST). Default 0.05.",
                        exclusiveMinimum=0, exclusiveMaximum=0.5),
        "correction": {"enum": ["holm", "bh", "none"], "description": "Multiple-comparison correction of the "
                       "`fail` claims across all slices and clauses of the stage: `holm` (family-wise error; the "
                       "default, for blocking gates), `bh` (false discovery rate; exploratory), `none`."},
        "min_samples": integer("Slices with fewer scored sequences are `inconclusive`, never pass. Default 30.",
                               minimum=2, maximum=COUNT_MAX),
        "resamples": integer("Bootstrap resamples per interval. The smallest bootstrap p-value is "
                             "1/(resamples + 1). Default 2000.", minimum=99, maximum=100_000),
        "seed": integer("Seed of the bootstrap (results are reproducible). Default 0.", minimum=0,
                    maximum=2**32 - 1),
        "power": number("Power used for the minimum detectable effect reported per slice. Default 0.8.",
                        exclusiveMinimum=0, exclusiveMaximum=1),
        "clauses": {"type": "array", "items": statistical_clause, "minItems": 1,
                    "description": "Clauses of this stage."},
    },
    ["clauses"],
)
