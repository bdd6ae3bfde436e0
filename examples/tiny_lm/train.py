"""Train the tiny byte-level LM on ``corpus/`` and write ``weights.safetensors``.

Run from anywhere (paths are relative to this file)::

    python examples/tiny_lm/train.py

Why it looks like this: the weights are committed, so training only has to be *reproducible*, not
fast to iterate on. Everything that could vary is pinned — the seed, the thread count (2), the
data order (windows are drawn from a seeded ``torch.Generator``) and the step count — so the
same torch version on the same kind of CPU produces the same file. It takes a few minutes on two
cores. Held-out text (``corpus/*_eval.txt``) is never trained on; ``make_eval.py`` builds the eval
set from it, and this script reports the loss on it so a regression is visible at once.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import model as tiny  # noqa: E402  (examples/ is not a package; model.py sits next to this file)

CORPUS = HERE / "corpus"
WEIGHTS = HERE / "weights.safetensors"

LANGS: dict[str, tuple[str, ...]] = {
    "latin": ("en", "fr", "de", "es"),
    "cyrillic": ("ru", "uk"),
    "cjk": ("zh", "ja"),
    "code": ("py",),
}
"""Script → languages; ``corpus/<lang>.txt`` is training text, ``corpus/<lang>_eval.txt`` held out."""

SEED = 1234
THREADS = 2
STEPS = 1600
BATCH = 16
"""Rows per step; each script gets BATCH / 4 rows, so the small scripts are not drowned out."""
SEQ = tiny.MAX_CONTEXT
LR = 3e-3
MIN_LR = 1e-4
WARMUP = 60
WEIGHT_DECAY = 0.1
GRAD_CLIP = 1.0


def read_bytes(name: str) -> torch.Tensor:
    """The UTF-8 bytes of ``corpus/<name>.txt`` as an int64 tensor."""
    return torch.tensor(list((CORPUS / f"{name}.txt").read_bytes()), dtype=torch.long)


def char_starts(data: torch.Tensor) -> torch.Tensor:
    """Offsets that begin a UTF-8 character (not a 10xxxxxx continuation byte) and leave a full window."""
    ok = (data & 0xC0) != 0x80
    ok[len(data) - SEQ :] = False
    return ok.nonzero().flatten()


def lr_at(step: int) -> float:
    """Linear warm-up, then cosine decay from LR to MIN_LR."""
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    progress = (step - WARMUP) / max(STEPS - WARMUP, 1)
    return MIN_LR + 0.5 * (LR - MIN_LR) * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def mean_loss(net: torch.nn.Module, data: torch.Tensor) -> float:
    """Mean next-byte cross-entropy (nats) over ``data`` cut into consecutive windows of SEQ + 1 bytes."""
    net.eval()
    total, count = 0.0, 0
    for start in range(0, max(len(data) - 1, 1), SEQ):
        chunk = data[start : start + SEQ + 1]
        if len(chunk) < 2:
            break
        logits = net(chunk[None, :-1])
        total += F.cross_entropy(logits[0], chunk[1:], reduction="sum").item()
        count += len(chunk) - 1
    return total / count


def report(net: torch.nn.Module, train: dict[str, torch.Tensor], held: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per-script train and held-out loss; prints a table and returns the held-out values."""
    out = {}
    for script, langs in LANGS.items():
        tr = sum(mean_loss(net, train[lang]) * len(train[lang]) for lang in langs) / sum(len(train[x]) for x in langs)
        ho = sum(mean_loss(net, held[lang]) * len(held[lang]) for lang in langs) / sum(len(held[x]) for x in langs)
        out[script] = ho
        print(f"  {script:<9} train {tr:.3f}  held-out {ho:.3f}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS, help="where to write the safetensors file")
    parser.add_argument("--eval-every", type=int, default=0, help="print held-out loss every N steps (0: only at end)")
    args = parser.parse_args(argv)

    torch.manual_seed(SEED)
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)

    train = {lang: read_bytes(lang) for langs in LANGS.values() for lang in langs}
    held = {lang: read_bytes(f"{lang}_eval") for langs in LANGS.values() for lang in langs}
    starts = {lang: char_starts(data) for lang, data in train.items()}
    # Within a script, pick a language in proportion to how much text it has.
    weights = {
        script: torch.tensor([float(len(train[lang])) for lang in langs]) for script, langs in LANGS.items()
    }

    net = tiny.build()
    n_params = sum(p.numel() for p in net.parameters())
    print(f"params {n_params:,}; train bytes {sum(len(d) for d in train.values()):,}; "
          f"held-out bytes {sum(len(d) for d in held.values()):,}")

    decay = [p for n, p in net.named_parameters() if p.dim() >= 2 and "emb" not in n]
    no_decay = [p for n, p in net.named_parameters() if not (p.dim() >= 2 and "emb" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
        lr=LR,
        betas=(0.9, 0.95),
    )
    gen = torch.Generator().manual_seed(SEED)
    rows_per_script = BATCH // len(LANGS)

    began = time.perf_counter()
    for step in range(STEPS):
        rows = []
        for script, langs in LANGS.items():
            picks = torch.multinomial(weights[script], rows_per_script, replacement=True, generator=gen)
            for i in picks.tolist():
                lang = langs[i]
                s = starts[lang][torch.randint(len(starts[lang]), (1,), generator=gen)].item()
                rows.append(train[lang][s : s + SEQ + 1])
        batch = torch.stack(rows)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        net.train()
        logits = net(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, tiny.VOCAB_SIZE), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), GRAD_CLIP)
        opt.step()
        if step % 50 == 0 or step == STEPS - 1:
            print(f"step {step:4d}  loss {loss.item():.3f}  lr {lr_at(step):.2e}  {time.perf_counter() - began:6.1f} s",
                  flush=True)
        if args.eval_every and step and step % args.eval_every == 0:
            report(net, train, held)

    elapsed = time.perf_counter() - began
    print(f"trained {STEPS} steps in {elapsed:.1f} s; final losses (nats/byte):")
    report(net, train, held)

    save(net.state_dict(), args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    return 0


def save(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write fp32, contiguous tensors with one metadata entry.

    One entry only: safetensors keeps metadata in a hash map, so several keys could be written in a
    different order on each run, and the file would not be byte-for-byte reproducible.
    """
    from safetensors.torch import save_file

    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in state.items()}
    save_file(tensors, str(path), metadata={"about": f"tiny_lm, train.py seed {SEED}, {STEPS} steps"})


if __name__ == "__main__":
    raise SystemExit(main())
