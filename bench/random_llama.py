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

# build()'s default shape: the vocabulary dominates (the output layer is ~90 % of the forward at V = 32 000).
SHAPE_DEFAULTS = {"hidden": 64, "layers": 2, "intermediate": 128, "heads": 2}
# A small real model's proportions: the output layer is ~a quarter of the forward's multiply-adds at V = 32 000
# (8 layers of 4·h² attention + 3·h·2816 MLP = 103 M, against h·V = 33 M), as in Llama-3.2-1B (~21 % at
# V = 128 256) and Qwen2.5-0.5B (~28 % at V = 151 936); 136 M parameters at V = 32 000.
REAL_PROPORTIONS = {"hidden": 1024, "layers": 8, "intermediate": 2816, "heads": 16}
# Named shapes for --shape: the default, those proportions, and Llama-3.2-1B's own (hidden 2 048, 16 layers, MLP 8 192,
# 32 heads; multi-head attention here, where the real model groups its keys and values): 1.24 B parameters at
# V = 128 256, the output layer ~21 % of the forward.
SHAPES = {"default": SHAPE_DEFAULTS, "real": REAL_PROPORTIONS,
          "llama-1b": {"hidden": 2048, "layers": 16, "intermediate": 8192, "heads": 32}}


def add_shape_arguments(parser: argparse.ArgumentParser) -> None:
    """--shape, then --hidden, --layers, --intermediate and --heads over it, for the benchmarks that build models."""
    for name, what in (("hidden", "hidden size"), ("layers", "decoder layers"),
                       ("intermediate", "MLP intermediate size"), ("heads", "attention heads")):
        parser.add_argument(f"--{name}", type=int,
                            help=f"{what} (default: --shape's; {SHAPE_DEFAULTS[name]} in the default shape)")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="default",
                        help="a named shape to start from: default (hidden 64, 2 layers: the vocabulary dominates), "
                             f"real ({REAL_PROPORTIONS}: the output layer ~a quarter of the forward, as in small real "
                             "models), llama-1b (Llama-3.2-1B's sizes); the flags above override its parts")


def shape_from(args: argparse.Namespace) -> dict[str, int]:
    """The model shape the parsed arguments ask for."""
    base = SHAPES[getattr(args, "shape", None) or "default"]
    return {key: getattr(args, key, None) or value for key, value in base.items()}


def shape_suffix(shape: dict[str, int]) -> str:
    """``-h1024-l8-i2816-a16``: the parts of ``shape`` that differ from SHAPE_DEFAULTS ("" for none), for names."""
    tags = {"hidden": "h", "layers": "l", "intermediate": "i", "heads": "a"}
    return "".join(f"-{tags[key]}{value}" for key, value in shape.items() if value != SHAPE_DEFAULTS[key])


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
    add_shape_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--padded", type=int, default=0, help="rows beyond the tokenizer (default 0: none)")
    args = parser.parse_args()
    print(build(args.out, args.vocab, **shape_from(args), seed=args.seed, padded=args.padded))


if __name__ == "__main__":
    main()
