"""Fault injectors for the slice-stage demonstration (`slices.yaml`): candidates that are wrong on one
slice only, so the aggregate numerics clauses pass and only a per-slice test can catch them.

`build_cyrillic_fault` reproduces the shape of a real slice bug (a kernel path taken only for some
inputs, e.g. a dispatch that picks a different fused softmax/scale kernel for some byte patterns):
for every sequence that contains a Cyrillic lead byte (0xD0 or 0xD1 in UTF-8), the top logit at each
position is raised by `FAULT_BOOST` nats. The argmax never changes (accuracy is blind to it) and the
per-position logit change is small, but the distributions of one script in four are sharpened.
Weights and state-dict keys are those of `model.py`, so `weights.safetensors` loads unchanged.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

_spec = importlib.util.spec_from_file_location("tiny_lm_model", Path(__file__).with_name("model.py"))
assert _spec is not None and _spec.loader is not None
_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_model)

CYRILLIC_LEAD_BYTES = (0xD0, 0xD1)
FAULT_BOOST = 0.12
"""Extra logit (nats) on the top token on the faulty slice: small enough that no aggregate clause sees it."""


class CyrillicFault(_model.TinyLM):
    """TinyLM whose top logit is boosted on sequences containing Cyrillic."""

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        logits = super().forward(input_ids)
        hit = torch.isin(input_ids, torch.tensor(CYRILLIC_LEAD_BYTES, device=input_ids.device)).any(dim=1)
        if not bool(hit.any()):
            return logits
        top = torch.zeros_like(logits).scatter_(-1, logits.argmax(dim=-1, keepdim=True), FAULT_BOOST)
        return logits + top * hit[:, None, None].to(logits.dtype)


def build_cyrillic_fault() -> CyrillicFault:
    """Factory for `slices.yaml`'s faulty candidate (`faults.py:build_cyrillic_fault`)."""
    return CyrillicFault()
