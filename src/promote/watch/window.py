"""One window of `promote watch`: the contract's live stages on this window's prompts, summed up.

The stages run exactly as in `promote check` — ``run.run_check`` walks the stage registry — with three
things injected: the kernels (opened once for the whole watch), the window's prompts as the eval set
(shadow numerics: recent requests scored on the reference and the candidate, judged by the numerics
stage's judge; the runtime stage times the same prompts against the live canary), and each
statistical section's level for this window (``alpha.py``).

The outcome (``rules.OUTCOMES``) never reads missing data as clean: no prompts, a stage that did not
run, a clause that could not be evaluated (``error``), proved nothing (``vacuous``) or was skipped make
the window ``bad``; a ``fail`` the escalation policy blocks on is ``bad`` (one it only warns about is
not); an ``inconclusive`` clause makes it ``inconclusive``; an ``invalid`` verdict (issue 23) anywhere
makes it ``invalid``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from promote.errors import PromoteError
from promote.policy import ACTION_SEVERITY
from promote.sections import by_name, section_of, stage_names
from promote.watch.alpha import alpha_for_window, contract_for_window, looks_for_window, resolved
from promote.watch.requestlog import as_evalset, from_evalset, read_requests
from promote.watch.spec import WatchSpec

INVALID = "invalid"
MISSING = ("error", "vacuous", "skipped")
MAX_LISTED = 10  # clauses named in a window's evidence
MAX_MESSAGE = 300


@dataclass
class WindowResult:
    outcome: str  # clean | bad | inconclusive | invalid
    verdict: str  # the policy's verdict of the window's report (or `error` when it could not run)
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


def _value(status: Any) -> str:
    return str(getattr(status, "value", status))


def classify(verdict: str, judged: Iterable[tuple[str, str, str, str]], wanted: Iterable[str]) -> tuple[str, str]:
    """(outcome, reason) from the report's verdict and its (stage, clause, status, action) rows; every stage in
    ``wanted`` must have judged something (missing data fails)."""
    rows = list(judged)
    if verdict == INVALID or any(status == INVALID for _, _, status, _ in rows):
        return INVALID, "the verdict is `invalid`"
    if not rows:
        return "bad", "nothing was judged this window (missing data fails)"
    for stage in wanted:
        if not any(s == stage for s, _, _, _ in rows):
            return "bad", f"stage `{stage}` judged nothing this window (missing data fails)"
    missing = [(s, c, st) for s, c, st, _ in rows if st in MISSING]
    if missing:
        s, c, st = missing[0]
        return "bad", f"{len(missing)} clause(s) without a judgement, e.g. {s}/{c}: {st} (missing data fails)"
    gate = ACTION_SEVERITY["shadow-only"]
    blocked = [(s, c) for s, c, st, a in rows if st == "fail" and ACTION_SEVERITY.get(a, 99) >= gate]
    if blocked:
        return "bad", f"{len(blocked)} clause(s) failed: " + ", ".join(f"{s}/{c}" for s, c in blocked[:MAX_LISTED])
    if any(st == "inconclusive" for _, _, st, _ in rows):
        return "inconclusive", "no clause failed, some are inconclusive"
    return "clean", "every clause held" + (" (some fail only warns)" if any(st == "fail" for *_, st, _ in rows) else "")


def _summary(report: Any, wanted: list[str]) -> dict[str, Any]:
    """What the audit log keeps of a window's report: statuses per clause, the not-clean ones explained."""
    stages: dict[str, Any] = {}
    notable = []
    for stage in report.stages:
        if _value(stage.status) == "skipped" and stage.name not in wanted:
            continue
        stages[stage.name] = {"status": _value(stage.status), "duration_s": round(stage.duration_s, 3),
                              "notes": [n[:MAX_MESSAGE] for n in stage.notes[:3]],
                              "clauses": {c.id + (f"[{c.slice}]" if c.slice else ""): _value(c.status)
                                          for c in stage.clauses}}
        for c in stage.clauses:
            if _value(c.status) not in ("pass", "skipped") and len(notable) < MAX_LISTED:
                notable.append({"stage": stage.name, "clause": c.id, "status": _value(c.status),
                                "observed": c.observed, "message": (c.message or "")[:MAX_MESSAGE]})
    return {"verdict": report.verdict, "stages": stages, "notable": notable}


def _prompts(ctx_contract: Any, spec: WatchSpec, index: int, now: float, base: Any) -> tuple[list, dict[str, Any]]:
    if spec.requests is not None:
        tail = read_requests(spec.requests, now, index)
        return tail.samples, {"source": spec.requests.display_path, **tail.evidence()}
    samples = from_evalset(base(), spec.sample, spec.seed, index)
    return samples, {"source": ctx_contract.data.display_path if ctx_contract.data else None, "usable": len(samples)}


def evaluate_window(contract: Any, spec: WatchSpec, index: int, *, kernels: Mapping[str, Any] | None,
                    base_evalset: Any, now: float | None = None) -> WindowResult:
    """Window ``index`` (1-based): its prompts, the stages through ``run_check``, the outcome and evidence."""
    from promote.run import CheckOptions, run_check

    now = time.time() if now is None else now
    present = [s for s in stage_names() if section_of(s) in contract.sections]
    wanted = [s for s in present if not spec.stages or s in spec.stages]
    alpha = {"looks": looks_for_window(index, spec.windows),
             "alpha_share": alpha_for_window(1.0, index, spec.windows)}  # α_i / α
    evidence: dict[str, Any] = {"stages_wanted": wanted, **alpha}
    needs_prompts = any(by_name(s).needs_evalset for s in wanted)
    samples: list = []
    if needs_prompts:
        try:
            samples, evidence["prompts"] = _prompts(contract, spec, index, now, base_evalset)
        except PromoteError as exc:
            evidence["prompts"] = {"problem": exc.format_message()[:MAX_MESSAGE]}
        if not samples:
            return WindowResult("bad", "error", "no usable prompts this window (missing data fails)", evidence)
    path = spec.requests.path if spec.requests else (contract.data.path if contract.data else contract.path)
    evalset = as_evalset(samples, evidence.get("prompts", {}).get("source") or str(path), path) if samples else None
    options = CheckOptions(stages=tuple(wanted), all_stages=True, command=f"promote watch (window {index})")
    t0 = time.perf_counter()
    judged = contract_for_window(contract, index, spec.windows)
    evidence["alpha_resolved"] = resolved(judged)
    try:
        report = run_check(judged, options, kernels=kernels, evalset=evalset)
    except PromoteError as exc:
        evidence["error"] = exc.format_message()[:MAX_MESSAGE]
        return WindowResult("bad", "error", f"the window could not be evaluated: {evidence['error']}", evidence)
    evidence["seconds"] = round(time.perf_counter() - t0, 3)
    evidence.update(_summary(report, wanted))
    # Stages the contract has but this watch does not want are reported `skipped` by run_check: not data.
    rows = [(a.stage, a.clause, _value(a.status), _value(a.action)) for a in report.decision.actions
            if a.stage in wanted]
    outcome, reason = classify(report.verdict, rows, wanted)
    return WindowResult(outcome, report.verdict, reason, evidence)
