"""Identity check ``vocabulary``: both sides score one vocabulary, and the eval set's ids lie inside it.

Sizes known per side: the model's rows (``SideFacts.vocab``: logits width on the probe, a server's
probe, records' V) and its tokenizer's ids (``tokenizer_vocab``). A model padded beyond its tokenizer
(Qwen2: 151 936 rows for a 151 643-id tokenizer) is normal: the padded rows can never be a target, so
every metric is computed over the tokenizer's ids (``scored_vocab``) and the count is a ``note``. Two
sides whose sizes differ otherwise, or eval-set ids beyond either vocabulary, are ``invalid``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from promote.findings import Finding
from promote.identity.api import IdentityCheck, IdentityInputs, SideFacts
from promote.kernels.base import IdentityEvidence

RETOKENIZE = "tokenize the eval set with the model's own tokenizer (the one both sides were built with)"


def _tokenizer(inputs: IdentityInputs) -> int | None:
    """The one tokenizer size both sides agree on (or the only one known); None when unknown or they differ."""
    sizes = {s.tokenizer_vocab for s in inputs.sides() if s.tokenizer_vocab is not None}
    return sizes.pop() if len(sizes) == 1 else None


def _largest_id(inputs: IdentityInputs) -> tuple[int, Any] | None:
    """The eval set's largest token id and the first sample holding it (None: no eval set or no ids)."""
    if inputs.evalset is None or inputs.task != "causal-lm":
        return None
    best: tuple[int, Any] | None = None
    for sample in inputs.evalset.samples:
        if len(sample.input_ids):
            top = int(np.max(sample.input_ids))
            if best is None or top > best[0]:
                best = (top, sample)
    return best


def _beyond(inputs: IdentityInputs, sides: list[SideFacts], size: int, what: str) -> Finding | None:
    """Eval-set ids at or past ``size`` (the ``what`` of ``sides``, one finding for sides that share it)."""
    largest = _largest_id(inputs)
    if largest is None or largest[0] < size:
        return None
    token, sample = largest
    whose = " and ".join(s.label for s in sides)
    return Finding("vocabulary", "invalid", "eval_set",
                   f"eval set line {sample.line}: sample `{sample.id}` has token id {token}, beyond the {what} of "
                   f"{whose}, {size} ids (0..{size - 1})", RETOKENIZE,
                   {"sample": sample.id, "line": sample.line, "token": token, "size": size, "of": what,
                    "roles": [s.role for s in sides]})


def _sizes(inputs: IdentityInputs) -> dict[str, Any]:
    return {s.role: {"vocab": s.vocab, "tokenizer_vocab": s.tokenizer_vocab} for s in inputs.sides()}


def scored_vocab(inputs: IdentityInputs) -> int | None:
    """The vocabulary every metric is computed over: the tokenizer's ids when both sides' rows cover it
    and at least one side has padded rows beyond it; None (the whole row) otherwise."""
    tokenizer = _tokenizer(inputs)
    vocabs = [s.vocab for s in inputs.sides()]
    if tokenizer is None or any(v is None or v < tokenizer for v in vocabs):
        return None
    return tokenizer if any(v > tokenizer for v in vocabs) else None  # type: ignore[operator]


def _padded(inputs: IdentityInputs, tokenizer: int) -> Finding:
    pads = {s.role: (s.vocab or 0) - tokenizer for s in inputs.sides()}
    shown = ", ".join(f"{s.role} {s.vocab} rows ({pads[s.role]} padded)" for s in inputs.sides())
    required = "vocabulary" in inputs.spec.same
    return Finding("vocabulary", "invalid" if required else "note", "both",
                   f"the tokenizer has {tokenizer} ids and the models score more rows: {shown}; the padded ids "
                   f"{tokenizer}.. are never a target, so every metric is computed over ids 0..{tokenizer - 1}",
                   "contract `identity.same` requires one vocabulary: serve or export both sides with the same "
                   "vocabulary size, or drop `vocabulary` from `same`" if required else
                   "nothing to fix: padded rows are normal (a vocabulary rounded up for the hardware)",
                   {"scored_vocab": tokenizer, "padded": pads, "sizes": _sizes(inputs)})


def check(inputs: IdentityInputs) -> list[Finding]:
    """Sizes per side, padded rows, eval-set ids beyond either vocabulary."""
    out: list[Finding] = []
    ref, cand = inputs.sides()
    tokenizers = {s.role: s.tokenizer_vocab for s in inputs.sides() if s.tokenizer_vocab is not None}
    if len(set(tokenizers.values())) > 1:
        out.append(Finding("vocabulary", "invalid", "both",
                           f"the tokenizers differ in size: reference {tokenizers['reference']} ids, candidate "
                           f"{tokenizers['candidate']} ids", "build both sides from the same tokenizer (see "
                           "`identity.reference.tokenizer` / `identity.candidate.tokenizer`)",
                           {"sizes": _sizes(inputs)}))
    for what, size_of in (("model's vocabulary", lambda s: s.vocab), ("tokenizer's vocabulary",
                                                                       lambda s: s.tokenizer_vocab)):
        by_size: dict[int, list[SideFacts]] = {}
        for side in inputs.sides():
            if size_of(side) is not None:
                by_size.setdefault(size_of(side), []).append(side)
        for size, sides in sorted(by_size.items()):
            finding = _beyond(inputs, sides, size, what)
            if finding is not None:
                out.append(finding)
                break  # the smallest size it exceeds says it
    tokenizer = _tokenizer(inputs)
    if ref.vocab is not None and cand.vocab is not None:
        if ref.vocab != cand.vocab and (tokenizer is None or min(ref.vocab, cand.vocab) < tokenizer):
            known = f"the tokenizer has {tokenizer} ids" if tokenizer else "no tokenizer is known to tell padded rows"
            out.append(Finding("vocabulary", "invalid", "both",
                               f"vocabulary sizes differ: {ref.label} scores {ref.vocab} ids, {cand.label} scores "
                               f"{cand.vocab}; {known}",
                               "compare kernels of one model and tokenizer; if the extra rows are padding, name "
                               "the tokenizer (`identity.tokenizer`) so they are excluded", {"sizes": _sizes(inputs)}))
        elif tokenizer is not None and scored_vocab(inputs) is not None:
            out.append(_padded(inputs, tokenizer))
    return out


def from_evidence(exc: IdentityEvidence, inputs: IdentityInputs) -> Finding:
    """A kernel met an eval-set id beyond its vocabulary while running (``kernels/base.py``)."""
    return Finding("vocabulary", "invalid", "eval_set", exc.format_message(), RETOKENIZE,
                   {**exc.evidence, "role": exc.role})


CHECK = IdentityCheck("vocabulary", check, doc=__doc__ or "")
