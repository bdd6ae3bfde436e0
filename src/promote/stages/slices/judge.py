"""Stage 2, statistical slice tests (S): per-slice divergences and paired task metrics, with
intervals, multiplicity control and three-way verdicts (docs/statistics.md).

The kernels are not run here: ``prepare`` returns a ``SliceCollector`` that the numerics pass
feeds (``engine.passes.kernel_pass``), and ``run_slices`` judges the clauses afterwards.

No silent pass: a slice with fewer than ``min_samples`` scored sequences, a slice whose positions
are all masked, a declared bucket with no samples, and an interval straddling its bound are all
``inconclusive`` — each with the minimum detectable effect or the sample size that would decide.
A slice is only declared failing when that claim survives the multiplicity correction; passing
needs every slice to clear its bound on its own (an intersection–union test, which needs none).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from promote.contract.model import Contract
from promote.contract.statistical import StatisticalClause, StatisticalSpec
from promote.data import EvalSet
from promote.errors import UsageError
from promote.metrics import stats
from promote.results import Bound, ClauseResult, StageResult, bounds_text, finite_or_none, format_value, worst_status
from promote.stages.slices.data import SliceCollector, check_task_fields, clause_needs, task_items
from promote.stages.slices.evaluate import Item, at_level, bounds_of, divergence_item, slice_summary, task_item
from promote.stages.slices.keys import Family, derive, is_position_key

STAGE = "slices"
_SAMPLE_LEVEL_TASKS = ("exact_match", "reward", "score")


def prepare(contract: Contract, evalset: EvalSet) -> SliceCollector:
    """Check the clauses against the data (exit 2 before any kernel runs) and build the collector."""
    spec = contract.statistical
    assert spec is not None
    where = contract.source.display_path
    check_task_fields(spec, evalset, where)
    by_name = {d.name: d for d in contract.slices}
    for clause in spec.clauses:
        if clause.metric in _SAMPLE_LEVEL_TASKS and clause.slices:
            for name in clause.slices:
                if any(is_position_key(k) for k in by_name[name].keys):
                    raise UsageError(f"{where}:{clause.line}: clause `{clause.id}`: `{clause.metric}` is one value "
                                     f"per sample and cannot be split by the position-level slice `{name}`")
    metrics, keys, correct = clause_needs(spec, contract.slices)
    return SliceCollector(evalset, metrics, keys, correct)


def _families_for(clause: StatisticalClause, families: list[Family], notes: list[str]) -> list[Family]:
    chosen = [f for f in families if clause.slices is None or f.name in clause.slices]
    if clause.metric in _SAMPLE_LEVEL_TASKS:
        skipped = [f.name for f in chosen if f.position_level]
        if skipped:
            notes.append(f"clause `{clause.id}`: skipped position-level slice families {', '.join(skipped)} "
                         f"(`{clause.metric}` is one value per sample)")
        chosen = [f for f in chosen if not f.position_level]
    return chosen


def _evaluate(spec: StatisticalSpec, clause: StatisticalClause, item: Item, ctx: dict[str, Any],
              mask: np.ndarray, members: np.ndarray) -> Item:
    if item.samples == 0:
        item.reason = "no samples fall in this slice"
        return item
    if item.scored == 0:
        item.reason = f"all positions of its {item.samples} samples are masked (no scored position)"
        return item
    if clause.is_task:
        task_item(spec, clause, item, ctx["table"], mask, members, ctx["n"], ctx["tasks"].get(clause.metric))
    else:
        divergence_item(spec, clause, item, ctx["table"], mask, ctx["n"], ctx["cache"])
    if item.scored < spec.min_samples and not item.reason.startswith("non-finite"):
        beyond = " (its interval lies beyond the bound)" if item.outcome == "fail" else ""
        item.outcome, item.p_fail = "inconclusive", None
        item.reason = f"only {item.scored} scored sequences < min_samples {spec.min_samples}{beyond}"
    return item


def _items(spec: StatisticalSpec, clause: StatisticalClause, families: list[Family], ctx: dict[str, Any]) -> list[Item]:
    table, n = ctx["table"], ctx["n"]
    scored_per_sample = np.bincount(table.seq, minlength=n)
    if not (clause.per_slice or clause.stat == "max_over_slices"):
        members = np.arange(n)
        mask = np.ones(table.seq.size, dtype=bool)
        item = Item(clause, None, None, n, int((scored_per_sample > 0).sum()), int(mask.sum()))
        return [_evaluate(spec, clause, item, ctx, mask, members)]
    out = []
    for family in _families_for(clause, families, ctx["notes"]):
        for s in family.slices:
            scored = int(np.unique(table.seq[s.position_mask]).size)
            if clause.metric in _SAMPLE_LEVEL_TASKS:
                scored = s.samples if s.positions else 0
            own, pattern = clause.for_slice(s.label)  # the slice's own bound (`slice_bounds`), if any
            item = Item(own, s.label, family.name, s.samples, scored, s.positions)
            if pattern is not None:
                item.extra["slice_bound"] = pattern
            out.append(_evaluate(spec, own, item, ctx, s.position_mask, s.members))
    return out


def _adjusted_interval(spec: StatisticalSpec, item: Item) -> stats.Interval | None:
    """The item's interval at the level its "fail" claim is tested at after the correction.

    For Holm the item of raw p and adjusted p̃ is rejected iff p ≤ α·p/p̃, so its effective one-sided
    level is α·p/p̃ (between α/K and α); BH likewise. The interval at that level, computed from the
    same tail that gave p (``tail_endpoint``, or the Bonett–Price normal form), lies beyond the bound
    exactly when p̃ ≤ α: the reported interval and the adjusted p-value cannot disagree.
    """
    iv, p, adj = item.interval, item.p_fail, item.p_fail_adjusted
    if iv is None or p is None or adj is None:
        return None
    level = spec.alpha if adj <= 0 or spec.correction == "none" else spec.alpha * min(1.0, p / adj)
    if iv.method == "bonett-price":
        flips = item.extra["flips"]
        return stats.flip_change_interval(flips["reference_right_candidate_wrong"],
                                          flips["reference_wrong_candidate_right"], item.extra["items"],
                                          confidence=1 - 2 * level)
    return at_level(iv, level)


def _correct(spec: StatisticalSpec, items: list[Item]) -> int:
    tested = [i for i in items if i.p_fail is not None]
    for i, p in zip(tested, stats.adjust([i.p_fail for i in tested], spec.correction), strict=True):
        i.p_fail_adjusted = float(p)
        i.adjusted = _adjusted_interval(spec, i)
    with_diff = [i for i in items if i.p_difference is not None]
    for i, p in zip(with_diff, stats.adjust([i.p_difference for i in with_diff], spec.correction), strict=True):
        i.p_difference_adjusted = float(p)
    return len(tested)


def _shown(clause: StatisticalClause) -> str:
    if clause.is_task:
        return f"Δ {clause.metric} (candidate − reference)"
    stat = "mean" if clause.stat == "max_over_slices" else clause.stat
    return f"{stat}({clause.metric})"


def _limit_text(clause: StatisticalClause) -> str:
    upper, lower = bounds_of(clause)
    text = bounds_text([Bound(op, v) for op, v in (("min", lower), ("max", upper)) if v is not None], sep=" and ")
    if clause.is_task and upper is None and lower is not None:
        return f"{text} (max_drop {format_value(-lower)})"
    return text


def _finalise(spec: StatisticalSpec, item: Item, family_size: int) -> tuple[str, str]:
    """Status and message of one item after multiplicity correction."""
    clause, iv = item.clause, item.interval
    where = f"[{item.label}] " if item.label else ""
    counts = f"{item.scored} sequences, {item.positions} positions"
    if iv is None:
        return "inconclusive", f"{where}{item.reason}: nothing to judge, never a pass"
    level = f"{round(100 * iv.level)}% CI" if iv.method != "observed" else "observed"
    ci = f"{level} [{format_value(iv.lo)}, {format_value(iv.hi)}]" if iv.method != "observed" else "observed"
    head = f"{where}{_shown(clause)} = {format_value(iv.estimate)}, {ci}"
    if clause.is_task:
        flips = item.extra.get("flips")
        head += (f"; {clause.metric} {format_value(item.extra['reference'])} → "
                 f"{format_value(item.extra['candidate'])}")
        if flips:
            head += (f"; flips {flips['reference_right_candidate_wrong']} right→wrong, "
                     f"{flips['reference_wrong_candidate_right']} wrong→right")
        if item.p_difference is not None:
            head += f"; {clause.test} p = {format_value(item.p_difference)}"
    observed = iv.method == "observed"  # max/min/sum: a fact about the data, no interval, no test
    mde = None if observed else stats.minimum_detectable_effect(iv.se, alpha=spec.alpha, power=spec.power)
    item.extra["mde"] = mde
    if item.outcome == "fail" and item.reason.startswith("non-finite"):
        return clause.severity, f"{where}{item.reason}; see clause `nonfinite` in numerics"
    if item.reason:  # too small
        sees = f"; it can only detect effects above {format_value(mde)}" if mde is not None else ""
        return "inconclusive", f"{head}: {item.reason}, never a pass{sees} ({counts})"
    limit = _limit_text(clause)
    if item.outcome == "pass":
        return "pass", f"{head} {limit} ({counts})"
    if item.outcome == "fail" and observed:
        return clause.severity, f"{head}, beyond {limit} ({counts})"
    if item.outcome == "fail":
        p, adj, wide = item.p_fail, item.p_fail_adjusted, item.adjusted
        upper, lower = bounds_of(clause)
        beyond = adj is None or wide is None or stats.judge_interval(wide, upper=upper, lower=lower).outcome == "fail"
        shown = (f"; {spec.correction}-adjusted {round(100 * wide.level, 4):g}% CI [{format_value(wide.lo)}, "
                 f"{format_value(wide.hi)}]") if wide is not None and spec.correction != "none" else ""
        if beyond:
            corr = f", {spec.correction}-adjusted {format_value(adj)} over {family_size} tests" \
                if spec.correction != "none" else ""
            return clause.severity, f"{head}{shown}, beyond {limit}: p = {format_value(p)}{corr} ({counts})"
        return "inconclusive", (f"{head} lies beyond {limit}, but not after {spec.correction} correction over "
                                f"{family_size} tests{shown} (p = {format_value(p)}, adjusted {format_value(adj)}) "
                                f"({counts})")
    j = item.judgement
    more = stats.more_samples_needed(item.scored, iv.estimate, j.relevant_bound, j.half_width) if j else None
    item.extra["more_samples"] = more
    hint = f"about {more} more sequences would decide if the estimate holds" if more else \
        "the estimate sits on the bound"
    return "inconclusive", (f"{head} straddles {limit}: {hint}; detectable effect at this size "
                            f"{format_value(mde)} ({counts})")


def _evidence(spec: StatisticalSpec, item: Item) -> dict[str, Any]:
    iv = item.interval
    ev: dict[str, Any] = {
        "slice": item.label or "(all)", "family": item.family, "samples": item.samples,
        "scored_samples": item.scored, "positions": item.positions, "alpha": spec.alpha,
        "correction": spec.correction,
    }
    if iv is not None:
        ev.update(estimate=finite_or_none(iv.estimate), ci=[finite_or_none(iv.lo), finite_or_none(iv.hi)],
                  ci_level=iv.level, ci_method=iv.method)
    if item.adjusted is not None:
        ev.update(ci_adjusted=[finite_or_none(item.adjusted.lo), finite_or_none(item.adjusted.hi)],
                  ci_adjusted_level=item.adjusted.level)
    for key in ("p_fail", "p_fail_adjusted", "p_difference", "p_difference_adjusted"):
        if getattr(item, key) is not None:
            ev[key] = getattr(item, key)
    for key, value in item.extra.items():
        ev[key] = finite_or_none(value) if isinstance(value, float) else value
    return ev


def _result(spec: StatisticalSpec, item: Item, status: str, message: str) -> ClauseResult:
    clause = item.clause  # with the slice's own bounds when `slice_bounds` matched it
    upper, lower = bounds_of(clause)
    bounds = [Bound(op, v) for op, v in (("max", upper), ("min", lower)) if v is not None]
    result = ClauseResult(id=clause.id, stage=STAGE, status=status, message=message, metric=clause.metric,
                          stat=clause.stat, observed=item.estimate, bounds=bounds, slice=item.label,
                          line=clause.line, evidence=_evidence(spec, item))
    iv = item.interval
    result.p_value = item.p_fail_adjusted if item.p_fail_adjusted is not None else item.p_fail
    return result.judged(item.judgement, low=iv.lo if iv else None, high=iv.hi if iv else None, samples=item.scored)


_RANK = {"fail": 3, "warn": 3, "inconclusive": 2, "pass": 1}


def _worst(judged: list[tuple[Item, str, str]]) -> tuple[Item, str, str]:
    """The worst slice: by status, then by how far its estimate lies past its own bound."""

    def badness(entry: tuple[Item, str, str]) -> tuple[int, float]:
        upper, lower = bounds_of(entry[0].clause)
        est = entry[0].estimate
        if math.isnan(est):
            return _RANK[entry[1]], -math.inf
        return _RANK[entry[1]], (est - (upper or 0.0) if upper is not None and lower is None else (lower or 0.0) - est)

    return max(judged, key=badness)


def run_slices(contract: Contract, collector: SliceCollector, *, duration_s: float = 0.0) -> StageResult:
    """Derive slices, judge every clause on every slice, correct for multiplicity, and report."""
    start = time.perf_counter()
    spec = contract.statistical
    assert spec is not None
    table = collector.finish()
    inputs = collector.key_inputs(table)
    families = [derive(d, inputs) for d in contract.slices]
    notes: list[str] = [n for f in families for n in (f"slices `{f.name}`: {x}" for x in f.notes)]
    tasks = {c.metric: task_items(c.metric, collector.evalset, table)
             for c in spec.clauses if c.metric in _SAMPLE_LEVEL_TASKS}
    ctx = {"table": table, "n": len(collector.evalset.samples), "tasks": tasks, "notes": notes, "cache": {}}
    per_clause = [(c, _items(spec, c, families, ctx)) for c in spec.clauses]
    family_size = _correct(spec, [i for _, items in per_clause for i in items])
    results: list[ClauseResult] = []
    for clause, items in per_clause:
        judged = [(i, *_finalise(spec, i, family_size)) for i in items]
        if clause.stat == "max_over_slices":
            if not judged:
                results.append(ClauseResult(id=clause.id, stage=STAGE, status="inconclusive", line=clause.line,
                                            metric=clause.metric, stat=clause.stat,
                                            message="no slice to judge: never a pass"))
                continue
            worst, status, message = _worst(judged)
            result = _result(spec, worst, status, f"worst of {len(judged)} slices: {message}")
            result.evidence["slices"] = [
                {"slice": i.label, "status": st, "estimate": finite_or_none(i.estimate),
                 "ci": [finite_or_none(i.interval.lo), finite_or_none(i.interval.hi)] if i.interval else None,
                 "bounds": {op: v for op, v in zip(("max", "min"), bounds_of(i.clause), strict=True) if v is not None}}
                for i, st, _ in sorted(judged, key=lambda e: (-_RANK[e[1]], e[0].label or ""))][:50]
            results.append(result)
        else:
            results.extend(_result(spec, i, st, msg) for i, st, msg in judged)
    smallest_p = 1 / (spec.resamples + 1)
    if spec.correction == "holm" and family_size and smallest_p * family_size > spec.alpha:
        notes.append(f"{family_size} tests with holm need p ≤ {format_value(spec.alpha / family_size)} to declare "
                     f"a failure, below the resampled resolution {format_value(smallest_p)}: such p-values come "
                     "from the normal tail fitted to the bootstrap distribution (docs/statistics.md §5); raise "
                     "`statistical.resamples` to rest them on resampled tails alone")
    details = {
        "alpha": spec.alpha, "ci_level": 1 - 2 * spec.alpha, "correction": spec.correction,
        "tests_corrected": family_size, "min_samples": spec.min_samples, "resamples": spec.resamples,
        "seed": spec.seed, "power": spec.power,
        "families": [{"name": f.name, "by": list(f.keys), "position_level": f.position_level, "notes": f.notes,
                      "slices": [{"label": s.label, "samples": s.samples, "positions": s.positions,
                                  "scored_samples": int(np.unique(table.seq[s.position_mask]).size),
                                  "metrics": slice_summary(spec, table, s.position_mask, ctx["n"], s.label,
                                                           ctx["cache"])}
                                 for s in f.slices]} for f in families],
    }
    return StageResult(name=STAGE, status=worst_status([r.status for r in results]), clauses=results,
                       duration_s=duration_s + time.perf_counter() - start, notes=notes, details=details)
