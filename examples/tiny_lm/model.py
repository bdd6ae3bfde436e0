"""A tiny byte-level causal transformer LM: the embedded example model for `promote`.

Why this shape: the example has to ship in the repository (weights ≤ 2 MB), run on a laptop CPU in
seconds, and still behave like a real language model, so that comparing its fp32 reference kernel
with a bf16 candidate exercises the same numerics as a large model does (LayerNorm, softmax
attention, GELU MLPs, a wide output projection). The vocabulary is the 256 byte values of UTF-8 text,
so no tokenizer file is needed and any string encodes as ``list(text.encode("utf-8"))``.

Contract with callers (`promote` builds it through ``model.py:build``):

* ``build()`` takes no arguments; the configuration lives in the module constants below, so the
  safetensors file and the code cannot disagree about shapes.
* ``forward(input_ids)`` takes int64 ``[B, T]`` byte ids (``T ≤ MAX_CONTEXT``) and returns float
  logits ``[B, T, VOCAB_SIZE]``; nothing else (no loss, no cache, no tuple).
* Right padding is harmless: attention is causal and every other op works per position, so the
  logits at position ``t`` depend only on ``input_ids[:, : t + 1]`` (pad values never matter;
  a different ``[B, T]`` shape can still move fp32 logits by ~1e-5 through kernel blocking).
* Submodules have stable names (``tok_emb``, ``pos_emb``, ``blocks.N.ln_1``, ``blocks.N.attn``,
  ``blocks.N.ln_2``, ``blocks.N.mlp``, ``ln_f``, ``head``) so per-module outputs can be hooked.
* Evaluation mode is deterministic: dropout (the only randomness) is off after ``.eval()``, so the
  same input gives bitwise the same logits on the same machine and thread count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VOCAB_SIZE = 256
"""One id per byte value; text is fed as its UTF-8 bytes."""
MAX_CONTEXT = 256
"""Longest sequence the learned positional embedding covers."""
D_MODEL = 96
N_LAYERS = 4
N_HEADS = 4
D_MLP = 3 * D_MODEL
"""MLP width: 3× instead of the usual 4× keeps four layers inside the 2 MB weight budget."""
DROPOUT = 0.1
"""Residual and embedding dropout, active only in training mode; the corpus is small enough to memorise."""


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention from plain ops (one fused QKV projection + SDPA).

    ``is_causal=True`` masks every key after the query, which is what makes right padding
    harmless: pad bytes sit after all real positions, so no real position can attend to them.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        # [B, T, C] -> [B, H, T, C/H]
        q = q.view(b, t, self.n_heads, c // self.n_heads).transpose(1, 2)
        k = k.view(b, t, self.n_heads, c // self.n_heads).transpose(1, 2)
        v = v.view(b, t, self.n_heads, c // self.n_heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        return self.drop(self.proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward block: Linear → GELU → Linear."""

    def __init__(self, d_model: int, d_hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(d_model, d_hidden)
        self.proj = nn.Linear(d_hidden, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm GPT block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``."""

    def __init__(self, d_model: int, n_heads: int, d_mlp: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, d_mlp, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TinyLM(nn.Module):
    """Byte-level GPT: token + learned position embeddings, ``N_LAYERS`` blocks, final LN, linear head.

    The head is a separate ``nn.Linear`` (not tied to ``tok_emb``) so that ``state_dict()`` has no
    shared tensors and the safetensors file loads with ``strict=True`` as is.
    """

    def __init__(
        self,
        *,
        vocab_size: int = VOCAB_SIZE,
        max_context: int = MAX_CONTEXT,
        d_model: int = D_MODEL,
        n_layers: int = N_LAYERS,
        n_heads: int = N_HEADS,
        d_mlp: int = D_MLP,
        dropout: float = DROPOUT,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.max_context = max_context
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_context, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_mlp, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """GPT-2 style init (N(0, 0.02), zero biases); only matters before training."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, T, vocab_size]`` for byte ids ``[B, T]``; position t predicts byte t + 1."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, time], got shape {tuple(input_ids.shape)}")
        t = input_ids.shape[1]
        if t > self.max_context:
            raise ValueError(f"sequence length {t} exceeds the model's context of {self.max_context} bytes")
        positions = torch.arange(t, device=input_ids.device)
        x = self.drop(self.tok_emb(input_ids) + self.pos_emb(positions)[None, :, :])
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def build() -> TinyLM:
    """Factory used by `promote` (``model.py:build``): a fresh, randomly initialised model.

    Weights come from ``weights.safetensors`` next to this file; the caller loads them.
    """
    return TinyLM()


def encode(text: str) -> list[int]:
    """Byte ids of ``text`` (its UTF-8 encoding)."""
    return list(text.encode("utf-8"))


__all__ = ["VOCAB_SIZE", "MAX_CONTEXT", "D_MODEL", "N_LAYERS", "N_HEADS", "D_MLP", "TinyLM", "build", "encode"]
