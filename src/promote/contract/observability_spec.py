"""Typed `observability:` section (stage 4) and the checks the schema cannot express.

Why checks here and not at run time: a deploy-time gate that meets a contract mistake (a `query:`
on a snapshot file, a `max_age` on a PromQL expression, a clause that bounds nothing) must say so
at `promote validate`, located at the key, before the release window — not as a run-time crash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from promote.bounded import not_regular
from promote.contract.kernel_specs import resolve_path
from promote.contract.load import LoadedDocument, Problem
from promote.contract.promql import Selector, parse_duration, parse_selector, parse_time

#: Statistics a `metric:` selector clause may ask for (the same meaning on both sources).
METRIC_STATS = ("value", "sum", "min", "max", "mean", "count", "p50", "p90", "p95", "p99", "p99.9")
DEFAULT_LOOKBACK_S = 3600.0
DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Compare:
    """Canary vs stable by a label: `candidate` and `baseline` are that label's two values."""

    label: str
    candidate: str
    baseline: str


@dataclass(frozen=True)
class BurnWindow:
    long_s: float
    short_s: float
    factor: float | None  # absolute burn-rate ceiling of this pair (None for relative clauses)


@dataclass(frozen=True)
class BurnRate:
    objective: float  # e.g. 0.999: the error budget is 1 − objective
    errors: str  # PromQL with `{{window}}`
    total: str
    windows: tuple[BurnWindow, ...]


@dataclass(frozen=True)
class ObservabilitySource:
    kind: str  # prometheus | file
    url: str | None = None
    paths: tuple[str, ...] = ()  # resolved snapshot files (file)
    paths_display: tuple[str, ...] = ()
    time: str | None = None  # evaluation time (RFC3339 or unix seconds); default: now
    timeout_s: float = DEFAULT_TIMEOUT_S
    tls_verify: bool = True
    ca_file: str | None = None
    auth: dict[str, str] = field(default_factory=dict)  # {kind, username_env, password_env | token_env}
    lookback_s: float = DEFAULT_LOOKBACK_S


@dataclass(frozen=True)
class ObservabilityClause:
    """One sign-off check: a PromQL query, a metric selector or a burn-rate SLO, with its bounds."""

    id: str
    query: str | None
    metric: str | None
    max: float | None
    min: float | None
    require: str | None
    max_age: str | None
    on_missing: str | None
    description: str | None
    line: int | None
    raw: dict[str, Any] = field(default_factory=dict)
    selector: Selector | None = None
    stat: str = "value"
    by: tuple[str, ...] = ()
    max_age_s: float | None = None
    window_s: float | None = None
    over_time: str = "max"
    step_s: float | None = None
    baseline_query: str | None = None
    compare: Compare | None = None
    max_ratio: float | None = None
    min_ratio: float | None = None
    burn_rate: BurnRate | None = None
    severity: str = "fail"

    @property
    def missing(self) -> str:
        return self.on_missing or "fail"

    @property
    def relative(self) -> bool:
        return self.compare is not None or self.baseline_query is not None


@dataclass(frozen=True)
class ObservabilitySpec:
    clauses: tuple[ObservabilityClause, ...]
    source: ObservabilitySource | None = None


def _seconds(value: str | None) -> float | None:
    return parse_duration(value) if value is not None else None


def _clause(doc: LoadedDocument, c: dict[str, Any], index: int) -> ObservabilityClause:
    compare = Compare(**c["compare"]) if "compare" in c else None
    burn = None
    if "burn_rate" in c:
        b = c["burn_rate"]
        burn = BurnRate(objective=b["objective"], errors=b["errors"], total=b["total"], windows=tuple(
            BurnWindow(parse_duration(w["long"]), parse_duration(w["short"]), w.get("factor"))
            for w in b.get("windows", [{"long": "1h", "short": "5m", "factor": 14.4},
                                       {"long": "6h", "short": "30m", "factor": 6}])))
    return ObservabilityClause(
        id=c["id"], query=c.get("query"), metric=c.get("metric"), max=c.get("max"), min=c.get("min"),
        require=c.get("require"), max_age=c.get("max_age"), on_missing=c.get("on_missing"),
        description=c.get("description"), line=doc.locate(("observability", "clauses", index))[0], raw=dict(c),
        selector=parse_selector(c["metric"]) if "metric" in c else None, stat=c.get("stat", "value"),
        by=tuple(c.get("by", ())), max_age_s=_seconds(c.get("max_age")), window_s=_seconds(c.get("window")),
        over_time=c.get("over_time", "max"), step_s=_seconds(c.get("step")),
        baseline_query=c.get("baseline_query"), compare=compare, max_ratio=c.get("max_ratio"),
        min_ratio=c.get("min_ratio"), burn_rate=burn, severity=c.get("severity", "fail"))


def parse_observability(doc: LoadedDocument, raw: dict[str, Any]) -> ObservabilitySpec:
    """The typed section of a schema-valid document that ``observability_problems`` found clean."""
    clauses = tuple(_clause(doc, c, i) for i, c in enumerate(raw["clauses"]))
    src = raw.get("source")
    source = None
    if src:
        given = src.get("path", [])
        given = [given] if isinstance(given, str) else list(given)
        source = ObservabilitySource(
            kind=src["kind"], url=src.get("url"), paths=tuple(str(resolve_path(doc, p)) for p in given),
            paths_display=tuple(given), time=None if src.get("time") is None else str(src["time"]),
            timeout_s=_seconds(src.get("timeout")) or DEFAULT_TIMEOUT_S, tls_verify=src.get("tls_verify", True),
            ca_file=str(resolve_path(doc, src["ca_file"])) if "ca_file" in src else None,
            auth=dict(src.get("auth", {})), lookback_s=_seconds(src.get("lookback")) or DEFAULT_LOOKBACK_S)
    return ObservabilitySpec(clauses=clauses, source=source)


_BOUNDS = ("max", "min", "max_ratio", "min_ratio", "require", "max_age", "burn_rate")
_PROMETHEUS_ONLY = ("query", "window", "baseline_query", "burn_rate")


def _not_regular_snapshots(doc: LoadedDocument, given: Any) -> list[str]:
    """Snapshot paths that exist but are no regular file: a FIFO would block the run, a device flood it."""
    out = []
    for path in (p for p in (given if isinstance(given, list) else [given]) if isinstance(p, str)):
        other = not_regular(resolve_path(doc, path))
        if other:
            out.append(f"snapshot `{path}` is {other}, not a regular file; give a snapshot file")
    return out


def observability_problems(doc: LoadedDocument) -> list[Problem]:
    """Every located problem of the `observability:` section that the schema cannot see."""
    section = doc.data.get("observability")
    if not section:
        return []
    problems: list[Problem] = []

    def bad(path: tuple, message: str) -> None:
        problems.append(doc.problem(("observability", *path), message, key=True))

    src = section.get("source") or {}
    kind = src.get("kind", "prometheus")
    _source_problems(doc, src, kind, bad)
    for i, c in enumerate(section.get("clauses", [])):
        _clause_problems(c, ("clauses", i), kind, bad)
    return problems


def _source_problems(doc: LoadedDocument, src: dict, kind: str, bad: Callable[[tuple, str], None]) -> None:
    """`observability.source`: what its kind needs, durations and times that parse, credentials by name."""
    if not src:
        bad(("source",), "add `source:` — `{kind: prometheus, url: http://...}` or `{kind: file, path: "
                         "metrics.prom}`")
    elif kind == "prometheus" and "url" not in src:
        bad(("source",), "`kind: prometheus` needs `url:` (the Prometheus base URL, e.g. http://127.0.0.1:9090)")
    elif kind == "prometheus" and not (urlsplit(str(src["url"])).scheme.lower() in ("http", "https")
                                       and urlsplit(str(src["url"])).hostname):
        bad(("source", "url"), f"`url: {str(src['url'])[:80]}` is not an http:// or https:// URL with a host "
                               "(the Prometheus base URL, e.g. http://127.0.0.1:9090)")
    elif kind == "file":
        if "path" not in src:
            bad(("source",), "`kind: file` needs `path:` (an exposition-format snapshot file, or a list of them)")
        for key in ("url", "auth", "tls_verify", "ca_file", "timeout"):
            if key in src:
                bad(("source", key), f"`{key}` applies to `kind: prometheus` only")
        for message in _not_regular_snapshots(doc, src.get("path")):
            bad(("source", "path"), message)
    for key in ("timeout", "lookback"):
        if key in src:
            try:
                parse_duration(src[key])
            except ValueError as exc:
                bad(("source", key), str(exc))
    auth = src.get("auth") or {}
    needed = {"basic": ("username_env", "password_env"), "bearer": ("token_env",)}.get(auth.get("kind"), ())
    for key in needed:
        if key not in auth:
            bad(("source", "auth"), f"`auth: {{kind: {auth['kind']}}}` needs `{key}:` (the name of the environment "
                                    "variable holding it; the value itself never goes in the contract)")
    for key in set(auth) - {"kind", *needed}:
        bad(("source", "auth", key), f"`{key}` does not apply to `auth: {{kind: {auth.get('kind')}}}`")
    if "time" in src:
        try:
            parse_time(str(src["time"]))
        except ValueError as exc:
            bad(("source", "time"), str(exc))


def _clause_problems(c: dict, where: tuple, kind: str, bad: Callable[[tuple, str], None]) -> None:
    """One clause: exactly one head, a bound, keys that fit its source and its head, parsable durations."""
    heads = [k for k in ("query", "metric", "burn_rate") if k in c]
    if len(heads) != 1:
        bad(where, f"clause `{c['id']}` needs exactly one of `query:` (PromQL), `metric:` (a selector that "
                   f"works on both sources) or `burn_rate:`" + (f"; it has {', '.join(heads)}" if heads else ""))
    if not any(k in c for k in _BOUNDS):
        bad(where, f"clause `{c['id']}` bounds nothing: add `max`/`min`, `require: present`, `max_age`, "
                   "`max_ratio`/`min_ratio` with `compare`/`baseline_query`, or `burn_rate`")
    for key in _PROMETHEUS_ONLY if kind == "file" else ():
        if key in c:
            bad((*where, key), f"`{key}` needs a Prometheus source (`source.kind: prometheus`); a snapshot "
                               "file has one value per series and no history — use `metric:` with `stat:`")
    if "metric" in c:
        try:
            parse_selector(c["metric"])
        except ValueError as exc:
            bad((*where, "metric"), str(exc))
    for key in ("stat", "by"):
        if key in c and "metric" not in c:
            bad((*where, key), f"`{key}` applies to `metric:` clauses only")
    if "max_age" in c and "metric" not in c:
        bad((*where, "max_age"), "`max_age` needs `metric:` (a selector): the age of a PromQL expression's "
                                 "result is its evaluation time, not the age of the newest sample")
    for key in ("over_time", "step"):
        if key in c and "window" not in c:
            bad((*where, key), f"`{key}` applies with `window:` (range evaluation) only")
    for key in ("window", "max_age", "step"):
        if key in c:
            try:
                parse_duration(c[key])
            except ValueError as exc:
                bad((*where, key), str(exc))
    relative = "compare" in c or "baseline_query" in c
    if "burn_rate" in c and "baseline_query" in c:
        bad((*where, "baseline_query"), "a relative `burn_rate` clause compares by a label: use `compare:` and "
                                        "keep that label in `errors`/`total` (`sum by (version)`)")
    if "compare" in c and "baseline_query" in c:
        bad((*where, "baseline_query"), "give `compare:` (one query split by a label) or `baseline_query:`, "
                                        "not both")
    for key in ("max_ratio", "min_ratio"):
        if key in c and not relative:
            bad((*where, key), f"`{key}` compares with a baseline: add `compare: {{label: version, candidate: "
                               "canary, baseline: stable}` or `baseline_query:`")
    if relative and not any(k in c for k in ("max_ratio", "min_ratio")):
        bad(where, f"clause `{c['id']}` compares with a baseline but sets no `max_ratio`/`min_ratio`")
    if relative and any(k in c for k in ("max", "min")):
        bad(where, "a relative clause is bounded by `max_ratio`/`min_ratio` (candidate / baseline); "
                   "write an absolute bound as a clause of its own")
    _burn_problems(c, where, relative, bad)


def _burn_problems(c: dict[str, Any], where: tuple, relative: bool, bad: Any) -> None:
    burn = c.get("burn_rate")
    if burn is None:
        return
    for key in ("errors", "total"):
        if "{{window}}" not in burn[key]:
            bad((*where, "burn_rate", key), f"`burn_rate.{key}` must contain `{{{{window}}}}` where the range "
                                            "goes, e.g. `sum(rate(http_requests_total{code=~\"5..\"}[{{window}}]))`")
    for j, w in enumerate(burn.get("windows", [])):
        for key in ("long", "short"):
            try:
                parse_duration(w[key])
            except ValueError as exc:
                bad((*where, "burn_rate", "windows", j, key), str(exc))
        if "factor" not in w and not relative:
            bad((*where, "burn_rate", "windows", j), "an absolute burn-rate window needs `factor:` (e.g. 14.4 for "
                                                     "1h/5m, 6 for 6h/30m)")
        elif "factor" in w and relative:
            bad((*where, "burn_rate", "windows", j, "factor"), "a relative burn-rate clause is bounded by "
                                                               "`max_ratio`; drop `factor`")
    if relative and "windows" not in burn:
        bad((*where, "burn_rate"), "a relative burn-rate clause needs `windows:` (long/short pairs without "
                                   "`factor`)")
    if any(k in c for k in ("max", "min")):
        bad(where, "a `burn_rate` clause is bounded by each window's `factor` (or `max_ratio`), not `max`/`min`")
    if "window" in c:
        bad((*where, "window"), "a `burn_rate` clause has its own windows (`burn_rate.windows`)")
