"""Build ``eval.jsonl`` (the example's eval set) from the held-out text in ``corpus/*_eval.txt``.

Run from anywhere (paths are relative to this file)::

    python examples/tiny_lm/make_eval.py

Why it looks like this: the eval set is what `promote` slices by tag and by length, so it must
cover every script (``tags.script``: latin, cyrillic, cjk, code; ``tags.lang``: en, fr, de, es,
ru, uk, zh, ja, py) about equally and spread its lengths from a few bytes to the model's full
context of 256, with plenty of long samples for a "long context" slice. Samples only come from the
held-out files, which ``train.py`` never reads, so the loss on them measures generalisation.

Each sample starts where a sentence (prose) or a non-blank line (code) starts and is cut, at a
character boundary, to a target length in bytes drawn from a seeded RNG; so the file is the same
on every run. Windows of one language may overlap: there is less held-out text than samples × length.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
OUT = HERE / "eval.jsonl"

SEED = 20240611
MAX_BYTES = 256
"""The model's context; no sample may be longer."""
MIN_BYTES = 16
"""Shortest sample kept (a cut that strips a trailing space can fall below the target)."""
PER_SCRIPT = 80
SCRIPTS: dict[str, tuple[str, ...]] = {
    "latin": ("en", "fr", "de", "es"),
    "cyrillic": ("ru", "uk"),
    "cjk": ("zh", "ja"),
    "code": ("py",),
}
LENGTH_BANDS = ((16, 63, 0.30), (64, 127, 0.25), (128, 199, 0.20), (200, MAX_BYTES, 0.25))
"""(lowest, highest, share) of target lengths in bytes: a quarter of the samples are ≥ 200 bytes."""

_PROSE_BREAK = re.compile(r"[.!?]\s+|[。！？]\s*|\n+")
_CODE_BREAK = re.compile(r"\n+")


def unit_starts(text: str, lang: str) -> list[int]:
    """Character offsets where a sample may begin: sentence starts (prose) or non-blank line starts (code)."""
    pattern = _CODE_BREAK if lang == "py" else _PROSE_BREAK
    starts = [0] + [m.end() for m in pattern.finditer(text)]
    return sorted({s for s in starts if s < len(text) and not text[s].isspace()})


def cut(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding fits in ``limit`` bytes (whole characters only)."""
    encoded = text.encode("utf-8")[:limit]
    return encoded.decode("utf-8", errors="ignore").rstrip(" ")


def target_length(rng: random.Random) -> int:
    r = rng.random()
    for low, high, share in LENGTH_BANDS:
        if r < share:
            return rng.randint(low, high)
        r -= share
    return rng.randint(LENGTH_BANDS[-1][0], LENGTH_BANDS[-1][1])


def samples_for(script: str, rng: random.Random) -> list[dict[str, object]]:
    """``PER_SCRIPT`` samples, languages taken in turn, no two with the same text."""
    langs = SCRIPTS[script]
    texts = {lang: (CORPUS / f"{lang}_eval.txt").read_text(encoding="utf-8") for lang in langs}
    starts = {lang: unit_starts(texts[lang], lang) for lang in langs}
    seen: set[str] = set()
    out: list[dict[str, object]] = []
    while len(out) < PER_SCRIPT:
        lang = langs[len(out) % len(langs)]
        text = texts[lang]
        want = target_length(rng)
        # Prefer starts that leave enough text for the target length; fall back to any start.
        roomy = [s for s in starts[lang] if len(text[s:].encode("utf-8")) >= want]
        start = rng.choice(roomy or starts[lang])
        piece = cut(text[start:], want)
        if len(piece.encode("utf-8")) < MIN_BYTES or piece in seen:
            continue
        seen.add(piece)
        out.append({
            "id": f"{script}-{len(out) + 1:04d}",
            "input_ids": list(piece.encode("utf-8")),
            "tags": {"script": script, "lang": lang},
            "text": piece,
        })
    return out


def build_records() -> list[dict[str, object]]:
    """All samples, script by script, in file order (one seeded RNG, so the order matters)."""
    rng = random.Random(SEED)
    return [record for script in SCRIPTS for record in samples_for(script, rng)]


def render(records: list[dict[str, object]]) -> str:
    """The JSONL text: one object per line, UTF-8 kept readable (``ensure_ascii=False``)."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def main() -> int:
    records = build_records()
    OUT.write_text(render(records), encoding="utf-8")
    lengths = sorted(len(r["input_ids"]) for r in records)  # type: ignore[arg-type]
    print(f"wrote {OUT} ({len(records)} samples; bytes min {lengths[0]}, "
          f"median {lengths[len(lengths) // 2]}, max {lengths[-1]}; ≥200: {sum(n >= 200 for n in lengths)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
