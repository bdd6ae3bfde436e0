"""Build a Llama-shaped model with random weights at a real vocabulary size, with no hub download.

Issue 22's benchmarks need real vocabularies (32 000, 128 256, 151 936) on a model whose forward is cheap,
so the vocabulary dominates: a small hidden size and two layers. The tokenizer files of the shipped tiny
Llama are copied beside the weights, its vocabulary grown to ``vocab`` entries (``<x512>``, ``<x513>``, ...:
tokens no merge produces, as a real tokenizer's rare ids), so vLLM can load the folder and every id is a
real row: promote's identity check drops rows beyond a tokenizer's ids from every metric (padded rows), and
a benchmark of V = 128 256 must compare 128 256 rows. ``--padded N`` leaves the last N rows padded instead.

Run: ``python bench/random_llama.py OUT_DIR --vocab 32000`` (prints the folder).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

TINY = Path(__file__).resolve().parents[1] / "examples" / "tiny_llama" / "model"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json")


def build(out: Path, vocab: int, *, hidden: int = 64, layers: int = 2, heads: int = 2,
          intermediate: int = 128, max_positions: int = 1024, seed: int = 0, padded: int = 0) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (fp32, seeded random init) + the tiny tokenizer grown
    to ``vocab - padded`` ids to ``out`` and return it. Same arguments, same bytes."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, head_dim=hidden // heads,
        max_position_embeddings=max_positions, bos_token_id=0, eos_token_id=1, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (TINY / name).exists():
            shutil.copyfile(TINY / name, out / name)
    grow_tokenizer(out / "tokenizer.json", vocab - padded)
    return out


def grow_tokenizer(path: Path, size: int) -> None:
    """Extend the BPE vocabulary of ``path`` with ``<xN>`` entries up to ``size`` ids (no merges: they decode
    but are never produced by encoding, which keeps the tiny tokenizer's behaviour on text)."""
    doc = json.loads(path.read_text())
    table = doc["model"]["vocab"]
    taken = len(table) + sum(1 for token in doc.get("added_tokens", []) if token["content"] not in table)
    for index in range(taken, size):
        table[f"<x{index}>"] = index
    path.write_text(json.dumps(doc, ensure_ascii=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--padded", type=int, default=0, help="rows beyond the tokenizer (default 0: none)")
    args = parser.parse_args()
    print(build(args.out, args.vocab, hidden=args.hidden, layers=args.layers, seed=args.seed, padded=args.padded))


if __name__ == "__main__":
    main()
