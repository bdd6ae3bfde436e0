"""Generate schemas/report.schema.json from the typed results, as the contract's schema is generated.

The shape of a stage, a clause, a bound and an action comes from their dataclasses
(``results.StageResult``, ``results.ClauseResult``, ``results.Bound``, ``policy.Action``): every
field is a property, its JSON type follows its type hint, enums list the ``Status``/``ActionName``
members and the stage names come from ``sections.py``. What a type cannot say (a description, a
``minimum``, a nested shape inside a ``dict[str, Any]``) is written once below; a field without a
description stops the generator, so a new field cannot reach the schema undocumented. The plain-dict
parts of a Report (contract, kernels, data, details) are fragments in ``report_schema_parts.py``.

Run `python tools/gen_report_schema.py` after editing a result type; a test checks the committed file
is current.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[0] / "src"))
sys.path.insert(0, str(HERE))
import report_schema_parts as parts  # noqa: E402 - the free-form fragments beside this file

from promote.errors import EXIT_COULD_NOT_EVALUATE, EXIT_GATE_FAILED, EXIT_PASS, EXIT_USAGE  # noqa: E402
from promote.policy import VERDICTS, Action  # noqa: E402
from promote.report.model import SCHEMA_VERSION  # noqa: E402
from promote.results import JUDGED_FIELDS, Bound, ClauseResult, StageResult, Status  # noqa: E402
from promote.sections import STAGE_NAME_PATTERN  # noqa: E402

STATUSES = [s.value for s in Status]
# Any stage name, a plug-in's included: report/load.py checks the names are registered (with
# $PROMOTE_PLUGINS loaded), so the schema need not know the plug-ins.
STAGE_NAME = {"pattern": STAGE_NAME_PATTERN}
OUT = HERE.parent / "schemas" / "report.schema.json"

# Per type: "" is the object's description; every field needs one. Extra keywords refine the type.
DOCS: dict[type, dict[str, str]] = {
    StageResult: {
        "": "One stage's result.",
        "name": "Stage name.",
        "status": "Worst clause status of the stage.",
        "duration_s": "Wall time of the stage in seconds.",
        "notes": "Stage-level remarks.",
        "details": "Stage-specific facts (positions scored, metric summaries, kernel timings).",
        "clauses": "Evaluated clauses.",
    },
    ClauseResult: {
        "": "One evaluated clause.",
        "id": "Clause id from the contract.",
        "stage": "Stage that evaluated it.",
        "status": "Outcome. Only `pass` is green; `vacuous`, `inconclusive`, `error` are never a pass.",
        "message": "One-line human explanation: observed vs required.",
        "metric": "Metric name.",
        "stat": "Statistic name.",
        "observed": "Observed value; null when missing or non-finite (see observed_text).",
        "observed_text": "Observed value as text, including `nan`/`inf`/`n/a`.",
        "bounds": "Bounds the clause sets.",
        "slice": "Slice the clause was evaluated on (null: all data).",
        "line": "Line of the clause in the contract file.",
        "evidence": "Supporting facts: worst positions, counts, p-values, CIs.",
        "interval": "[low, high] the verdict was judged on: a confidence interval (slices), a sketched quantile's "
                    "rank-error band or the certified bounds of top-k records (numerics); equal ends for exact "
                    "statistics. Null when nothing was judged.",
        "margin": "Signed headroom of `observed` to the tightest bound: positive inside the bound, negative beyond "
                  "it.",
        "would_pass": "Per bound op (`max`/`min`), the loosest value of that bound that would have passed this "
                      "observation (the interval's far end): what tolerance the clause would need.",
        "samples": "How many values were judged: scored positions (numerics), elements or samples (tensors), "
                   "scored sequences (slices).",
        "p_value": "p-value of the claim that the bound is violated (multiplicity-adjusted when the stage "
                   "corrects), where a test was run.",
    },
    Bound: {
        "": "A bound.",
        "op": "`max`: observed ≤ value; `min`: observed ≥ value.",
        "value": "The bound.",
    },
    Action: {
        "": "A policy action.",
        "clause": "Clause id.",
        "stage": "Stage.",
        "status": "Clause status.",
        "action": "Action taken.",
        "reason": "Which rule fired, or why the default applied.",
        "slice": "Slice, if any.",
        "rule": "Index of the escalation rule that decided the action (null: no rule matched; status or "
                "escalation.default decided).",
    },
}
REFINE: dict[type, dict[str, dict[str, Any]]] = {
    StageResult: {"name": STAGE_NAME, "duration_s": {"minimum": 0},
                  "details": {"properties": parts.DETAILS_PROPERTIES}},
    ClauseResult: {"stage": STAGE_NAME, "evidence": {"properties": parts.EVIDENCE_PROPERTIES},
                   "interval": {"items": {"type": ["number", "null"]}, "minItems": 2, "maxItems": 2},
                   "would_pass": {"additionalProperties": {"type": ["number", "null"]}}},
    Action: {"rule": {"minimum": 0}, "stage": STAGE_NAME},
}
# Written by to_dict beside a field, not a field of the dataclass: (after field, name, schema).
WIRE_ONLY: dict[type, list[tuple[str, str, dict[str, Any]]]] = {
    ClauseResult: [("observed", "observed_text", {"type": "string"})],
}
OPTIONAL: dict[type, tuple[str, ...]] = {ClauseResult: JUDGED_FIELDS}  # to_dict leaves them out when unset
_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}


def type_schema(hint: Any) -> dict[str, Any]:
    """The JSON Schema of a type hint: scalars, ``X | None``, enums, Literals, lists, dicts, dataclasses."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"unsupported union {hint}")
        schema = type_schema(inner[0])
        if "type" not in schema:
            raise TypeError(f"cannot make {hint} nullable")
        return {**schema, "type": [schema["type"], "null"]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin is list:
        return {"type": "array", "items": type_schema(args[0])}
    if origin is dict:
        value = args[1] if args else Any
        return {"type": "object", "additionalProperties": True if value is Any else type_schema(value)}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": [m.value for m in hint]}
    if dataclasses.is_dataclass(hint):
        return object_schema(hint)
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    raise TypeError(f"no JSON type for {hint!r}")


def _property(cls: type, name: str, schema: dict[str, Any]) -> dict[str, Any]:
    refine = REFINE.get(cls, {}).get(name, {})
    if "enum" in refine:
        schema = {k: v for k, v in schema.items() if k != "type"}
    doc = DOCS[cls].get(name)
    if doc is None:
        raise SystemExit(f"{cls.__name__}.{name} has no description in tools/gen_report_schema.py DOCS")
    return {**schema, **refine, "description": doc}


def object_schema(cls: type) -> dict[str, Any]:
    """A closed object with one property per dataclass field (plus the to_dict-only ones)."""
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        properties[f.name] = _property(cls, f.name, type_schema(hints[f.name]))
        for after, name, schema in WIRE_ONLY.get(cls, []):
            if after == f.name:
                properties[name] = _property(cls, name, schema)
    optional = OPTIONAL.get(cls, ())
    return {"type": "object", "description": DOCS[cls][""], "properties": properties, "additionalProperties": False,
            "required": [name for name in properties if name not in optional]}


def report_schema() -> dict[str, Any]:
    """The Report's JSON form (``report.model.Report.to_dict``), key for key."""
    properties = {
        "schema_version": {"const": SCHEMA_VERSION, "description": "Report format version."},
        "tool": parts.TOOL, "identity": parts.IDENTITY, "contract": parts.CONTRACT, "kernels": parts.KERNELS,
        "data": parts.DATA,
        "stages": {"type": "array", "items": object_schema(StageResult), "description": "Stage results in run order."},
        "verdict": {"enum": list(VERDICTS),
                    "description": "Most severe action; `error` when something could not be evaluated; `invalid` "
                                   "when the identity check found the two sides do not compute on the same thing "
                                   "(nothing judged)."},
        "exit_code": {"enum": [EXIT_PASS, EXIT_GATE_FAILED, EXIT_USAGE, EXIT_COULD_NOT_EVALUATE],
                      "description": "0 pass/warn, 1 gate failed, 2 usage/contract error, 3 could not evaluate or "
                                     "invalid."},
        "actions": {"type": "array", "description": "The action the policy took for every clause, and why.",
                    "items": object_schema(Action)},
        "routes": {"type": "array", "items": {"type": "string"},
                   "description": "Slices that must fall back to the reference kernel (route-to-reference actions), "
                                  "first seen first; `*` means all traffic."},
        "implied": parts.IMPLIED,
        "counts": {"type": "object", "description": "Number of clauses per status.",
                   "propertyNames": {"enum": STATUSES}, "additionalProperties": {"type": "integer", "minimum": 0}},
        "command": {"type": "string", "description": "Command that reproduces this run locally."},
        "started_at": {"type": "string", "format": "date-time", "description": "UTC start time (ISO 8601)."},
        "finished_at": {"type": "string", "format": "date-time", "description": "UTC end time (ISO 8601)."},
        "duration_s": {"type": "number", "minimum": 0, "description": "Wall time in seconds."},
        "warnings": {"type": "array", "items": {"type": "string"}, "description": "Contract warnings and run remarks."},
        "commit": {"type": ["string", "null"],
                   "description": "Commit the run checked (GITHUB_SHA, else `git rev-parse HEAD`); null when unknown."},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://promote.dev/schemas/report.schema.json",
        "title": "promote report",
        "type": "object",
        "description": "The result of `promote check`: what was compared, every clause's outcome, the actions and "
                       "the verdict.",
        "properties": properties,
        "additionalProperties": False,
        "required": list(properties),
        "$defs": {"drift_profile": parts.DRIFT_PROFILE, "runtime_details": parts.RUNTIME_DETAILS},
    }


schema = report_schema()

if __name__ == "__main__":
    OUT.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
