"""A tiny two-head MLP: the non-LM example (`data.task: tensor`).

``forward(x)`` takes features x [B, 16] and returns a dict, so promote compares its outputs by key
path: ``scores`` (class scores [B, 4]), ``embedding`` (an L2-normalised vector [B, 8]) and
``hidden_states[0]``, ``hidden_states[1]`` (the two hidden activations [B, 32]).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812


class TwoHeadMLP(nn.Module):
    def __init__(self, d_in: int = 16, d_hidden: int = 32, n_classes: int = 4, d_embed: int = 8) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.fc2 = nn.Linear(d_hidden, d_hidden)
        self.scores = nn.Linear(d_hidden, n_classes)
        self.embed = nn.Linear(d_hidden, d_embed)

    def forward(self, x: torch.Tensor) -> dict[str, object]:
        h1 = F.gelu(self.fc1(x))
        h2 = F.gelu(self.fc2(h1))
        return {
            "scores": self.scores(h2),
            "embedding": F.normalize(self.embed(h2), dim=-1),
            "hidden_states": (h1, h2),
        }


def build() -> TwoHeadMLP:
    """Factory named in contract.yaml; weights come from weights.safetensors."""
    return TwoHeadMLP()
