"""The reference kernel of the tiny Llama example: the Hugging Face transformers implementation in
fp32, loaded from ``model/`` — the "training kernel" the vLLM serving kernel is compared against.

``build()`` returns an nn.Module whose ``forward(input_ids [B, T])`` returns logits [B, T, V] (what
`kind: torch` expects). The directory can be overridden with ``PROMOTE_TINY_LLAMA_DIR`` so a test
can score a faulted copy with the same code.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

MODEL_DIR = Path(__file__).resolve().parent / "model"


class Logits(nn.Module):
    """Wrap ``LlamaForCausalLM`` so forward returns the logits tensor only (no cache, no loss)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False).logits


def build() -> nn.Module:
    from transformers import LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    # transformers draws a "Loading weights" tqdm bar on stderr, which lands in reports' logs and test
    # failures as \r-joined noise; loading 21 tensors from a local folder needs no progress bar.
    hf_logging.disable_progress_bar()
    folder = os.environ.get("PROMOTE_TINY_LLAMA_DIR") or str(MODEL_DIR)
    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return Logits(model).eval()
