"""Typed `runtime:` section (stage 3; `observability:` lives in ``observability_spec.py``).

Typed even before their stages exist, so the contract layer hands every stage the same kind of
object (a spec with ``clauses`` that carry ``id`` and ``line``) and the stage that lands later only
adds its runner. The raw clause is kept (``raw``) for keys this version does not interpret yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from promote.contract.load import LoadedDocument
from promote.contract.observability_spec import (  # noqa: F401 - re-exported: stage specs in one place
    ObservabilityClause,
    ObservabilitySource,
    ObservabilitySpec,
    parse_observability,
)


@dataclass(frozen=True)
class RuntimeClause:
    """A bound on a runtime measurement: latency, throughput, memory, errors, determinism."""

    id: str
    metric: str
    stat: str | None
    max: float | None
    min: float | None
    max_ratio: float | None
    require: bool | None
    description: str | None
    line: int | None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RuntimeSpec:
    clauses: tuple[RuntimeClause, ...]
    warmup: int | None = None
    repeats: int | None = None
    concurrency: tuple[int, ...] = (1,)
    baseline: Any = None  # a kernel spec (contract/kernel_specs.py); None: the reference kernel
    alpha: float = 0.05
    looks: int = 1
    resamples: int = 2000
    seed: int = 0
    requests: int | None = None  # samples of the eval set timed (default: all)


def parse_runtime(doc: LoadedDocument, raw: dict[str, Any], problems: list | None = None) -> RuntimeSpec:
    from promote.contract.kernel_specs import kernel_spec

    baseline = kernel_spec(doc, "baseline", raw["baseline"], problems if problems is not None else []) \
        if "baseline" in raw else None
    clauses = tuple(
        RuntimeClause(id=c["id"], metric=c["metric"], stat=c.get("stat"), max=c.get("max"), min=c.get("min"),
                      max_ratio=c.get("max_ratio"), require=c.get("require"), description=c.get("description"),
                      line=doc.locate(("runtime", "clauses", i))[0], raw=dict(c))
        for i, c in enumerate(raw["clauses"]))
    return RuntimeSpec(clauses=clauses, warmup=raw.get("warmup"), repeats=raw.get("repeats"),
                       concurrency=tuple(raw.get("concurrency", (1,))), baseline=baseline,
                       alpha=raw.get("alpha", 0.05), looks=raw.get("looks", 1), resamples=raw.get("resamples", 2000),
                       seed=raw.get("seed", 0), requests=raw.get("requests"))

