"""The `runtime` section's JSON Schema fragment (``Runtime.schema``)."""

from __future__ import annotations

from promote.contract.schema_parts import (
    COUNT_MAX,
    STATS,
    bound_props,
    clause_common,
    described_enum,
    integer,
    number,
    obj,
    stage_section,
)
from promote.kernels.schema import kernel
from promote.vocabulary import RUNTIME_METRICS

runtime_clause = obj(
    "A bound on a runtime measurement of the candidate, absolute or against the baseline (docs/runtime.md).",
    {
        **clause_common(),
        "metric": described_enum(RUNTIME_METRICS, "Runtime metric."),
        "stat": described_enum({k: v for k, v in STATS.items() if k in ("mean", "p50", "p90", "p99", "max", "min")},
                               "Statistic over timed requests (latency metrics). Default `p50`."),
        **bound_props,
        "max_ratio": number("Largest allowed candidate / baseline ratio: of the statistic for latency metrics "
                            "and `ttft_ms` (judged on the paired bootstrap CI of the ratio), of the two peaks for "
                            "`peak_memory_mb`.", exclusiveMinimum=0),
        "require": {"type": "boolean", "description": "`rerun_equal`/`batch_invariance`: `true` demands bitwise "
                    "equal values."},
        "concurrency": integer("Which measured load level the clause reads (one of `runtime.concurrency`). "
                               "Default 1.", minimum=1, maximum=1024),
        "paired": {"type": "boolean", "description": "`max_ratio`: `true` (default) judges paired per-request "
                   "ratios (same prompts both sides) by bootstrap; `false` treats traffic as unpaired and uses "
                   "the Mann–Whitney U test."},
    },
    ["id", "metric"],
)

SECTION = stage_section(
    "runtime", ": latency, throughput, errors, memory and determinism of the candidate, measured paired with a "
    "baseline (docs/runtime.md).",
    {
        "warmup": integer("Untimed warm-up requests per kernel (reported apart). Default 0.", minimum=0,
                          maximum=1_000_000),
        "repeats": integer("Timed passes over the requests at each concurrency. Default 1.", minimum=1,
                           maximum=1_000_000),
        "requests": integer("Eval-set samples used as requests (the first N). Default all.", minimum=1,
                            maximum=COUNT_MAX),
        "concurrency": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 1024},
                        "minItems": 1, "description": "Load levels measured: requests in flight at once "
                        "(`openai`), or samples per batch (local kernels). Level 1 is always measured. "
                        "Default [1]."},
        "baseline": {**kernel, "description": "The kernel the candidate's runtime is compared "
                     "with (e.g. the serving build in production). Default: the reference kernel."},
        "alpha": number("Level of each one-sided test; intervals are two-sided 1 − 2·alpha/looks. Default 0.05.",
                        exclusiveMinimum=0, exclusiveMaximum=0.5),
        "looks": integer("How many times the canary window will be judged: each look spends alpha/looks "
                         "(Bonferroni alpha spending), so repeated looks do not inflate false alarms. Default 1.",
                         minimum=1, maximum=10_000),
        "resamples": integer("Bootstrap resamples per interval. Default 2000.", minimum=99, maximum=100_000),
        "seed": integer("Seed of the bootstrap. Default 0.", minimum=0, maximum=2**32 - 1),
    },
    runtime_clause,
)
