"""Synthetic Reports for rendering tests: fixed times, hashes and versions, so golden files are stable."""

from __future__ import annotations

from promote.contract.model import Escalation, Rule
from promote.findings import Finding
from promote.identity.result import IdentityResult
from promote.policy import decide
from promote.report.model import Report
from promote.results import Bound, ClauseResult, StageResult, worst_status

SHA = "ab" * 32


def clause(cid: str, status: str, observed: float | None = None, *, op: str = "max", bound: float | None = None,
           metric: str | None = "kl", stat: str | None = "mean", stage: str = "numerics", slice: str | None = None,
           message: str | None = None, line: int | None = 10) -> ClauseResult:
    bounds = [Bound(op, bound)] if bound is not None else []
    if message is None:
        message = f"{stat}({metric}) = {observed}, required {'≤' if op == 'max' else '≥'} {bound}"
    return ClauseResult(id=cid, stage=stage, status=status, message=message, metric=metric, stat=stat,
                        observed=observed, bounds=bounds, slice=slice, line=line)


def make_report(clauses: list[ClauseResult], *, name: str = "tiny-lm-bf16", rules: tuple[Rule, ...] = (),
                default: str = "block", fail_on: str = "fail", command: str | None = None,
                details: dict | None = None, implied: list | None = None, warnings: list | None = None,
                identity: IdentityResult | None = None) -> Report:
    stages = []
    for stage_name in ("numerics", "slices", "runtime", "observability"):
        mine = [c for c in clauses if c.stage == stage_name]
        if mine:
            stages.append(StageResult(name=stage_name, status=worst_status([c.status for c in mine]), clauses=mine,
                                      duration_s=1.25, details=details or {} if stage_name == "numerics" else {}))
    decision = decide(stages, Escalation(default=default, rules=rules), fail_on=fail_on,
                      findings=identity.findings if identity else ())
    spec = {"kind": "torch", "model": "model.py:build", "weights": "weights.safetensors", "device": "cpu",
            "batch_size": 32}
    return Report(
        tool_version="0.1.0", contract={"name": name, "path": "examples/tiny_lm/contract.yaml", "sha256": SHA,
                                        "description": None},
        kernels={"reference": {"spec": {**spec, "precision": "fp32"}, "fingerprint": None},
                 "candidate": {"spec": {**spec, "precision": "bf16"}, "fingerprint": None}},
        data={"path": "examples/tiny_lm/eval.jsonl", "samples": 320, "positions": 20160},
        stages=stages, decision=decision,
        command=command or "promote check examples/tiny_lm/contract.yaml",
        started_at="2026-01-02T03:04:05Z", finished_at="2026-01-02T03:04:09Z", duration_s=4.0,
        warnings=warnings or [], commit="0123456789abcdef0123456789abcdef01234567", implied=implied or [],
        identity=identity,
    )


def normal_report() -> Report:
    """Two failures, one warning, one inconclusive slice, passes, slices for a chart, implied bounds."""
    clauses = [
        clause("kl-mean", "fail", 2.4e-3, bound=1e-3, line=31),
        clause("kl-p99", "pass", 4.1e-3, bound=1e-2, stat="p99", line=32),
        clause("osc-max", "warn", 2.3, bound=2.0, metric="logit_osc", stat="max", line=35),
        clause("argmax", "pass", 0.991, op="min", bound=0.98, metric="argmax_agree", line=37),
        clause("finite", "pass", 0, bound=0, metric="nonfinite", stat="max", line=38),
        clause("slice-kl", "pass", 4e-4, bound=2e-3, stage="slices", slice="script=latn", line=44),
        clause("slice-kl", "fail", 3.1e-3, bound=2e-3, stage="slices", slice="script=hani", line=44),
        clause("slice-kl", "inconclusive", 1.9e-3, bound=2e-3, stage="slices", slice="script=cyrl", line=44,
               message="mean(kl) = 0.0019, 95% CI [0.0012, 0.0027] straddles 0.002; ~400 more samples needed"),
    ]
    rules = (Rule(stage="slices", clause=None, statuses=None, slice="script=*", action="route-to-reference",
                  index=0),)
    implied = [{"quantity": "tv", "bound": 0.52, "source": "logit_osc max", "source_value": 2.3,
                "formula": "TV ≤ tanh(osc/4)", "scope": "every scored position"}]
    return make_report(clauses, rules=rules, implied=implied)


def invalid_report() -> Report:
    """The identity check found a BOS the candidate's server added (invalid) and padded rows (a note): nothing
    judged. The sample id carries markdown and a pipe, as eval-set ids may."""
    why = ("not judged: the identity check found the reference and candidate do not compute on the same thing "
           "(see the identity findings)")
    clauses = [clause(cid, "invalid", None, bound=1e-3, message=why, line=line)
               for cid, line in (("kl-mean", 31), ("argmax", 37))]
    findings = [
        Finding("prompt", "invalid", "candidate", "candidate (openai, vllm m at http://127.0.0.1:8000/v1) did not "
                "score the eval set's ids for sample `s|1 **x**`: it prepended 1 id(s) [1] (a BOS token)",
                "send the eval set's ids as they are", {"sample": "s|1 **x**", "sent": [5, 7], "scored": [1, 5, 7]}),
        Finding("vocabulary", "note", "both", "the tokenizer has 151643 ids and the models score more rows: "
                "reference 151936 rows (293 padded), candidate 151936 rows (293 padded)",
                "nothing to fix: padded rows are normal", {"scored_vocab": 151643}),
    ]
    identity = IdentityResult(findings=findings, fingerprints={"reference": {}, "candidate": {}},
                              checked=["vocabulary", "prompt", "fingerprint"], probe_samples=32)
    return make_report(clauses, identity=identity)
