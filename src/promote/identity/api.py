"""What an identity check receives and how checks are registered (docs/identity.md).

An identity check is a pure function ``(IdentityInputs) -> list[Finding]``: it reads what both sides
declare and, where a probe ran, what they returned for the eval set's first batch, and says what differs,
on which side, and the fix. Checks are entries of ``IDENTITY_CHECKS`` (the generic ``Registry``), run in
registration order before any metric (``identity/runner.py``); a kernel kind names the checks that apply
to it (``contract/kinds.py`` ``KernelKind.identity``), so a plug-in kind can opt out of one it cannot
support and a plug-in module can register a check of its own::

    IDENTITY_CHECKS.register("my_check", IdentityCheck("my_check", my_function, doc="..."))

A check must not run a kernel (the probe already did) nor raise for a mismatch: a mismatch is a
``Finding`` of severity ``invalid``; something worth showing that is not a mismatch is a ``note``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from promote.contract.identity_spec import IdentitySpec
from promote.data import Batch, EvalSet
from promote.findings import Finding
from promote.kernels.base import Outputs
from promote.registry import Lazy, Registry

ROLES: tuple[str, str] = ("reference", "candidate")


@dataclass(frozen=True)
class SideFacts:
    """One side as the identity checks see it.

    ``vocab``: rows of logits it scores (a dense probe's width, a server's probe, records' V), None when
    unknown (top-k or sampled-token outputs); ``tokenizer_vocab``: ids its tokenizer produces (from the
    tokenizer file, with added tokens), None when no tokenizer is known; ``scored_ids``: sample id → the
    ids it actually scored, only where the side reports them (a server's echo; a local kernel scores what
    it is given and reports nothing); ``declared``: what it declares about itself (``Kernel.identity_facts``
    ``declared``: value semantics, sampler settings); ``fingerprint``: content hashes of its files and a
    server's own account (``identity/fingerprint.py``); ``outputs``: its outputs on the probe batch, None
    when no probe ran (a live-only run, ``task: tensor``)."""

    role: str
    kind: str
    label: str
    capabilities: frozenset[str] = frozenset()
    vocab: int | None = None
    tokenizer_vocab: int | None = None
    scored_ids: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    declared: Mapping[str, Any] = field(default_factory=dict)
    fingerprint: Mapping[str, Any] = field(default_factory=dict)
    outputs: Outputs | None = None


@dataclass(frozen=True)
class IdentityInputs:
    """Everything an identity check may read: the contract's `identity:` section, the task, the eval set
    (None when no selected stage reads it), the probe batch both sides ran (None when none ran) and each
    side's facts."""

    spec: IdentitySpec
    task: str
    evalset: EvalSet | None
    probe: Batch | None
    reference: SideFacts
    candidate: SideFacts
    metrics: frozenset[str] = frozenset()  # the contract's clause metrics (value_semantics: logit_drift)

    def sides(self) -> tuple[SideFacts, SideFacts]:
        return self.reference, self.candidate

    def side(self, role: str) -> SideFacts:
        return self.reference if role == "reference" else self.candidate


CheckFunction = Callable[[IdentityInputs], list[Finding]]


@dataclass(frozen=True)
class IdentityCheck:
    """One registered check: its name (a finding's ``check``), the function, what it needs, and its doc.

    ``tasks``: the data tasks it applies to; ``needs_probe``: it reads the probe's outputs, so it is not
    checked (with why) when no probe ran."""

    name: str
    run: CheckFunction
    doc: str = ""
    tasks: frozenset[str] = frozenset({"causal-lm"})
    needs_probe: bool = False


IDENTITY_CHECKS: Registry[IdentityCheck] = Registry("identity check", check=lambda o: isinstance(o, IdentityCheck))
IDENTITY_CHECKS.register("vocabulary", Lazy("promote.identity.vocabulary:CHECK"))
IDENTITY_CHECKS.register("prompt", Lazy("promote.identity.prompt:CHECK"))
IDENTITY_CHECKS.register("fingerprint", Lazy("promote.identity.fingerprint:CHECK"))
IDENTITY_CHECKS.register("value_semantics", Lazy("promote.identity.semantics:CHECK"))
IDENTITY_CHECKS.register("sampling", Lazy("promote.identity.sampling:CHECK"))
