"""The contract's `watch:` section as a JSON Schema fragment (``tools/gen_contract_schema.py`` assembles it;
docs/contract.md is generated from the schema, docs/watch.md explains it)."""

from __future__ import annotations

from promote.contract.schema_parts import COUNT_MAX, duration, integer, obj, string

SINK_KIND_PATTERN = "^[a-z][a-z0-9_-]{0,63}$"
SINK_OPTION_PATTERN = "^[a-z][a-z0-9_-]{0,63}$"  # option names: lower-case words

sink = {
    "type": "object",
    "description": "One sink (docs/watch.md, \"Sinks\"): `kind` names it (`haproxy`, `httproute`, `argo-abort`, "
                   "`flagd`, `webhook`, or a plug-in's); every other key is that sink's option, checked by the sink "
                   "when `watch` starts (a bad option is exit 2 naming `watch.sinks[i]`). Secrets are never written "
                   "here: a sink option names the environment variable that holds them.",
    "properties": {"kind": string("The sink's kind (its name in the sink registry).", pattern=SINK_KIND_PATTERN)},
    "required": ["kind"],
    "patternProperties": {SINK_OPTION_PATTERN: {"description": "A sink option: a string, number or boolean.",
                                                "type": ["string", "number", "boolean"]}},
    "additionalProperties": False,
}

requests = obj(
    "The JSONL request log whose recent prompts are scored on both kernels every window (shadow numerics; "
    "format in docs/watch.md). Without it, each window samples the contract's eval set.",
    {
        "path": string("The request log, one served request a line: `{\"input_ids\": [...], \"time\": UNIX_SECONDS, "
                       "\"id\": \"...\", \"tags\": {...}}`. Relative to the contract file.", minLength=1),
        "tail_bytes": integer("Only the last this many bytes of the log are read each window. Default 4194304 "
                              "(4 MiB).", minimum=1024, maximum=1024**3),
        "max_age": duration("Only requests at most this old (by their `time`) are scored; lines without `time` "
                            "are then skipped. Default: any request in the tail."),
        "max_prompt_tokens": integer("Longer prompts are skipped (counted in the evidence). Default 4096.",
                                     minimum=1, maximum=10_000_000),
    },
    ["path"],
)

SECTION = obj(
    "How `promote watch` judges a live canary window by window and `promote serve` answers rollout tools "
    "(docs/watch.md). Flags of `promote watch` override these keys.",
    {
        "window": duration("Length of one window: every window the live stages are evaluated once. Default `60s`."),
        "windows": integer("Stop after this many windows; also the horizon α is split over (α / windows each). "
                           "Default: run until stopped, spending α / (i (i+1)) on window i.", minimum=1,
                           maximum=COUNT_MAX),
        "stages": {"type": "array", "uniqueItems": True, "minItems": 1,
                   "items": string("A stage name (numerics, slices, runtime, observability, or a plug-in's)."),
                   "description": "Stages evaluated each window. Default: every stage the contract has."},
        "sample": integer("Prompts scored on both kernels per window (shadow numerics; also the runtime stage's "
                          "requests). Default 32.", minimum=1, maximum=1_000_000),
        "seed": integer("Seed of each window's prompt sample. Default 0.", minimum=0, maximum=2**32 - 1),
        "requests": requests,
        "trip_after": integer("Bad windows in a row that route the candidate's traffic back (k). Default 1.",
                              minimum=1, maximum=1000),
        "restore_after": integer("Clean windows in a row, once routed back, before the canary weight is restored "
                                 "(m). Default 3.", minimum=1, maximum=100_000),
        "min_wait": duration("Least time between a route-back and a restore. Default `5m`."),
        "promote_after": integer("Clean windows in a row after which the candidate is promoted (weight 100). "
                                 "Default: never (the rollout tool promotes).", minimum=1, maximum=100_000),
        "canary_weight": integer("The candidate's share of traffic (percent) while it is a canary. Default 10.",
                                 minimum=1, maximum=100),
        "candidate_digest": string("What identifies the candidate (e.g. its image or weights digest): a digest is "
                                   "promoted at most once. Default: sha256 of the candidate kernel spec.",
                                   minLength=1, maxLength=200),
        "log": string("The audit log (JSONL, hash-chained). Relative to the contract file. Default: "
                      "`<contract file name>.watch.jsonl` beside the contract.", minLength=1),
        "stale_after": duration("`promote serve`: a latest decision older than this is missing data (refuse, roll "
                                "back). Default: three windows."),
        "sinks": {"type": "array", "items": sink, "description": "Where each decision is enacted, in order "
                  "(`--sink` flags add to these)."},
    },
)
