"""The free-form parts of the report schema: facts that are plain dicts in the Report (its contract,
kernels, data, implied bounds, stage details), written here as JSON Schema fragments. The typed parts
(stages, clauses, bounds, actions, statuses, verdicts) are generated from the dataclasses and enums
by tools/gen_report_schema.py, which imports this module."""

TOOL = {
    "type": "object",
    "description": "The tool that wrote the report.",
    "properties": {
        "name": {"const": "promote", "description": "Tool name."},
        "version": {"type": "string", "description": "Tool version."},
    },
    "additionalProperties": False,
    "required": ["name", "version"],
}

CONTRACT = {
    "type": "object",
    "description": "The contract checked.",
    "properties": {
        "name": {"type": "string", "description": "Contract name."},
        "path": {"type": "string", "description": "Contract file as given."},
        "sha256": {
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "description": "sha256 of the contract as evaluated: its data after `${VAR}` "
            "interpolation, as canonical JSON (sorted keys, separators `,` and "
            "`:`, UTF-8). `check --merge` accepts only reports with the same "
            "value, so a report made with other variable values (another "
            "candidate, another bound) is not merged.",
        },
        "raw_sha256": {
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "description": "sha256 of the contract file's bytes, before `${VAR}` interpolation.",
        },
        "description": {"type": ["string", "null"], "description": "Contract description."},
    },
    "additionalProperties": False,
    "required": ["name", "path", "sha256", "description"],
}

KERNEL_SIDE = {
    "type": "object",
    "description": "A kernel: its contract spec and environment fingerprint.",
    "properties": {
        "spec": {
            "type": "object",
            "additionalProperties": True,
            "description": "The kernel as the contract declares it.",
        },
        "fingerprint": {
            "type": ["object", "null"],
            "additionalProperties": True,
            "description": "Library versions, device, precision flags, threads; null if the kernel never ran.",
        },
    },
    "additionalProperties": False,
    "required": ["spec", "fingerprint"],
}

KERNELS = {
    "type": ["object", "null"],
    "description": "Reference and candidate kernels; null when the contract declares none (a contract whose only "
    "stage is observability).",
    "properties": {"reference": KERNEL_SIDE, "candidate": KERNEL_SIDE},
    "additionalProperties": False,
    "required": ["reference", "candidate"],
}

DATA = {
    "type": ["object", "null"],
    "description": "The eval set; null when the contract declares none (a contract whose only stage is observability).",
    "properties": {
        "path": {"type": "string", "description": "Eval-set file."},
        "samples": {"type": "integer", "minimum": 0, "description": "Samples read."},
        "positions": {"type": "integer", "minimum": 0, "description": "Scored positions in those samples."},
        "read": {
            "type": "boolean",
            "description": "false when no selected stage reads the eval set (observability "
            "alone): the file was not read and `samples`/`positions` are 0. Absent "
            "when it was read.",
        },
    },
    "additionalProperties": False,
    "required": ["path", "samples", "positions"],
}

IMPLIED = {
    "type": "array",
    "description": "Bounds implied by measured drift (docs/metrics.md), e.g. TV ≤ tanh(osc/4) from the largest logit "
    "oscillation.",
    "items": {
        "type": "object",
        "description": "One implied bound.",
        "properties": {
            "quantity": {"type": "string", "description": "What is bounded, e.g. `tv` or `kl`."},
            "bound": {
                "type": ["number", "null"],
                "description": "The implied upper bound (null if the source value was non-finite).",
            },
            "source": {"type": "string", "description": "Measured statistic it follows from, e.g. `logit_osc max`."},
            "source_value": {"type": ["number", "null"], "description": "The measured value."},
            "formula": {"type": "string", "description": "The inequality used."},
            "scope": {
                "type": "string",
                "description": "Where it holds: every scored position (from max) or that "
                "fraction of positions (from a percentile).",
            },
        },
        "additionalProperties": False,
        "required": ["quantity", "bound", "source", "source_value", "formula", "scope"],
    },
}

EVIDENCE_PROPERTIES = {
    "worst": {
        "type": "array",
        "items": {
            "type": "object",
            "description": "A scored position (evidence).",
            "properties": {
                "value": {"type": ["number", "null"], "description": "Metric value there (null if non-finite)."},
                "sample_id": {"type": "string", "description": "Eval-set sample id."},
                "position": {"type": "integer", "description": "Position t in the sample (predicting token t+1)."},
                "token": {"type": "integer", "description": "The next input token at t."},
            },
            "additionalProperties": False,
            "required": ["value", "sample_id", "position", "token"],
        },
        "description": "Worst positions for this metric.",
    }
}

DETAILS_PROPERTIES = {"profile": {"$ref": "#/$defs/drift_profile"}, "runtime": {"$ref": "#/$defs/runtime_details"}}

DRIFT_SERIES = {
    "type": "object",
    "required": ["positions", "histogram"],
    "additionalProperties": False,
    "properties": {
        "positions": {
            "type": "array",
            "description": "Non-empty position buckets in order.",
            "items": {
                "type": "object",
                "required": ["start", "end", "count", "mean", "p99", "max", "nonfinite"],
                "additionalProperties": False,
                "properties": {
                    "start": {"type": "integer", "minimum": 0, "description": "First position t of the bucket."},
                    "end": {
                        "type": ["integer", "null"],
                        "description": "One past the last position (null: open bucket).",
                    },
                    "count": {"type": "integer", "minimum": 0, "description": "Finite values in the bucket."},
                    "mean": {"type": ["number", "null"], "description": "Exact mean of the finite values."},
                    "p99": {
                        "type": ["number", "null"],
                        "description": "Upper edge of the value bin "
                        "holding the 99th percentile: at "
                        "most one bin above the true "
                        "p99.",
                    },
                    "max": {"type": ["number", "null"], "description": "Largest finite value."},
                    "nonfinite": {"type": "integer", "minimum": 0, "description": "NaN/Inf values (not binned)."},
                },
            },
        },
        "histogram": {
            "type": "object",
            "required": ["offset", "counts"],
            "additionalProperties": False,
            "description": "Counts of value bins offset, offset+1, …; bins of all buckets "
            "summed. Counts add across runs.",
            "properties": {
                "offset": {"type": "integer", "minimum": 0},
                "counts": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            },
        },
    },
}

DRIFT_PROFILE = {
    "type": "object",
    "required": ["value_bins", "position_edges", "candidate"],
    "additionalProperties": False,
    "description": "Numerics stage: where along the sequence drift occurs and how it is distributed, for the "
    "candidate and the noise floor (engine/profile.py). Mergeable counts: runs over shards add up.",
    "properties": {
        "value_bins": {
            "type": "object",
            "required": ["per_decade", "low", "high", "bins"],
            "additionalProperties": False,
            "description": "Bin 0 holds values below `low` (zeros), bin `bins`-1 values "
            "from `high` up; bin i in between covers "
            "[low·10^((i-1)/per_decade), low·10^(i/per_decade)).",
            "properties": {
                "per_decade": {"type": "integer", "minimum": 1},
                "low": {"type": "number"},
                "high": {"type": "number"},
                "bins": {"type": "integer", "minimum": 3},
            },
        },
        "position_edges": {
            "type": "array",
            "items": {"type": "integer", "minimum": 0},
            "description": "Lower edges of the fixed position buckets.",
        },
        "candidate": {
            "type": "object",
            "description": "Per metric (`kl`, `logit_osc`): drift by position bucket and a "
            "histogram over the fixed log-spaced value bins.",
            "additionalProperties": DRIFT_SERIES,
        },
        "noise_floor": {
            "type": "object",
            "description": "The reference against itself, the declared perturbations "
            "pooled; absent without `noise_floor`.",
            "additionalProperties": DRIFT_SERIES,
        },
    },
}

RUNTIME_DETAILS = {
    "type": "object",
    "description": "Runtime stage: what each number was measured at, per kernel role and concurrency "
    "(stages/runtime.py).",
    "required": ["measured"],
    "additionalProperties": True,
    "properties": {
        "baseline": {"type": "string", "description": "The baseline kernel's label."},
        "measured": {
            "type": "object",
            "description": "Per role (baseline, candidate).",
            "additionalProperties": {
                "type": "object",
                "required": ["label", "levels"],
                "additionalProperties": True,
                "properties": {
                    "label": {"type": "string"},
                    "levels": {
                        "type": "object",
                        "description": "Per concurrency (as a string key).",
                        "additionalProperties": {
                            "type": "object",
                            "description": "One kernel at one concurrency (stages/runtime_measure.py Level.summary).",
                            "required": ["concurrency", "requests", "errors", "latency_quantiles_ms"],
                            "additionalProperties": True,
                            "properties": {
                                "concurrency": {"type": "integer", "minimum": 1},
                                "requests": {
                                    "type": "integer",
                                    "minimum": 0,
                                    "description": "Timed requests (samples × repeats).",
                                },
                                "errors": {
                                    "type": "integer",
                                    "minimum": 0,
                                    "description": "Failed requests (no latency).",
                                },
                                "latency_ms": {
                                    "type": "object",
                                    "additionalProperties": {"type": ["number", "null"]},
                                    "description": "p50, p90, p99 and mean latency of successful requests, ms.",
                                },
                                "latency_quantiles_ms": {
                                    "type": "array",
                                    "items": {"type": "number"},
                                    "description": "The "
                                    "per-request "
                                    "latency "
                                    "distribution, "
                                    "ms: "
                                    "21 "
                                    "quantiles "
                                    "at "
                                    "p0, "
                                    "p5, "
                                    "…, "
                                    "p100 "
                                    "of "
                                    "successful "
                                    "requests "
                                    "(empty "
                                    "when "
                                    "none "
                                    "succeeded). "
                                    "The "
                                    "HTML "
                                    "report "
                                    "draws "
                                    "them "
                                    "as "
                                    "a "
                                    "CDF.",
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}

FINDING = {
    "type": "object",
    "description": "One identity finding (src/promote/findings.py; docs/identity.md): which check, about which side, "
                   "what differs and how to fix it.",
    "properties": {
        "check": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$",
                  "description": "The identity check that found it: vocabulary, prompt, fingerprint, value_semantics, "
                                 "sampling, or a plug-in's."},
        "severity": {"enum": ["invalid", "note"],
                     "description": "`invalid`: the sides do not compute on the same thing, nothing is judged; `note`: "
                                    "worth showing, not a mismatch (padded vocabulary rows excluded)."},
        "side": {"enum": ["reference", "candidate", "both", "eval_set"],
                 "description": "Which side it is about: one kernel, `both` (they differ from each other) or the "
                                "eval set."},
        "message": {"type": "string", "description": "What differs, with the values seen on each side."},
        "fix": {"type": "string", "description": "What to change so both sides compute on the same thing."},
        "evidence": {"type": "object", "additionalProperties": True,
                     "description": "The values behind the message (JSON-safe)."},
    },
    "additionalProperties": False,
    "required": ["check", "severity", "side", "message", "fix", "evidence"],
}

IDENTITY = {
    "type": ["object", "null"],
    "description": "The identity check, run before any metric (docs/identity.md): its findings (shown first in every "
                   "rendering), each side's identity fingerprint and which checks ran. An `invalid` finding makes the "
                   "verdict `invalid` (exit 3) and no stage is judged. Null when no kernel pair was built "
                   "(observability only).",
    "properties": {
        "invalid": {"type": "boolean", "description": "Whether any finding is `invalid`."},
        "findings": {"type": "array", "items": FINDING, "description": "Findings in check order."},
        "fingerprints": {
            "type": "object", "description": "Per side: content hashes of its tokenizer, config and weights files "
                                             "(`sha256`, `files`, `bytes`; tokenizer: `vocab`), and a server's own "
                                             "account (`server`: `/v1/models`, `/version`).",
            "propertyNames": {"enum": ["reference", "candidate"]},
            "additionalProperties": {"type": "object", "additionalProperties": True}},
        "checked": {"type": "array", "items": {"type": "string"}, "description": "Checks that ran, in order."},
        "not_checked": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "Checks that did not run on this pair, each with why."},
        "probe_samples": {"type": "integer", "minimum": 0,
                          "description": "Samples of the probe batch whose outputs the checks read (0: none ran)."},
        "scored_vocab": {"type": ["integer", "null"], "minimum": 1,
                         "description": "The vocabulary every metric is computed over when padded rows beyond the "
                                        "tokenizer are excluded; null: the whole logits row."},
    },
    "additionalProperties": False,
    "required": ["invalid", "findings", "fingerprints", "checked", "not_checked", "probe_samples", "scored_vocab"],
}
