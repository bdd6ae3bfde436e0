"""Stage 4, observability sign-off (O): are the signals that would show drift in production there,
fresh and healthy — and is the canary no worse than the stable version?

Reads a Prometheus HTTP API or snapshot files (``observability/``), never the eval set or a kernel.
Each clause becomes one result per series (its labels as the result's ``slice``), so a report says
*which* canary pod breached. Missing data never passes: no series, a NaN (0/0: no traffic), or a
candidate without its baseline goes through the clause's ``on_missing`` (default ``fail``).

Failures map to exit codes as the CLI documents: a PromQL syntax error or a range vector where an
instant vector is needed is the contract's fault (all of them collected, then exit 2, Prometheus'
message quoted at the clause's line); an unreachable or refusing server makes every clause
``error`` (exit 3) with the URL named — tried once, not once per clause.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from promote.errors import EvaluationError, UsageError
from promote.observability.prometheus import PrometheusQueryError
from promote.results import ClauseResult, StageResult, worst_status
from promote.stages.context import StageContext
from promote.stages.observability.clauses import evaluate
from promote.stages.observability.source import STAGE, ContractQueryError, Source, _result


def run_observability(ctx: StageContext) -> StageResult:
    """The stage runner (``stages/registry.py``)."""
    started = time.perf_counter()
    spec = ctx.contract.observability
    try:
        source = Source(spec.source)
    except EvaluationError as exc:  # e.g. the credentials' environment variables are not set
        return ctx.blanket(STAGE, "error", f"could not evaluate: {exc.format_message()}")
    results: list[ClauseResult] = []
    contract_errors: list[str] = []
    down: str | None = None
    for clause in spec.clauses:
        if down is not None:
            results.append(_result(clause, "error", down))
            continue
        try:
            results.extend(evaluate(clause, source))
        except ContractQueryError as exc:
            contract_errors.append(f"{ctx.contract.source.display_path}:{clause.line}: clause `{clause.id}`: {exc}")
        except PrometheusQueryError as exc:  # valid query, evaluation failed (timeout, execution error)
            results.append(_result(clause, "error", f"{source.where}: {exc}"))
        except EvaluationError as exc:  # unreachable, refused, unreadable: the same for every clause
            down = f"could not evaluate: {exc.format_message()}"
            results.append(_result(clause, "error", down))
    if contract_errors:
        raise UsageError("observability clauses Prometheus cannot evaluate as written:\n  " +
                         "\n  ".join(contract_errors))
    moment = datetime.fromtimestamp(source.at, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    notes = [f"evaluated at {moment} against {source.where}"] + [f"Prometheus warning: {w}" for w in source.warnings]
    return StageResult(name=STAGE, status=worst_status([r.status for r in results]), clauses=results,
                       duration_s=time.perf_counter() - started, notes=notes,
                       details={"source": spec.source.kind, "time": moment, "where": source.where})
