"""Generate schemas/calibration.schema.json (the `promote calibrate --output json` document).

The document is plain dicts (calibrate/table.py, calibrate/derive.py), so its shape is written here
once, in Python; every closed vocabulary in it comes from the code that writes it: the row kinds and
cell results (calibrate/outcomes.py), the bound ops (results.py), the stages a bound can be derived
for (calibrate/outcomes.py, checked against sections.py) and the exit codes (errors.py). Run
`python tools/gen_calibration_schema.py` after editing; a test checks the committed file is current.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from promote.calibrate.outcomes import CELL_RESULTS, DERIVABLE_STAGES, VARIANT_KINDS  # noqa: E402
from promote.errors import EXIT_COULD_NOT_EVALUATE, EXIT_GATE_FAILED, EXIT_PASS  # noqa: E402
from promote.results import BOUND_OPS  # noqa: E402
from promote.sections import STAGE_NAMES  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "schemas" / "calibration.schema.json"
CELL_RESULTS = list(CELL_RESULTS)
VARIANT_KINDS = list(VARIANT_KINDS)
BOUND_OPS = list(BOUND_OPS)
if not set(DERIVABLE_STAGES) <= set(STAGE_NAMES):
    raise SystemExit(f"calibrate/outcomes.DERIVABLE_STAGES names a stage sections.py lacks: {DERIVABLE_STAGES}")
OFFLINE_STAGES = list(DERIVABLE_STAGES)
EXIT_CODES = [EXIT_PASS, EXIT_GATE_FAILED, EXIT_COULD_NOT_EVALUATE]

schema = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://promote.dev/schemas/calibration.schema.json",
    "title": "promote calibration result (`promote calibrate --json`)",
    "description": "A table variant × clause: the honest candidate, legitimate-noise variants on both "
    "kernels, and planted faults, each judged by the contract (docs/calibration.md).",
    "type": "object",
    "required": ["schema", "contract", "samples", "clauses", "variants", "problems", "exit_code"],
    "properties": {
        "schema": {"const": "promote-calibration/1", "description": "Format identifier."},
        "contract": {
            "type": "object",
            "required": ["name", "path", "sha256"],
            "properties": {"name": {"type": "string"}, "path": {"type": "string"}, "sha256": {"type": "string"}},
            "description": "The contract calibrated (the derived one with --derive).",
        },
        "samples": {"type": "integer", "description": "Eval-set samples each run judged."},
        "clauses": {
            "type": "array",
            "description": "The columns: every judged clause, in report order.",
            "items": {
                "type": "object",
                "required": ["id", "stage"],
                "properties": {
                    "id": {"type": "string"},
                    "stage": {"type": "string"},
                    "metric": {"type": ["string", "null"]},
                    "stat": {"type": ["string", "null"]},
                    "bounds": {"type": "array"},
                },
            },
        },
        "variants": {
            "type": "array",
            "description": "The rows.",
            "items": {
                "type": "object",
                "required": ["name", "kind", "description", "outcome", "cells"],
                "properties": {
                    "name": {
                        "type": "string",
                        "description": "honest, candidate-rerun, "
                        "candidate-odd-batch, "
                        "reference-rerun, "
                        "reference-odd-batch, "
                        "candidate-batch-1, "
                        "reference-batch-1, or a "
                        "fault's name.",
                    },
                    "kind": {
                        "enum": VARIANT_KINDS,
                        "description": "What the contract should do: pass honest and legit rows, catch faults.",
                    },
                    "description": {"type": "string"},
                    "covered": {
                        "type": ["boolean", "null"],
                        "description": "Faults: whether the "
                        "contract's "
                        "`calibration.covers` "
                        "names it (a missed "
                        "covered fault exits 1).",
                    },
                    "outcome": {
                        "enum": CELL_RESULTS,
                        "description": "Faults: caught when any clause caught it. Others: fail when any clause failed.",
                    },
                    "cells": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "description": "One clause in one variant: its worst result over slices.",
                            "required": ["status", "result", "observed", "bounds"],
                            "properties": {
                                "status": {
                                    "type": "string",
                                    "description": "The "
                                    "clause "
                                    "status "
                                    "in "
                                    "that "
                                    "run "
                                    "(pass, "
                                    "fail, "
                                    "warn, "
                                    "inconclusive, "
                                    "vacuous, "
                                    "error).",
                                },
                                "result": {
                                    "enum": CELL_RESULTS,
                                    "description": "Faults: "
                                    "caught "
                                    "(the "
                                    "clause "
                                    "failed), "
                                    "missed "
                                    "(it "
                                    "passed), "
                                    "inconclusive. "
                                    "Honest "
                                    "and "
                                    "legitimate "
                                    "variants: "
                                    "pass, "
                                    "fail, "
                                    "inconclusive.",
                                },
                                "observed": {
                                    "type": ["number", "null"],
                                    "description": "Observed "
                                    "value "
                                    "(the "
                                    "worst "
                                    "slice's "
                                    "estimate "
                                    "for "
                                    "slice "
                                    "clauses); "
                                    "null "
                                    "when "
                                    "not "
                                    "finite.",
                                },
                                "slice": {
                                    "type": ["string", "null"],
                                    "description": "The slice of the worst result, null for aggregate clauses.",
                                },
                                "bounds": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["op", "value"],
                                        "properties": {
                                            "op": {"enum": BOUND_OPS},
                                            "value": {"type": ["number", "null"]},
                                        },
                                    },
                                    "description": "The clause's bounds.",
                                },
                                "message": {"type": "string", "description": "The clause's message in that run."},
                                "slices_failing": {
                                    "type": "integer",
                                    "description": "Results of this clause that failed (slices).",
                                },
                                "slices": {
                                    "type": "integer",
                                    "description": "Results of this clause (1, or one per slice).",
                                },
                            },
                        },
                        "description": "Clause id → cell.",
                    },
                },
            },
        },
        "skipped": {
            "type": "array",
            "description": "Built-in faults left out by default because the candidate "
            "cannot take them (a model fault on a kernel that is not `kind: "
            "torch`), each with why.",
            "items": {
                "type": "object",
                "required": ["name", "reason"],
                "additionalProperties": False,
                "properties": {"name": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
        "problems": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Why the exit code is 1 (a legitimate variant failing or "
            "inconclusive, a covered fault not caught, a derived bound "
            "failing held out).",
        },
        "exit_code": {
            "enum": EXIT_CODES,
            "description": "0: no problems; 1: at least one problem; 3: at least one row "
            "could not be evaluated (`errors`).",
        },
        "derived": {
            "type": "object",
            "description": "With --derive: the split and one row per bound.",
            "properties": {
                "split": {"type": "object"},
                "margin": {"type": "number"},
                "bounds": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "description": "One derived bound.",
                        "required": ["clause", "stage", "rule", "bound"],
                        "properties": {
                            "clause": {"type": "string"},
                            "stage": {"enum": OFFLINE_STAGES},
                            "metric": {"type": "string"},
                            "stat": {"type": "string"},
                            "op": {"enum": BOUND_OPS},
                            "written": {"type": ["number", "null"], "description": "The bound the contract had."},
                            "rule": {
                                "type": "string",
                                "description": "The "
                                "derivation "
                                "rule "
                                "as "
                                "printed "
                                "(docs/calibration.md "
                                "quotes "
                                "each); "
                                "`not "
                                "derivable: "
                                "…` "
                                "when "
                                "not "
                                "derived.",
                            },
                            "calibration": {
                                "type": ["number", "null"],
                                "description": "The statistic on the calibration split.",
                            },
                            "confidence_bound": {
                                "type": ["number", "null"],
                                "description": "Its one-sided 95 % confidence bound.",
                            },
                            "detail": {
                                "type": "object",
                                "description": "Rule "
                                "details "
                                "(peaks-over-threshold: "
                                "threshold, "
                                "exceedances, "
                                "mean_excess, "
                                "positions, "
                                "target_positions, "
                                "shape "
                                "(0: "
                                "exponential "
                                "tail; "
                                "> "
                                "0: "
                                "the "
                                "generalised "
                                "Pareto "
                                "tail "
                                "the "
                                "calibration "
                                "max "
                                "needed), "
                                "exponential_p_max).",
                            },
                            "per_slice": {
                                "type": "object",
                                "additionalProperties": {"type": "number"},
                                "description": "Per-slice 95 % upper confidence bounds.",
                            },
                            "slice_bounds": {
                                "type": "array",
                                "description": "Statistical "
                                "clauses: "
                                "the "
                                "per-slice "
                                "bounds "
                                "written "
                                "as "
                                "the "
                                "clause's "
                                "`slice_bounds` "
                                "(slices "
                                "whose "
                                "own "
                                "bound "
                                "is "
                                "over "
                                "SLICE_FACTOR "
                                "= "
                                "2× "
                                "smaller "
                                "than "
                                "the "
                                "clause-wide "
                                "one; "
                                "tag "
                                "families "
                                "and "
                                "fixed "
                                "buckets "
                                "only), "
                                "each "
                                "with "
                                "its "
                                "rule, "
                                "calibration "
                                "value, "
                                "confidence "
                                "bound, "
                                "bound "
                                "and "
                                "held-out "
                                "result "
                                "(status, "
                                "observed, "
                                "bound; "
                                "null "
                                "when "
                                "the "
                                "slice "
                                "is "
                                "absent "
                                "from "
                                "the "
                                "held-out "
                                "split).",
                                "items": {
                                    "type": "object",
                                    "required": ["slice", "rule", "bound"],
                                    "properties": {
                                        "slice": {
                                            "type": "string",
                                            "description": "The slice label, written as its own pattern.",
                                        },
                                        "rule": {"type": "string"},
                                        "calibration": {"type": ["number", "null"]},
                                        "confidence_bound": {"type": ["number", "null"]},
                                        "bound": {"type": "number"},
                                        "held_out": {"type": ["object", "null"]},
                                    },
                                },
                            },
                            "bound": {
                                "type": ["number", "null"],
                                "description": "The derived bound written to the contract.",
                            },
                            "held_out": {
                                "type": ["object", "null"],
                                "description": "The "
                                "derived "
                                "contract's "
                                "result "
                                "on "
                                "the "
                                "held-out "
                                "split: "
                                "status, "
                                "observed, "
                                "slice, "
                                "message.",
                            },
                            "derived": {
                                "type": "boolean",
                                "description": "False: "
                                "no "
                                "rule "
                                "could "
                                "give "
                                "a "
                                "bound "
                                "inside "
                                "the "
                                "metric's "
                                "range "
                                "that "
                                "can "
                                "fail; "
                                "`reason` "
                                "says "
                                "why "
                                "and "
                                "the "
                                "written "
                                "bound "
                                "is "
                                "kept.",
                            },
                            "reason": {
                                "type": "string",
                                "description": "Why "
                                "the "
                                "clause "
                                "is "
                                "not "
                                "derivable "
                                "(docs/calibration.md "
                                "lists "
                                "every "
                                "reason).",
                            },
                        },
                    },
                },
                "problems": {"type": "array", "items": {"type": "string"}},
                "warnings": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "One line per clause --derive could "
                    "not bound (its written bound is "
                    "kept), also printed on stderr.",
                },
            },
        },
        "errors": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Rows that could not be evaluated (an `error` outcome) or were `invalid` (the identity "
                           "check: neither a catch nor a pass): exit 3.",
        },
    },
}


if __name__ == "__main__":
    OUT.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
