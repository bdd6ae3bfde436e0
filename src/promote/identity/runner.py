"""Run the identity check: each side's facts (what its kernel declares, its files' fingerprints, its
outputs on the probe batch), every registered check that applies to both sides' kinds, one result.

Called by the offline loop on the first batch both kernels ran, before it is scored
(``stages/offline.py`` through ``engine/passes.kernel_pass(before=...)``), and without a probe before a
live stage when no offline stage ran (``stages/identity_gate.py``). A kernel that sees a mismatch
itself while running (``kernels.base.IdentityEvidence``: an id beyond its vocabulary, a server that
scored other ids) is turned into the same check's finding (``from_evidence``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from promote.contract.identity_spec import IdentitySpec
from promote.contract.kinds import identity_checks_of
from promote.data import Batch, EvalSet
from promote.errors import EvaluationError
from promote.findings import Finding
from promote.identity.api import IDENTITY_CHECKS, ROLES, IdentityCheck, IdentityInputs, SideFacts
from promote.identity.result import IdentityResult
from promote.kernels.base import IdentityEvidence, Kernel, Outputs, is_out_of_memory


def side_facts(role: str, kernel: Kernel, spec: IdentitySpec, outputs: Outputs | None = None,
               extra_scored: Mapping[str, Sequence[int]] | None = None) -> SideFacts:
    """What the identity checks know of one side (``SideFacts``)."""
    from promote.identity.fingerprint import side_fingerprint

    declared = kernel.identity_facts()
    fingerprint = side_fingerprint(declared, spec.side(role))
    vocab = declared.get("vocab")
    if outputs is not None and outputs.logits is not None:
        vocab = int(outputs.logits.shape[-1])
    scored = {k: tuple(int(i) for i in v) for k, v in (declared.get("scored_ids") or {}).items()}
    scored.update({k: tuple(int(i) for i in v) for k, v in (extra_scored or {}).items()})
    tokenizer = fingerprint.get("tokenizer") or {}
    return SideFacts(role=role, kind=getattr(kernel.spec, "kind", kernel.kind), label=kernel.label,
                     capabilities=kernel.capabilities, vocab=vocab,
                     tokenizer_vocab=declared.get("tokenizer_vocab") or tokenizer.get("vocab"),
                     scored_ids=scored, declared=dict(declared.get("declared") or {}), fingerprint=fingerprint,
                     outputs=outputs)


def applies(check: IdentityCheck, inputs: IdentityInputs) -> str | None:
    """None when ``check`` runs on this pair; otherwise why not (the report's ``not_checked``)."""
    if inputs.task not in check.tasks:
        return f"does not apply to `task: {inputs.task}`"
    for side in inputs.sides():
        declared = identity_checks_of(side.kind)
        if declared is not None and check.name not in declared:
            return f"kernel kind `{side.kind}` ({side.role}) declares no `{check.name}` identity check"
    if check.needs_probe and inputs.probe is None:
        return "needs the kernels' outputs on a probe batch, and no offline stage ran one"
    return None


def evaluate(inputs: IdentityInputs, *, evidence: Sequence[IdentityEvidence] = ()) -> IdentityResult:
    """Every registered check that applies, in registration order, plus the findings of ``evidence``."""
    result = IdentityResult(fingerprints={s.role: dict(s.fingerprint) for s in inputs.sides()},
                            probe_samples=len(inputs.probe.samples) if inputs.probe is not None else 0)
    for name, check in IDENTITY_CHECKS.items():
        why = applies(check, inputs)
        if why is not None:
            result.not_checked[name] = why
            continue
        result.checked.append(name)
        result.findings.extend(_run(name, check, inputs))
    result.findings.extend(from_evidence(e, inputs) for e in evidence)
    from promote.identity.vocabulary import scored_vocab

    result.scored_vocab = None if result.invalid else scored_vocab(inputs)
    return result


def _run(name: str, check: IdentityCheck, inputs: IdentityInputs) -> list[Finding]:
    """One check's findings; running out of memory on the probe is exit 3 saying so (never a traceback):
    a check reads at most a few dozen rows of the first batch, so only a vocabulary this machine cannot
    hold a few rows of gets here."""
    try:
        return check.run(inputs)
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        vocab = next((s.vocab for s in inputs.sides() if s.vocab), None)
        raise EvaluationError(
            f"identity check `{name}` ran out of memory reading the first batch's outputs"
            f"{f' ({vocab} ids per position)' if vocab else ''}: {str(exc).splitlines()[0][:200]}; free memory "
            "on this machine, or lower `batch_size` (the probe is the first batch)") from None


def from_evidence(exc: IdentityEvidence, inputs: IdentityInputs) -> Finding:
    """The finding of what a kernel saw while running, worded by the check it belongs to."""
    from promote.identity import prompt, vocabulary

    module: Any = {"prompt": prompt, "vocabulary": vocabulary}.get(exc.check)
    if module is None:
        return Finding(exc.check, "invalid", exc.role, exc.format_message(), "see docs/identity.md", exc.evidence)
    return module.from_evidence(exc, inputs)


def inputs_for(spec: IdentitySpec, task: str, evalset: EvalSet | None, kernels: Mapping[str, Kernel], *,
               probe: Batch | None = None, outputs: Mapping[str, Outputs] | None = None,
               metrics: frozenset[str] = frozenset()) -> IdentityInputs:
    sides = {role: side_facts(role, kernels[role], spec, (outputs or {}).get(role)) for role in ROLES}
    return IdentityInputs(spec=spec, task=task, evalset=evalset, probe=probe, **sides, metrics=metrics)


def identify(spec: IdentitySpec, task: str, evalset: EvalSet | None, kernels: Mapping[str, Kernel], *,
             probe: Batch | None = None, outputs: Mapping[str, Outputs] | None = None,
             evidence: Sequence[IdentityEvidence] = (), metrics: frozenset[str] = frozenset()) -> IdentityResult:
    """The identity result of a kernel pair (``probe``/``outputs``: the first batch and both sides' outputs
    on it; ``evidence``: what a kernel raised while running the probe)."""
    return evaluate(inputs_for(spec, task, evalset, kernels, probe=probe, outputs=outputs, metrics=metrics),
                    evidence=evidence)
