"""Make the RL rollout example: the tiny LM samples responses with one kernel (the inference
engine) and the fp32 kernel (the trainer) re-scores them; both sides' log-probs of the sampled tokens
are written as a rollout dump and as sampled-token records (docs/rl.md).

Run from anywhere: ``python examples/rl_rollouts/make_rollouts.py [--out DIR] [--samples N]``.
Deterministic (fixed seeds, one thread): it regenerates the shipped ``rollouts/`` directory. Variants:

* ``honest``: the engine samples at temperature 1 with bf16 autocast; the trainer is fp32.
* ``planted-temp``: the same engine, but its sampler applies temperature 0.97 (a classic silent
  mismatch: argmax unchanged, every log-prob shifted) and reports the tempered log-probs.
* ``planted-late``: the engine's logits get a perturbation from response position 32 on (a rope or
  KV-cache bug on late positions), so only long responses drift.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
TINY = HERE.parent / "tiny_lm"
sys.path.insert(0, str(TINY))
sys.path.insert(0, str(HERE.parents[1] / "src"))

from model import build  # noqa: E402  (examples/tiny_lm/model.py)

from promote.rl import rollouts_to_records  # noqa: E402

PROMPT_LEN = 24
RESPONSE_LEN = 64
LATE_FROM = 32
VARIANTS = {"honest": (1.0, False), "planted-temp": (0.97, False), "planted-late": (1.0, True)}


def _model() -> torch.nn.Module:
    model = build()
    model.load_state_dict(load_file(str(TINY / "weights.safetensors")))
    return model.eval()


def _prompts(count: int) -> list[tuple[str, list[int], str]]:
    rows = [json.loads(line) for line in (TINY / "eval.jsonl").read_text(encoding="utf-8").splitlines()]
    # Every script in turn, so each tag value has rollouts.
    by_script: dict[str, list[dict]] = {}
    for row in rows:
        by_script.setdefault(row["tags"]["script"], []).append(row)
    long = {k: [r for r in v if len(r["input_ids"]) >= PROMPT_LEN] for k, v in by_script.items()}
    picked = [r for group in zip(*long.values(), strict=False) for r in group][:count]
    return [(r["id"], r["input_ids"][:PROMPT_LEN], r["tags"]["script"]) for r in picked]


@torch.no_grad()
def sample(model: torch.nn.Module, prompts: torch.Tensor, *, temperature: float, late: bool,
           seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The engine: bf16 autocast, multinomial sampling; returns (response ids, engine log-probs)."""
    gen = torch.Generator().manual_seed(seed)
    ids = prompts.clone()
    logps = []
    for step in range(RESPONSE_LEN):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(ids)[:, -1].float()
        if late and step >= LATE_FROM:  # planted: a position-dependent bug on late positions
            noise = torch.randn(logits.shape, generator=torch.Generator().manual_seed(seed + step))
            logits = logits + 0.4 * noise
        lp = torch.log_softmax(logits / temperature, dim=-1)
        token = torch.multinomial(lp.exp(), 1, generator=gen)
        logps.append(lp.gather(1, token)[:, 0])
        ids = torch.cat([ids, token], dim=1)
    return ids[:, prompts.shape[1]:], torch.stack(logps, dim=1)


@torch.no_grad()
def rescore(model: torch.nn.Module, prompts: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
    """The trainer: fp32 teacher-forced log-probs of the sampled response tokens."""
    ids = torch.cat([prompts, response], dim=1)
    lp = torch.log_softmax(model(ids).double(), dim=-1)
    p = prompts.shape[1]
    return lp[:, p - 1 : -1].gather(2, response[:, :, None])[:, :, 0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "rollouts")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = _model()
    picked = _prompts(args.samples)
    prompts = torch.tensor([p for _, p, _ in picked])
    for name in args.variants:
        temperature, late = VARIANTS[name]
        response, engine = sample(model, prompts, temperature=temperature, late=late, seed=1234)
        trainer = rescore(model, prompts, response)
        # Ragged lengths like real rollouts: the i-th response stops after 24 + (i·7 mod 41) tokens.
        out = args.out / name
        out.mkdir(parents=True, exist_ok=True)
        dump = out / "rollouts.jsonl"
        with dump.open("w", encoding="utf-8") as handle:
            for i, (rid, prompt, script) in enumerate(picked):
                n = 24 + (i * 7) % 41
                handle.write(json.dumps({
                    "id": f"{rid}-r", "prompt_ids": prompt, "response_ids": response[i, :n].tolist(),
                    "engine_logprobs": [round(float(x), 9) for x in engine[i, :n]],
                    "trainer_logprobs": [round(float(x), 9) for x in trainer[i, :n]],
                    "tags": {"script": script},
                }) + "\n")
        paths = rollouts_to_records(dump, out)
        print(f"{name}: {len(picked)} rollouts -> {', '.join(str(p.relative_to(args.out)) for p in paths.values())}")


if __name__ == "__main__":
    main()
