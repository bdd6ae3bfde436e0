"""Building blocks of the contract's JSON Schema, shared by the stages' section fragments
(``stages/<name>/schema.py``, each stage's ``schema()``) and ``tools/gen_contract_schema.py``, which
assembles them: the helpers, the caps on integers, the clause keys every stage has, and the metric
groups as the schema lists them (descriptions are declared with the metric in ``vocabulary.py``)."""

from __future__ import annotations

from typing import Any

from promote.contract.promql import DURATION_PATTERN
from promote.sections import by_section
from promote.vocabulary import METRICS as VOCABULARY

METRICS = {m.name: m.doc for m in VOCABULARY.values()
           if m.task in ("causal-lm", "both") and m.param not in ("cap", "k")}
# Numerical-stage metrics with a parameter from the clause (`cap`, `k`).
PARAM_METRICS = {m.name: m.doc for m in VOCABULARY.values() if m.task == "causal-lm" and m.param in ("cap", "k")}
# Metrics of `data.task: tensor` (metrics/tensor.py); `nonfinite` is shared with the causal-LM set.
TENSOR_METRICS = {m.name: m.doc for m in VOCABULARY.values() if m.task == "tensor"}
STATS = {
    "mean": "Arithmetic mean over scored positions (tensor: elements, or samples for cosine/sqnr).",
    "p50": "Median over scored positions (tensor: elements, or samples for cosine/sqnr).",
    "p90": "90th percentile over scored positions (tensor: elements, or samples for cosine/sqnr).",
    "p99": "99th percentile over scored positions (tensor: elements, or samples for cosine/sqnr).",
    "p99.9": "99.9th percentile over scored positions (tensor: elements, or samples for cosine/sqnr).",
    "max": "Largest value over scored positions (tensor: elements, or samples for cosine/sqnr).",
    "min": "Smallest value over scored positions (tensor: elements, or samples for cosine/sqnr).",
    "sum": "Sum over scored positions or elements (e.g. total non-finite values).",
}
ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"

# Task metrics of paired comparisons (statistical stage).
TASK_METRICS = {m.name: m.doc for m in VOCABULARY.values() if m.task == "paired"}


def described_enum(values: dict[str, str], description: str) -> dict:
    """An enum whose allowed values are each documented (oneOf of consts keeps per-value text)."""
    return {
        "description": description + " Allowed: " + "; ".join(f"`{k}`: {v}" for k, v in values.items()),
        "enum": list(values),
    }


def obj(description: str, properties: dict, required: list[str] | None = None, **extra: Any) -> dict:
    """A closed object (unknown keys are errors) whose properties are each documented."""
    out = {"type": "object", "description": description, "additionalProperties": False,
           "properties": properties}
    if required:
        out["required"] = required
    out.update(extra)
    return out


def string(description: str, **extra: Any) -> dict:
    return {"type": "string", "description": description, **extra}


def number(description: str, **extra: Any) -> dict:
    return {"type": "number", "description": description, **extra}


def integer(description: str, *, maximum: int, **extra: Any) -> dict:
    """Every integer has a cap: a count that large cannot be meant and would exhaust memory or time
    (``quantiles: 1000000000`` once asked for 19 GB). The cap is stated in the description too."""
    return {"type": "integer", "description": f"{description} At most {maximum}.", "maximum": maximum, **extra}


# Caps on sizes (integer keys), each far above any real use and below what exhausts a machine.
BATCH_MAX = 65536
THREADS_MAX = 1024
COUNT_MAX = 1_000_000_000  # counts that only select or compare (data.limit, seq_len, min_samples)


_WARNING_ID_PATTERN = (f"^(chain/{ID_PATTERN[1:-1]}/{ID_PATTERN[1:-1]}|clip/{ID_PATTERN[1:-1]})$")


def consistency(where: str) -> dict:
    """`consistency: {ignore: [...]}`: bound-chain warnings a contract acknowledges (top level or numerical)."""
    return obj(
        "Bound-chain consistency warnings (a logit clause that cannot imply a sibling distribution clause, or "
        f"that exceeds the PPO clip budget) this contract acknowledges. {where}",
        {"ignore": {"type": "array", "uniqueItems": True,
                    "items": {"type": "string", "pattern": _WARNING_ID_PATTERN},
                    "description": "Warning ids not to print, as each warning shows them: `chain/<logit clause "
                                   "id>/<clause id>` (the logit clause does not imply that clause) or `clip/<logit "
                                   "clause id>` (beyond the PPO clip budget). An id that matches no current warning "
                                   "is itself a warning, so a stale entry does not hide a new problem."}},
    )


def clause_common() -> dict:
    """The keys every clause has."""
    return {
        "id": string("Unique clause id (across the whole contract); used in reports, policy rules and annotations.",
                     pattern=ID_PATTERN),
        "description": string("Why this clause exists; shown in the report."),
    }


bound_props = {
    "max": number("Upper bound: the clause fails when the observed statistic exceeds it."),
    "min": number("Lower bound: the clause fails when the observed statistic is below it."),
}


NOT_YET = " Not evaluated by this version of promote: when the stage runs its clauses report `error` (never `pass`)."


DURATION = DURATION_PATTERN  # the pattern contract/promql.parse_duration accepts


def duration(description: str) -> dict:
    """A Prometheus duration key."""
    return string(description + " A Prometheus duration: `30s`, `5m`, `1h30m` (units ms s m h d w y).",
                  pattern=DURATION)



def stage_section(section: str, description: str, extra: dict, clause: dict) -> dict:
    """A stage section: its title from ``sections.py`` (and a warning if not evaluated yet), its keys, its clauses."""
    decl = by_section(section)
    return obj(f"{decl.title}{description}" + ("" if decl.evaluated else NOT_YET), {
        **extra,
        "clauses": {"type": "array", "items": clause, "minItems": 1, "description": "Clauses of this stage."},
    }, ["clauses"])

