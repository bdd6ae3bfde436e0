"""The sources and verdict helpers of stage 4 (``stages/observability.py`` runs the clauses).

``Source`` gives clauses one view of a live Prometheus or of snapshot files: instant values,
values over a window, each series' newest sample. A PromQL syntax error or a range vector where an
instant vector is needed is the contract's mistake (``ContractQueryError``, collected, exit 2);
the helpers below turn observations into results, and no data into the clause's ``on_missing``.
"""

from __future__ import annotations

import math
import time
from typing import Any

from promote.contract.observability_spec import ObservabilityClause, ObservabilitySource
from promote.contract.promql import format_duration, parse_time
from promote.judgement import judge
from promote.observability.exposition import read_snapshots
from promote.observability.prometheus import (
    PrometheusClient,
    PrometheusQueryError,
    PrometheusUnavailable,
    QueryResult,
)
from promote.observability.selectors import file_values, presence_suffix, promql_for
from promote.observability.series import Series
from promote.results import Bound, ClauseResult, compared, format_value

STAGE = "observability"


class ContractQueryError(Exception):
    """A query the contract must change (syntax error, wrong result type): collected, then exit 2."""


class Source:
    """The clause-facing view of either source: instant values, windowed values, newest samples."""

    def __init__(self, spec: ObservabilitySource) -> None:
        self.spec = spec
        self.at = parse_time(spec.time) if spec.time is not None else time.time()
        self.client: PrometheusClient | None = None
        self.series: list[Series] = []
        self.warnings: list[str] = []
        if spec.kind == "file":
            self.series = read_snapshots(spec.paths, spec.paths_display)
        else:
            verify: bool | str = spec.ca_file or spec.tls_verify
            self.client = PrometheusClient(spec.url or "", timeout_s=spec.timeout_s, verify=verify, auth=spec.auth)

    @property
    def where(self) -> str:
        return f"Prometheus at {self.spec.url}" if self.client else "snapshot " + ", ".join(self.spec.paths_display)

    def _ask(self, expr: str, *, start: float | None = None, step_s: float | None = None) -> QueryResult:
        assert self.client is not None
        try:
            if start is None:
                result = self.client.query(expr, self.at)
            else:
                result = self.client.query_range(expr, start, self.at, step_s or 1.0)
        except PrometheusQueryError as exc:
            if exc.contract_error:
                raise ContractQueryError(f"Prometheus rejected `{expr}`: {exc.error}") from None
            raise
        self.warnings.extend(f"`{expr}`: {w}" for w in result.warnings)
        return result

    def instant(self, expr: str) -> list[Series]:
        """An instant vector or scalar; a range vector is the contract's mistake (Argo's `result[0]`)."""
        result = self._ask(expr)
        if result.result_type == "matrix":
            raise ContractQueryError(f"`{expr}` returned a range vector (matrix), but a clause judges an instant "
                                     "vector: drop the `[range]` selector, wrap it in a function such as "
                                     "`max_over_time(...)`, or use `window:` for a range evaluation")
        if result.result_type == "string":
            raise ContractQueryError(f"`{expr}` returned a string, not a number")
        return result.series

    def present(self, expr: str) -> list[Series]:
        """The series a presence query returns. A scalar is always "present" whatever is scraped, so it
        proves nothing: the contract's mistake (``absent()``-style checks need an instant vector)."""
        result = self._ask(expr)
        if result.result_type != "vector":
            raise ContractQueryError(f"`{expr}` returned a {result.result_type}, but `require: present` needs an "
                                     "instant vector (a selector such as `up{job=\"x\"}`): a scalar is never "
                                     "absent, so it would prove nothing")
        return result.series

    def windowed(self, expr: str, window_s: float, step_s: float | None, over_time: str) -> list[Series]:
        """``over_time`` of each series of a range query over ``window_s`` ending at the evaluation time."""
        step = step_s or max(1.0, window_s / 60)
        out = []
        for s in self._ask(expr, start=self.at - window_s, step_s=step).series:
            values = [v for _, v in s.samples if not math.isnan(v)]
            if not values:
                continue
            value = {"max": max, "min": min, "last": lambda v: v[-1],
                     "mean": lambda v: math.fsum(v) / len(v)}[over_time](values)
            out.append(Series(s.labels, [(s.samples[-1][0], value)]))
        return out

    def metric(self, clause: ObservabilityClause, by: tuple[str, ...]) -> tuple[list[Series], str]:
        assert clause.selector is not None
        if self.client is None:
            return file_values(self.series, clause.selector, clause.stat, by, self.at), clause.metric or ""
        expr = promql_for(clause.selector, clause.stat, by)
        return self.instant(expr), expr

    def newest(self, clause: ObservabilityClause) -> tuple[list[Series], str]:
        """Each matching series with its newest sample (within ``source.lookback`` on Prometheus)."""
        assert clause.selector is not None
        suffix = presence_suffix(clause.stat)
        if self.client is None:
            return [s for s in self.series if clause.selector.matches(s.name, s.labels, suffix)], clause.metric or ""
        expr = f"{clause.selector.promql(suffix)}[{format_duration(self.spec.lookback_s)}]"
        result = self._ask(expr)
        if result.result_type != "matrix":  # an instant answer is dated "now": it would look present and fresh
            raise PrometheusUnavailable(f"Prometheus at {self.spec.url} answered the range query `{expr}` with a "
                                        f"{result.result_type}, not a range vector (matrix): not a Prometheus answer "
                                        "promote can date; is `source.url` a Prometheus server?")
        return [s for s in result.series if s.samples], expr


def _labels_slice(series: Series, drop: tuple[str, ...] = ()) -> str | None:
    pairs = [f"{k}={v}" for k, v in series.key(drop)]
    return ",".join(pairs) or None


def _result(clause: ObservabilityClause, status: str, message: str, **kw: Any) -> ClauseResult:
    return ClauseResult(id=clause.id, stage=STAGE, status=status, message=message, line=clause.line,
                        metric=clause.metric or clause.query or (clause.burn_rate and "burn_rate"), **kw)


def missing(clause: ObservabilityClause, what: str, evidence: dict[str, Any], stat: str | None = None) -> ClauseResult:
    """No data: ``on_missing`` decides, and the message says so — never a silent pass."""
    status = {"fail": clause.severity, "inconclusive": "inconclusive", "skip": "skipped"}[clause.missing]
    return _result(clause, status, f"no data: {what} (on_missing: {clause.missing})", stat=stat,
                   evidence=evidence)


def bounded(clause: ObservabilityClause, bounds: list[Bound], value: float, what: str, *, slice_: str | None,
            stat: str | None, evidence: dict[str, Any]) -> ClauseResult:
    """Judge one observed value; the message shows it against its bound with enough digits."""
    verdict = judge(bounds, value)
    status = clause.severity if verdict.status == "fail" else verdict.status
    if status == "pass" and not math.isfinite(value):
        # -Inf is below every max and +Inf above every min: an infinite observation passes nothing
        return _result(clause, "inconclusive", f"{what} = {format_value(value)}: an infinite value is not a "
                       "measurement a bound can pass (a division by zero or an overflow in the query?)",
                       observed=value, bounds=bounds, slice=slice_, stat=stat, evidence=evidence)
    shown, limit = compared(value, bounds)
    word = "breaches" if status in ("fail", "warn") else "within"
    result = _result(clause, status, f"{what} = {shown} {word} {limit}", observed=value, bounds=bounds,
                     slice=slice_, stat=stat, evidence=evidence)
    return result.judged(verdict)


def clause_bounds(clause: ObservabilityClause, relative: bool) -> list[Bound]:
    pairs = (("max", clause.max_ratio), ("min", clause.min_ratio)) if relative else \
        (("max", clause.max), ("min", clause.min))
    return [Bound(op, float(v)) for op, v in pairs if v is not None]


def ratio(candidate: float, baseline: float) -> float:
    """candidate / baseline, with 0/0 = 1 (both clean) and x/0 = +inf (only the canary errs)."""
    if baseline == 0:
        return 1.0 if candidate == 0 else math.inf
    return candidate / baseline


def pairs(clause: ObservabilityClause, candidates: list[Series],
          baselines: list[Series]) -> tuple[list[tuple[Series, Series]], list[Series]]:
    """Candidate series with their baseline (same other labels); candidates left without one."""
    drop = (clause.compare.label,) if clause.compare else ()
    by_key = {b.key(drop): b for b in baselines}
    single = baselines[0] if len(baselines) == 1 and not baselines[0].key(drop) else None
    matched, alone = [], []
    for c in candidates:
        base = by_key.get(c.key(drop)) or single
        (matched.append((c, base)) if base is not None else alone.append(c))
    return matched, alone


def split(clause: ObservabilityClause, series: list[Series]) -> tuple[list[Series], list[Series]]:
    assert clause.compare is not None
    label = clause.compare.label
    return ([s for s in series if s.labels.get(label) == clause.compare.candidate],
            [s for s in series if s.labels.get(label) == clause.compare.baseline])
