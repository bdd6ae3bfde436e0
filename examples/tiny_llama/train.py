"""Build the tiny Llama example: a byte-level BPE tokenizer and a 2-layer ``LlamaForCausalLM``
trained for a few seconds on the repository's own docs, saved as a Hugging Face model directory.

Why this shape: vLLM's CPU attention needs head_dim >= 32 (docs/runtime.md), the weights must stay
under 2 MB to ship in the repository, and the model must be a real architecture a serving engine
loads unmodified, so the fp32 transformers reference and the vLLM candidate run identical weights.
The corpus is text already in the repository (docs/*.md, README.md), so the build needs no download.

Run: python examples/tiny_llama/train.py   (writes examples/tiny_llama/model/, ~1 min on 2 cores)
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = HERE / "model"
VOCAB = 512
SEQ = 64
STEPS = 300
HELD_OUT = 0.1  # the last 10 % of the corpus is kept for the eval set (make_eval.py)


def corpus() -> str:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return "\n\n".join(f.read_text(encoding="utf-8") for f in files)


def split(text: str) -> tuple[str, str]:
    cut = int(len(text) * (1 - HELD_OUT))
    return text[:cut], text[cut:]


def build_tokenizer(text: str):  # noqa: ANN201 - transformers' fast tokenizer
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([text], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")


def main() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    random.seed(0)
    torch.set_num_threads(1)
    train_text, _ = split(corpus())
    tokenizer = build_tokenizer(train_text)
    ids = torch.tensor(tokenizer(train_text)["input_ids"], dtype=torch.long)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=0, eos_token_id=1)
    model = LlamaForCausalLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(STEPS):
        starts = torch.randint(0, len(ids) - SEQ - 1, (16,))
        batch = torch.stack([ids[s : s + SEQ] for s in starts])
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == STEPS - 1:
            print(f"step {step} loss {loss.item():.3f}")
    model.save_pretrained(OUT)
    tokenizer.save_pretrained(OUT)
    size = (OUT / "model.safetensors").stat().st_size
    print(f"wrote {OUT} ({size / 1e6:.2f} MB of weights, {sum(p.numel() for p in model.parameters())} params)")


if __name__ == "__main__":
    main()
