"""Generate schemas/contract.schema.json (kept in Python so shared pieces are written once).

Only assembles: each stage's section fragment is its package's ``schema()`` (``stages/<name>/schema.py``
for the built-ins, a plug-in's own), the kernel specs are ``kernels/schema.py``, and the helpers are
``contract/schema_parts.py``. Run `python tools/gen_contract_schema.py` after editing; a test checks the
committed file is current.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from promote.contract.fault_specs import BUILTIN_FAULTS  # noqa: E402 - the built-in fault names
from promote.contract.schema_parts import (  # noqa: E402 - the helpers and metric groups
    COUNT_MAX,
    ID_PATTERN,
    METRICS,
    PARAM_METRICS,
    TASK_METRICS,
    TENSOR_METRICS,
    consistency,
    integer,
    number,
    obj,
    string,
)
from promote.kernels.schema import fault, kernel  # noqa: E402 - kernel specs and planted faults
from promote.policy import ACTIONS  # noqa: E402 - the policy's actions
from promote.results import Status  # noqa: E402 - clause statuses
from promote.sections import decls, stage_names  # noqa: E402 - the stage registry
from promote.watch.schema import SECTION as WATCH  # noqa: E402 - `watch:` (promote watch / serve)

__all__ = ["METRICS", "PARAM_METRICS", "TASK_METRICS", "TENSOR_METRICS", "schema"]  # tests read the metric groups

STAGES = list(stage_names())
STATUSES = [s.value for s in Status]


calibration = obj(
    "How `promote calibrate` exercises this contract (docs/calibration.md): which faults it must catch, extra "
    "named faults, and the calibration split `--derive` uses.",
    {
        "faults": {"type": "object", "additionalProperties": fault,
                   "description": "Named faults beyond the built-in ones ("
                                  + ", ".join(f"`{k}`" for k in BUILTIN_FAULTS) + "), e.g. a slice-only fault."},
        "covers": {"type": "array", "uniqueItems": True, "items": {"type": "string"},
                   "description": "Faults (built-in or named under `faults`) this contract claims to catch: "
                                  "`calibrate` exits 1 when one of them is missed."},
        "split": number("`--derive`: fraction of the eval set (by sample, seeded) used to derive bounds; the rest "
                        "checks them out of sample. Default 0.5.", exclusiveMinimum=0, exclusiveMaximum=1),
        "seed": integer("`--derive`: seed of the split. Default 0.", minimum=0, maximum=2**32 - 1),
        "margin": number("`--derive`: relative margin added on top of each derived bound. Default 0.2.",
                         minimum=0, maximum=10),
    },
)



data = obj(
    "The evaluation set both kernels are run on.",
    {
        "path": string("JSONL eval set, one sample a line: `id` (unique string), `input_ids` (list of int; "
                       "`task: tensor`: `inputs`, an object of named nested lists), `tags` (string → string). "
                       "Relative to the contract file."),
        "task": {"enum": ["causal-lm", "tensor"], "description": "What the outputs mean. `causal-lm`: logits "
                 "[B,T,V]; position t is scored on predicting input_ids[t+1]. `tensor`: any named or nested "
                 "outputs, compared by key path with the tensor metrics (abs, rel, ulp, cosine, sqnr, "
                 "nonfinite). Default `causal-lm`."},
        "inputs_file": string("`task: tensor` only: safetensors file with inputs named `<sample id>/<input name>` "
                              "(for inputs too large for JSONL; dtypes are kept). Relative to the contract file."),
        "limit": integer("Use only the first N samples (quick local runs). Default: all.", minimum=1,
                     maximum=COUNT_MAX),
    },
    ["path"],
)

SLICE_KEY_PATTERN = ("^(tags\\.[^\\s]+|length|position|token_frequency|entropy|margin|response_position|"
                     "response_length)$")
SLICE_KEYS_TEXT = ("`tags.NAME` (a sample tag; samples without it form a `(missing)` slice), `length` (sequence "
                   "length in tokens), `position` (token position t), `token_frequency` (how often the predicted "
                   "token occurs in the eval set), `entropy` (entropy of the reference distribution, nats), "
                   "`margin` (reference top-1 minus top-2 logit), `response_position` (index of the position "
                   "among its sample's scored positions: 0 = first response token), `response_length` (number of "
                   "scored positions of the sample: the response length of a rollout)")

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
                             "Default 4 when neither `buckets` nor `quantiles` is given.", minimum=2,
                             maximum=1000),
        "max_values": integer("Most distinct tag values kept as separate slices; the rarest beyond this are merged "
                              "into `(other)` and a note says so. Default 50.", minimum=2,
                              maximum=10_000),
    },
    ["name", "by"],
)

rule = obj(
    "One escalation rule: the first rule whose `when` matches a clause result decides its action. The report "
    "quotes the rule (`escalation.rules[i]` and its conditions) next to every action it takes.",
    {
        "when": obj("Conditions, all of which must match; omitted conditions match anything, except that a rule "
                    "without `status` matches only clauses that did not pass (not `pass`/`skipped`).", {
            "stage": {"enum": STAGES, "description": "Stage the clause belongs to."},
            "clause": string("Clause id or shell-style glob (e.g. `kl-*`)."),
            "status": {"description": "Clause status (or list of statuses) to match. Omitted: any status except "
                       "`pass` and `skipped`, so a rule never acts on passing clauses unless it says `status: pass`.",
                       "oneOf": [{"enum": STATUSES, "description": "One status."},
                                 {"type": "array", "items": {"enum": STATUSES}, "minItems": 1,
                                  "description": "Any of these statuses."}]},
            "slice": string("Shell-style glob on the slice a clause was evaluated on, written `name=value` "
                            "(e.g. `script=*`, `length=256-*`). A rule with `slice` never matches a clause "
                            "evaluated on all data."),
        }),
        "action": {"enum": list(ACTIONS), "description": "Action taken: `pass` (accept), `warn` (accept, flagged), "
                   "`shadow-only` (serve the candidate in shadow only), `route-to-reference` (promote, but the "
                   "matched slices must fall back to the reference kernel; the report lists them), `rollback` "
                   "(revert a deployed candidate), `block` (refuse promotion). Severity increases in that order; "
                   "the verdict is the most severe action, and shadow-only or worse fails the gate (exit 1)."},
    },
    ["when", "action"],
)

escalation = obj(
    "Escalation policy Π: maps clause results to actions; the verdict is the most severe action. A clause that "
    "could not be evaluated (`error`) makes the verdict `error` (exit 3) whatever the rules say.",
    {
        "default": {"enum": list(ACTIONS), "description": "Action for a violated clause (fail, vacuous, inconclusive) "
                    "that no rule matches. Default `block`."},
        "rules": {"type": "array", "items": rule, "description": "Ordered rules; the first match wins."},
    },
)



def section_schema(decl) -> dict:  # noqa: ANN001 - a sections.StageDecl
    """A stage's section schema: its package's fragment (``stages.api.Stage.schema``)."""
    stage = decl.implementation()
    fragment = stage.schema() if stage is not None else None
    if fragment is None:
        raise SystemExit(f"stage {decl.name!r} has no schema(): its section `{decl.section}` cannot be documented")
    return fragment


# What each stage section needs at the top level, from sections.py: a contract whose only stage reads
# live monitoring (observability) needs no kernels and no eval set; `numerical` without `reference` is
# an error at the `numerical` key (contract/schema_messages.py words it).
DEPENDENT_REQUIRED = {
    d.section: [*(("reference", "candidate") if d.needs_kernels else ()), *(("data",) if d.needs_evalset else ())]
    for d in decls() if d.needs_kernels or d.needs_evalset
}
KERNEL_STAGES = " (" + ", ".join(f"`{d.section}`" for d in decls() if d.needs_kernels) + ")"
DATA_STAGES = " (" + ", ".join(f"`{d.section}`" for d in decls() if d.needs_evalset) + ")"

schema = obj(
    "A kernel contract: how far a candidate (inference) kernel may drift from its reference kernel. Every "
    "number must be finite (`.nan`, `.inf` are errors), integers are written as integers and are capped "
    "(`maximum`), and no string may contain a NUL character.",
    {
        "$schema": string("Optional JSON Schema URI, for editors."),
        "version": {"const": 1, "description": "Contract DSL version. Must be 1."},
        "name": string("Contract name, shown in reports and used in the PR comment marker.", minLength=1,
                       maxLength=200),
        "description": string("What this contract protects and why."),
        "reference": {**kernel, "description": "The reference kernel K_ref (e.g. the fp32 training kernel). "
                      "Required when a stage that runs the kernels is present" + KERNEL_STAGES + "."},
        "candidate": {**kernel, "description": "The candidate kernel K_cand being promoted. Required when a stage "
                      "that runs the kernels is present" + KERNEL_STAGES + "."},
        "data": {**data, "description": data["description"] + " Required when a stage that reads the eval set is "
                 "present" + DATA_STAGES + "."},
        "slices": {"type": "array", "items": slice_def, "description": "Slice families (statistical stage)."},
        **{d.section: section_schema(d) for d in decls()},
        "consistency": consistency("Top level: applies to the whole contract (the same as "
                                   "`numerical.consistency`)."),
        "escalation": escalation,
        "calibration": calibration,
        "watch": WATCH,
    },
    ["version", "name"],
    dependentRequired=DEPENDENT_REQUIRED,
)
schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
          "$id": "https://promote.dev/schemas/contract.schema.json", "title": "promote kernel contract", **schema}

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "schemas" / "contract.schema.json"
    out.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")
