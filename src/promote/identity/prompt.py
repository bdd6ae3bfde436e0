"""Identity check ``prompt``: the ids each side actually scored are the eval set's.

A local kernel (torch, onnx) scores exactly the ids it is given; records are joined to the eval set by
id and their ``input_ids`` must equal it (``kernels/records.py``). A server may not: one that prepends a
BOS or applies a chat template scores other ids, and every position is then compared with the wrong
one. Where a server reports what it scored (the ``openai`` echo, SGLang's input tokens, TGI's prefill,
vLLM's ``prompt_token_ids``) the kernel records it (``SideFacts.scored_ids``) or stops at the first
mismatch (``kernels.base.IdentityEvidence``), and this check names the sample, what differs and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence

from promote.findings import Finding
from promote.identity.api import IdentityCheck, IdentityInputs, SideFacts
from promote.kernels.base import IdentityEvidence

FIX = ("send the eval set's ids as they are: serve without adding special tokens (vLLM, SGLang: "
       "`add_special_tokens: false`; no chat template on a completions route), or tokenize the eval set the way "
       "the server does (with its BOS and template) so both sides score the same ids")


def diagnose(sent: Sequence[int], scored: Sequence[int] | None) -> str:
    """What the server did to the prompt, in words (a BOS prepended, a template around it, re-tokenized)."""
    if scored is None:
        return "it scored a prompt of another length (the ids it scored were not reported)"
    sent, scored = list(sent), list(scored)
    extra = len(scored) - len(sent)
    if extra > 0 and scored[extra:] == sent:
        return f"it prepended {extra} id(s) {scored[:extra][:8]} (a BOS token)" if extra <= 2 else \
            f"it prepended {extra} ids (a template)"
    if extra > 0 and any(scored[i:i + len(sent)] == sent for i in range(extra + 1)):
        return f"it wrapped the prompt in {extra} extra ids (a chat template)"
    first = next((i for i, (a, b) in enumerate(zip(sent, scored, strict=False)) if a != b), min(len(sent), len(scored)))
    return f"it scored other ids from position {first} (the prompt was re-tokenized; token mismatch)"


def _finding(side: SideFacts | None, role: str, label: str, sample: str, sent: Sequence[int],
             scored: Sequence[int] | None, count: int = 1, said: str = "") -> Finding:
    more = f" (and {count - 1} more sample(s))" if count > 1 else ""
    return Finding("prompt", "invalid", role,
                   f"{label} did not score the eval set's ids for sample `{sample}`{more}: {diagnose(sent, scored)}; "
                   f"sent {len(sent)} ids {list(sent)[:8]}…, scored "
                   + (f"{len(scored)} ids {list(scored)[:8]}…" if scored is not None else "another prompt")
                   + (f" (the answer: {said})" if said else ""),
                   FIX, {"sample": sample, "sent": list(sent)[:64], "scored": None if scored is None else
                         list(scored)[:64], "samples": count})


def check(inputs: IdentityInputs) -> list[Finding]:
    """Each side's reported scored ids against the eval set's, one finding per side naming the first sample."""
    if inputs.evalset is None:
        return []
    by_id = {s.id: s for s in inputs.evalset.samples}
    out = []
    for side in inputs.sides():
        differ = [(sid, ids) for sid, ids in side.scored_ids.items()
                  if sid in by_id and list(ids) != [int(i) for i in by_id[sid].input_ids]]
        if differ:
            sid, ids = differ[0]
            out.append(_finding(side, side.role, side.label, sid, [int(i) for i in by_id[sid].input_ids], ids,
                                len(differ)))
    return out


def from_evidence(exc: IdentityEvidence, inputs: IdentityInputs) -> Finding:
    """A server scored other ids than it was sent (``kernels/openai_kernel.py``)."""
    side = inputs.side(exc.role)
    ev = exc.evidence
    return _finding(side, exc.role, side.label, str(ev.get("sample")), ev.get("sent") or [], ev.get("scored"),
                    said=str(ev.get("said") or ""))


CHECK = IdentityCheck("prompt", check, doc=__doc__ or "")
