"""Write eval.jsonl: held-out windows of the corpus (the last 10 % train.py never saw), tokenized
with the example's own tokenizer, tagged by which document part they come from.

Short sequences keep full-vocabulary scoring through HTTP small (V × positions floats per request).
Run: python examples/tiny_llama/make_eval.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLES = 32
LENGTH = 48


def main() -> None:
    from train import corpus, split  # the same held-out split train.py made
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(HERE / "model" / "tokenizer.json"))
    _, held_out = split(corpus())
    ids = tokenizer(held_out)["input_ids"]
    step = max(LENGTH, (len(ids) - LENGTH) // SAMPLES)
    with open(HERE / "eval.jsonl", "w", encoding="utf-8") as out:
        for i in range(SAMPLES):
            window = ids[i * step : i * step + LENGTH - (i % 4) * 8]
            part = "first-half" if i < SAMPLES // 2 else "second-half"
            out.write(json.dumps({"id": f"doc-{i:03d}", "input_ids": window, "tags": {"part": part}}) + "\n")


if __name__ == "__main__":
    main()
