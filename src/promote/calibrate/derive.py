"""`promote calibrate --derive`: bounds measured on honest runs, validated out of sample.

The eval set is split by sample (seeded, `calibration.split`, default half) into a *calibration* part,
on which every bound is derived from the honest candidate's drift, and a disjoint *held-out* part,
on which the derived contract is checked: a bound that only holds on the data it was fitted to is
reported as such (exit 1). The per-clause rules live in ``rules.py`` (numerical clauses) and here
(statistical ones); docs/calibration.md states each with an example. A clause no rule can bound is
listed as not derivable, with why, and keeps its written bound; when that written bound cannot fail
either, --derive refuses (exit 2) rather than write a contract that passes anything.

Both kernels run once, over the whole eval set in its own batches (``ReplayKernel`` records them): the
calibration values are that pass's positions of calibration samples, and the runs on each split
reassemble its batches from the recorded samples, so the fault table after --derive replays them too.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from promote.atomic import write_text_atomic
from promote.calibrate.replay import ReplayKernel, assembling
from promote.calibrate.rules import (
    REASONS,
    RULES,
    can_fail,
    derive_numerical,
    not_derivable,
    range_text,
    round_up,
)
from promote.calibrate.tail import pot_max_bound
from promote.contract.from_data import contract_from_data
from promote.contract.model import Contract, load_contract
from promote.data import EvalSet, load_evalset
from promote.engine.accumulate import NumericsAccumulator
from promote.engine.passes import kernel_pass
from promote.engine.scoring import ScoredBatch
from promote.errors import UsageError
from promote.kernels import build_kernel
from promote.run import CheckOptions, run_check
from promote.vocabulary import DEFAULT_TIE_MARGIN, parameterized_key

__all__ = ["derive", "derive_numerical", "pot_max_bound", "slice_factor", "split", "write_derived"]


class _Values:
    """Per-position metric values of one pass (and the parameterised ones the clauses name), the
    sample index of each position, and the largest finite |reference logit| (float resolution)."""

    def __init__(self, index: dict[str, int], keys: set[str]) -> None:
        self.index = index
        self.keys = keys
        self.values: dict[str, list[np.ndarray]] = {}
        self.seq: list[np.ndarray] = []
        self.ref_abs_max = 0.0

    def update(self, scored: ScoredBatch) -> None:
        self.seq.append(np.array([self.index[scored.batch.samples[r].id] for r in scored.rows], dtype=np.int64))
        extra = {k: NumericsAccumulator._values(k, scored) for k in self.keys if k not in scored.values}
        for name, v in {**scored.values, **extra}.items():
            if v is not None:
                self.values.setdefault(name, []).append(np.asarray(v, dtype=np.float64))
        scale = None if scored.sampled else scored.ref_abs_max()
        if scale is not None:
            self.ref_abs_max = max(self.ref_abs_max, scale)

    def arrays(self, chosen: set[int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Positions of the samples whose index is in ``chosen``."""
        seq = np.concatenate(self.seq) if self.seq else np.zeros(0, dtype=np.int64)
        keep = np.isin(seq, np.fromiter(chosen, dtype=np.int64, count=len(chosen)))
        return seq[keep], {k: np.concatenate(v)[keep] for k, v in self.values.items()}


def split(evalset: EvalSet, fraction: float, seed: int) -> tuple[EvalSet, EvalSet]:
    """Disjoint calibration and held-out subsets, by sample, in file order."""
    n = len(evalset.samples)
    chosen = np.zeros(n, dtype=bool)
    chosen[np.random.default_rng(seed).permutation(n)[: max(1, round(fraction * n))]] = True
    cal = tuple(s for s, c in zip(evalset.samples, chosen, strict=True) if c)
    held = tuple(s for s, c in zip(evalset.samples, chosen, strict=True) if not c)
    if not held:
        raise UsageError("calibration.split leaves no held-out samples; lower it")
    return dataclasses.replace(evalset, samples=cal), dataclasses.replace(evalset, samples=held)



def _derive_statistical(contract: Contract, cal: EvalSet, kernels: dict[str, Any], margin: float) -> list[dict]:
    """Per-slice upper confidence bounds of each statistical clause from a run on the calibration split."""
    spec = contract.statistical
    if spec is None:
        return []
    report = run_check(contract.with_section("numerical", _no_floor(contract)), CheckOptions(stages=("slices",)),
                       kernels=kernels, evalset=cal)
    # Quantile buckets are cut from the data, so their labels differ between splits and runs: only tag
    # families and fixed `buckets` get per-slice bounds.
    stable = {d.name for d in contract.slices
              if d.buckets is not None or all(k.startswith("tags.") for k in d.keys)}
    rows = []
    for clause in spec.clauses:
        results = [r for s in report.stages if s.name == "slices" for r in s.clauses if r.id == clause.id]
        row = {"clause": clause.id, "stage": "slices", "metric": clause.metric, "stat": clause.stat,
               "op": "max" if clause.max is not None else "min",
               "written": clause.max if clause.max is not None else clause.min}
        if clause.is_task or clause.max is None or clause.stat not in ("mean", "max_over_slices"):
            rows.append(not_derivable(row, REASONS["slice_kind"]))
            continue
        per_slice, estimates = _slice_ucbs(results)
        if not per_slice:
            rows.append(not_derivable(row, REASONS["no_slice"]))
            continue
        worst = max(per_slice.values())
        bound = round_up(worst * (1 + margin))
        if not can_fail("max", bound, clause.metric):
            rows.append(not_derivable(row, REASONS["small"].format(op="max", bound=f"{bound:g}", metric=clause.metric,
                                                                   range=range_text(clause.metric)),
                                      calibration=worst, per_slice=per_slice))
            continue
        own = [{"slice": label, "rule": RULES["slice"], "calibration": estimates[label], "confidence_bound": ucb,
                "bound": round_up(ucb * (1 + margin))}
               for label, ucb in per_slice.items() if _family(label) in stable and ucb > 0
               and bound > slice_factor(margin) * round_up(ucb * (1 + margin))]
        rows.append({**row, "derived": True, "rule": RULES["slice_clause"], "calibration": worst,
                     "per_slice": per_slice, "slice_bounds": own, "bound": bound})
    return rows


def _slice_ucbs(results: list[Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """Per slice label, its 95 % UCB of the mean and its estimate (finite UCBs only)."""
    per_slice, estimates = {}, {}
    for r in results:
        for entry in r.evidence.get("slices") or [{"slice": r.slice, "ci": r.evidence.get("ci"),
                                                   "estimate": r.observed}]:
            ci = entry.get("ci") or [None, None]
            if ci[1] is not None and np.isfinite(ci[1]):
                per_slice[entry["slice"] or "(all)"] = ci[1]
                estimates[entry["slice"] or "(all)"] = entry.get("estimate")
    return per_slice, estimates


def slice_factor(margin: float) -> float:
    """How much looser the clause-wide bound must be than a slice's own for the slice to get its own:
    1 + margin, the factor by which the slice's drift could grow beyond its own derived bound (itself
    already margin above its UCB) and still pass the shared one."""
    return 1.0 + margin


def _family(label: str) -> str:
    """The family of a slice label: `FAMILY=value` or, crossed, `FAMILY:k=v,...`."""
    return label.split("=", 1)[0].split(":", 1)[0]


def honest_kernels(contract: Contract) -> dict[str, ReplayKernel]:
    """The reference and the honest candidate, each run once and replayed (shared by --derive and the table)."""
    return {"reference": ReplayKernel(build_kernel(contract.reference, role="reference")),
            "candidate": ReplayKernel(build_kernel(contract.candidate, role="candidate"))}


def derive(contract: Contract, *, evalset: EvalSet | None = None,
           kernels: dict[str, ReplayKernel] | None = None) -> dict[str, Any]:
    """Derive bounds on the calibration split and check them on the held-out split. ``kernels``
    (``honest_kernels``) are left open for the table; without them, built and closed here."""
    if contract.numerical is None and contract.statistical is None:
        raise UsageError(f"{contract.source.display_path}: --derive needs `numerical` or `statistical` clauses")
    spec = contract.calibration
    evalset = evalset or load_evalset(contract.data)
    cal, held = split(evalset, spec.split, spec.seed)
    own = kernels is None
    kernels = honest_kernels(contract) if kernels is None else kernels
    ref, cand = kernels["reference"], kernels["candidate"]
    clauses = contract.numerical.clauses if contract.numerical else ()
    try:
        ref.open()
        cand.open()
        index = {s.id: i for i, s in enumerate(evalset.samples)}
        collector = _Values(index, {parameterized_key(c.metric, c.param) for c in clauses})
        kernel_pass(evalset, ref, cand, [collector], tie_margin=contract.numerical.tie_margin
                    if contract.numerical else DEFAULT_TIE_MARGIN)
        seq, values = collector.arrays({index[s.id] for s in cal.samples})
        rows = [derive_numerical(c, seq, values, evalset.positions, spec.margin,
                                 precision=getattr(contract.candidate, "precision", None) or "fp32",
                                 ref_abs_max=collector.ref_abs_max) for c in clauses]
        with assembling(ref, cand):
            rows += _derive_statistical(contract, cal, kernels, spec.margin)
            _refuse_vacuous(contract, rows)
            derived_doc = _with_bounds(yaml.safe_load(contract.source.text), rows)  # written: keeps ${VARS}
            derived = contract_from_data(_with_bounds(copy.deepcopy(contract.source.data), rows), contract.source)
            checked, by_slice = _held_out(derived, held, kernels)
    finally:
        if own:
            ref.close()
            cand.close()
    return {"split": {"fraction": spec.split, "seed": spec.seed, "calibration_samples": len(cal.samples),
                      "held_out_samples": len(held.samples)}, "margin": spec.margin, "bounds": rows,
            "problems": _held_out_problems(rows, checked, by_slice), "document": derived_doc,
            "warnings": [f"`{r['clause']}`: {r['rule']} ({r['op']} {r['bound']})" for r in rows if not r["derived"]]}


def _refuse_vacuous(contract: Contract, rows: list[dict[str, Any]]) -> None:
    """A clause no rule could bound keeps its written bound, unless that bound cannot fail either:
    then there is no honest bound to write, and --derive stops (exit 2) instead of writing one."""
    bad = [r for r in rows if not r["derived"] and r["written"] is not None  # (task clauses: `max_drop`, kept)
           and not can_fail(r["op"], r["written"], r["metric"] or "")]
    if bad:
        lines = "; ".join(f"`{r['clause']}` ({r['reason']}; written {r['op']}: {r['written']})" for r in bad)
        raise UsageError(f"{contract.source.display_path}: --derive cannot bound {lines}. Use a larger eval set or "
                         "calibration split, or write a bound that some value of the metric would violate")


def _held_out_problems(rows: list[dict[str, Any]], checked: dict[str, Any],
                       by_slice: dict[tuple[str, str], Any]) -> list[str]:
    problems = []
    for row in rows:
        row["held_out"] = checked.get(row["clause"])
        if row["held_out"] and row["held_out"]["status"] == "fail":
            problems.append(f"derived bound of `{row['clause']}` ({row['op']} {row['bound']}) fails on the held-out "
                            f"split: {row['held_out']['message']}")
        for own in row.get("slice_bounds") or ():
            own["held_out"] = by_slice.get((row["clause"], own["slice"]))
            if own["held_out"] and own["held_out"]["status"] == "fail":
                problems.append(f"derived bound of `{row['clause']}` for slice `{own['slice']}` ({row['op']} "
                                f"{own['bound']}) fails on the held-out split")
    return problems


def _with_bounds(doc: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``doc`` (a contract's data) with each derived bound written into its clause."""
    by_id = {r["clause"]: r for r in rows}
    for section in ("numerical", "statistical"):
        for clause in (doc.get(section) or {}).get("clauses", []):
            row = by_id.get(clause.get("id"))
            if row and row["derived"]:
                clause[row["op"]] = row["bound"]
                if row["stage"] == "slices":  # derived per-slice bounds replace any written ones
                    clause.pop("slice_bounds", None)
                    if row.get("slice_bounds"):
                        # a label is its own pattern: only `*` and `?` are wildcards, which labels rarely hold
                        clause["slice_bounds"] = {o["slice"]: {row["op"]: o["bound"]}
                                                  for o in row["slice_bounds"]}
    return doc


def _held_out(derived: Contract, held: EvalSet,
              kernels: dict[str, Any]) -> tuple[dict[str, Any], dict[tuple[str, str], Any]]:
    """Per clause, its worst result on the held-out split; per (clause, slice), that slice's result.
    ``derived`` is built in memory (contract/from_data.py): no file is written to check it."""
    present = {"numerics": derived.numerical, "slices": derived.statistical}
    stages = tuple(s for s, section in present.items() if section is not None)
    report = run_check(derived.with_section("numerical", _no_floor(derived)),
                       CheckOptions(stages=stages, all_stages=True), kernels=kernels, evalset=held)
    out: dict[str, Any] = {}
    by_slice: dict[tuple[str, str], Any] = {}
    for stage in report.stages:
        for r in stage.clauses:
            prev = out.get(r.id)
            if prev is None or (r.status == "fail" and prev["status"] != "fail"):
                out[r.id] = {"status": r.status, "observed": r.observed, "slice": r.slice, "message": r.message}
            if stage.name == "slices":
                for e in r.evidence.get("slices") or []:
                    by_slice[(r.id, e["slice"])] = {"status": e["status"], "observed": e.get("estimate"),
                                                    "bound": (e.get("bounds") or {}).get("max")}
                if r.slice is not None:
                    by_slice[(r.id, r.slice)] = {"status": r.status, "observed": r.observed,
                                                 "bound": r.bounds[0].value if r.bounds else None}
    return out, by_slice


def _no_floor(contract: Contract) -> Any:
    num = contract.numerical
    return num if num is None or num.noise_floor is None else dataclasses.replace(num, noise_floor=None)


def derive_path_problem(contract: Contract, path: Path) -> str | None:
    """Why ``--derive PATH`` cannot hold the derived contract (checked before anything runs): it must
    sit next to the original, since the paths inside are relative to that directory."""
    if path.resolve().parent != contract.path.resolve().parent:
        return (f"--derive {path}: write the derived contract next to {contract.source.display_path} "
                "(the paths inside it are relative to that directory)")
    return None


def write_derived(contract: Contract, derived: dict[str, Any], path: Path) -> Contract:
    """Write the contract with the derived bounds next to the original; return it typed."""
    if problem := derive_path_problem(contract, path):
        raise UsageError(problem)
    header = ("# Bounds derived by `promote calibrate --derive` from honest runs on a calibration split and "
              "checked on the held-out rest\n# (docs/calibration.md); rerun it after changing kernels or data.\n")
    doc = derived.pop("document")
    write_text_atomic(path, header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120))
    loaded, _ = load_contract(path)
    return loaded
