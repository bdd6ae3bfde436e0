"""Typed `slices:` and `statistical:` sections (stage 2), with the checks the schema cannot express.

Kept apart from ``model.py`` so the stage-2 vocabulary (slice keys, task metrics, which test fits
which metric) lives in one place. Every problem names the contract line through ``doc.problem``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

from promote.contract.load import LoadedDocument, Problem
from promote.vocabulary import BINARY_TASK_METRICS, CONTINUOUS_TASK_METRICS, TASK_METRICS

# Slice keys promote derives itself (docs/statistics.md); `tags.NAME` reads a sample tag.
DERIVED_SLICE_KEYS = ("length", "position", "token_frequency", "entropy", "margin", "response_position",
                      "response_length")
# Task metrics (vocabulary.py) compare reference and candidate on the same items (paired); the rest
# are divergences.
__all__ = ["BINARY_TASK_METRICS", "CONTINUOUS_TASK_METRICS", "DERIVED_SLICE_KEYS", "TASK_METRICS", "SliceBound",
           "SliceDef", "StatisticalClause", "glob_regex", "StatisticalSpec", "parse_slices", "parse_statistical"]


@dataclass(frozen=True)
class SliceDef:
    """One `slices:` entry: a family of slices from one key or a cross of keys."""

    name: str
    keys: tuple[str, ...]
    buckets: tuple[float, ...] | None
    quantiles: int | None
    max_values: int
    line: int | None


BOUND_KEYS = ("max", "min", "max_drop", "margin")


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A slice-label pattern: `*` any run of characters, `?` one; everything else literal (labels hold
    `[`, `(` and `,`, e.g. `length=[0,64)`, which fnmatch would read as a character class)."""
    return re.compile("".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern))


@dataclass(frozen=True)
class SliceBound:
    """One `slice_bounds` entry: a label pattern and the bounds it overrides (None: the clause's own)."""

    pattern: str
    bounds: tuple[tuple[str, float], ...]

    def matches(self, label: str) -> bool:
        return glob_regex(self.pattern).fullmatch(label) is not None


@dataclass(frozen=True)
class StatisticalClause:
    """A per-slice divergence bound (`max`/`min`) or a paired task-metric margin (`max_drop`/`margin`)."""

    id: str
    metric: str
    stat: str
    max: float | None
    min: float | None
    max_drop: float | None
    margin: float | None
    per_slice: bool
    slices: tuple[str, ...] | None
    test: str | None
    severity: str
    description: str | None
    line: int | None
    slice_bounds: tuple[SliceBound, ...] = ()

    @property
    def is_task(self) -> bool:
        return self.metric in TASK_METRICS

    def for_slice(self, label: str | None) -> tuple[StatisticalClause, str | None]:
        """The clause with the bounds of the first `slice_bounds` pattern matching ``label`` (and that
        pattern), or the clause itself and None: each slice is judged against its own bound."""
        if label is None:
            return self, None
        for entry in self.slice_bounds:
            if entry.matches(label):
                return replace(self, slice_bounds=(), **dict(entry.bounds)), entry.pattern
        return self, None


@dataclass(frozen=True)
class StatisticalSpec:
    clauses: tuple[StatisticalClause, ...]
    alpha: float = 0.05
    correction: str = "holm"
    min_samples: int = 30
    resamples: int = 2000
    seed: int = 0
    power: float = 0.8


def parse_slices(doc: LoadedDocument, raw: list[dict[str, Any]], problems: list[Problem]) -> tuple[SliceDef, ...]:
    out, seen = [], set()
    for i, entry in enumerate(raw):
        where = ("slices", i)
        keys = (entry["by"],) if isinstance(entry["by"], str) else tuple(entry["by"])
        if entry["name"] in seen:
            problems.append(doc.problem((*where, "name"), f"duplicate slice name `{entry['name']}`"))
        seen.add(entry["name"])
        for key in keys:
            if not (key in DERIVED_SLICE_KEYS or (key.startswith("tags.") and len(key) > 5)):
                problems.append(doc.problem((*where, "by"), f"unknown slice key `{key}`; use `tags.NAME` or one "
                                            "of " + ", ".join(f"`{k}`" for k in DERIVED_SLICE_KEYS)))
        if len(set(keys)) != len(keys):
            problems.append(doc.problem((*where, "by"), "a crossed slice names the same key twice"))
        numeric = any(k in DERIVED_SLICE_KEYS for k in keys)
        buckets = entry.get("buckets")
        if ("buckets" in entry or "quantiles" in entry) and not numeric:
            problems.append(doc.problem(where, f"slice `{entry['name']}`: `buckets`/`quantiles` apply to numeric "
                                        "keys only; tags are sliced by value"))
        if "buckets" in entry and "quantiles" in entry:
            problems.append(doc.problem(where, f"slice `{entry['name']}`: give `buckets` or `quantiles`, not both"))
        if buckets is not None and any(b2 <= b1 for b1, b2 in zip(buckets, buckets[1:], strict=False)):
            problems.append(doc.problem((*where, "buckets"), "bucket edges must be strictly increasing"))
        out.append(SliceDef(name=entry["name"], keys=keys, buckets=tuple(buckets) if buckets is not None else None,
                            quantiles=entry.get("quantiles"), max_values=entry.get("max_values", 50),
                            line=doc.locate(where)[0]))
    return tuple(out)


def _statistical_clause(doc: LoadedDocument, i: int, c: dict[str, Any], names: set[str],
                        problems: list[Problem]) -> StatisticalClause:
    where = ("statistical", "clauses", i)
    metric, task = c["metric"], c["metric"] in TASK_METRICS
    stat = c.get("stat", "mean")
    has = {k for k in ("max", "min", "max_drop", "margin", "test") if k in c}
    if task:
        if has & {"max", "min"}:
            problems.append(doc.problem(where, f"clause `{c['id']}`: task metric `{metric}` is judged by the paired "
                                        "difference; use `max_drop` or `margin`, not `max`/`min`"))
        if len(has & {"max_drop", "margin"}) != 1:
            problems.append(doc.problem(where, f"clause `{c['id']}`: task metric `{metric}` needs exactly one of "
                                        "`max_drop` (largest allowed drop) or `margin` (two-sided)"))
        if stat not in ("mean", "max_over_slices"):
            problems.append(doc.problem((*where, "stat"), f"clause `{c['id']}`: task metrics allow `stat: mean` "
                                        "or `stat: max_over_slices` only"))
        allowed = ("mcnemar", "paired-bootstrap") if metric in BINARY_TASK_METRICS else ("wilcoxon", "paired-bootstrap")
        if c.get("test", allowed[0]) not in allowed:
            problems.append(doc.problem((*where, "test"), f"clause `{c['id']}`: test `{c['test']}` does not fit "
                                        f"`{metric}`; use " + " or ".join(f"`{t}`" for t in allowed)))
        test = c.get("test", allowed[0])
    else:
        if has & {"max_drop", "margin", "test"}:
            problems.append(doc.problem(where, f"clause `{c['id']}`: `max_drop`, `margin` and `test` are for task "
                                        f"metrics ({', '.join(TASK_METRICS)}); bound `{metric}` with `max`/`min`"))
        if not has & {"max", "min"}:
            problems.append(doc.problem(where, f"clause `{c['id']}`: `{metric}` needs `max` or `min`"))
        test = None
    per_slice = c.get("per_slice", False)
    if (per_slice or stat == "max_over_slices") and not names:
        problems.append(doc.problem(where, f"clause `{c['id']}` is evaluated per slice but the contract defines no "
                                    "`slices:`"))
    for name in c.get("slices", []):
        if name not in names:
            problems.append(doc.problem((*where, "slices"), f"clause `{c['id']}`: no slice family named `{name}`; "
                                        "defined: " + (", ".join(sorted(names)) or "none")))
    return StatisticalClause(
        slice_bounds=_slice_bounds(doc, where, c, has, names, problems),
        id=c["id"], metric=metric, stat=stat, max=c.get("max"), min=c.get("min"), max_drop=c.get("max_drop"),
        margin=c.get("margin"), per_slice=per_slice, slices=tuple(c["slices"]) if "slices" in c else None,
        test=test, severity=c.get("severity", "fail"), description=c.get("description"), line=doc.locate(where)[0],
    )


def _pattern_families(pattern: str, families: set[str]) -> bool:
    """Whether ``pattern`` can match a label of one of ``families`` (labels are `FAMILY=value` or, for
    crossed families, `FAMILY:k=v,...`)."""
    head = re.match(r"[^=:]*", pattern).group(0)  # type: ignore[union-attr]
    if head == pattern:  # no separator: it names no family; only a wildcard can reach into a label
        return "*" in pattern
    return any(glob_regex(head).fullmatch(f) for f in families)


def _slice_bounds(doc: LoadedDocument, where: tuple, c: dict[str, Any], has: set[str], names: set[str],
                  problems: list[Problem]) -> tuple[SliceBound, ...]:
    raw = c.get("slice_bounds")
    if not raw:
        return ()
    here = (*where, "slice_bounds")
    if not (c.get("per_slice") or c.get("stat") == "max_over_slices"):
        problems.append(doc.problem(here, f"clause `{c['id']}`: `slice_bounds` needs `per_slice: true` or "
                                    "`stat: max_over_slices` (the clause judges the whole eval set, no slice)"))
    families = set(c.get("slices") or names)
    kinds = has & set(BOUND_KEYS)
    out = []
    for pattern, entry in raw.items():
        keys = set(entry)
        if keys - kinds:
            problems.append(doc.problem((*here, pattern), f"clause `{c['id']}`: slice bound `{pattern}` sets "
                                        + ", ".join(f"`{k}`" for k in sorted(keys - kinds)) + " but the clause bounds "
                                        + (", ".join(f"`{k}`" for k in sorted(kinds)) or "nothing")
                                        + "; a per-slice bound must be of the clause's own kind"))
        for key, value in entry.items():
            if isinstance(value, (int, float)) and not math.isfinite(value):
                problems.append(doc.problem((*here, pattern, key), f"clause `{c['id']}`: slice bound `{pattern}` "
                                            f"`{key}` must be a finite number, not {value}"))
        if families and not _pattern_families(pattern, families):
            problems.append(doc.problem((*here, pattern), f"clause `{c['id']}`: slice bound pattern `{pattern}` "
                                        "matches no slice family of the clause (" + ", ".join(sorted(families))
                                        + "); labels read `FAMILY=value` (crossed: `FAMILY:k=v,...`)",
                                        severity="warning"))
        out.append(SliceBound(pattern, tuple((k, float(v)) for k, v in entry.items())))
    return tuple(out)


def parse_statistical(doc: LoadedDocument, raw: dict[str, Any], slices: tuple[SliceDef, ...],
                 problems: list[Problem]) -> StatisticalSpec:
    names = {s.name for s in slices}
    clauses = tuple(_statistical_clause(doc, i, c, names, problems) for i, c in enumerate(raw["clauses"]))
    return StatisticalSpec(clauses=clauses, alpha=raw.get("alpha", 0.05), correction=raw.get("correction", "holm"),
                           min_samples=raw.get("min_samples", 30), resamples=raw.get("resamples", 2000),
                           seed=raw.get("seed", 0), power=raw.get("power", 0.8))
