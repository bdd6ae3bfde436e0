"""The request log `promote watch` tails for shadow numerics: recent prompts as eval-set samples.

Format (docs/watch.md, "Request log"): JSONL, one served request a line, appended by the serving side::

    {"input_ids": [1, 15043, 3186], "time": 1765000000.5, "id": "req-81f3", "tags": {"route": "chat"}}

``input_ids`` (non-empty list of token ids) is required; ``time`` (Unix seconds), ``id`` (string) and
``tags`` (string → string) are optional. Unknown keys are ignored (a serving log may carry more).

The file is written by another process and is untrusted: only a regular file is opened, only its last
``tail_bytes`` are read (so a huge log costs one bounded read per window), a line cut by the tail or
still being written (no newline yet) is dropped, and a line that is too long, not JSON or malformed is
skipped and counted — the counts go into the window's evidence. Having no usable prompt is not an
error here: the window then has missing data, which ``window.py`` judges as a bad window.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promote.bounded import open_regular
from promote.data.jsonl import is_token_id
from promote.data.samples import EvalSet, Sample

MAX_LINE_BYTES = 1024 * 1024
MAX_TAG_CHARS = 200
POOL = 8  # usable lines parsed per sampled prompt, newest first


@dataclass(frozen=True)
class RequestLogSpec:
    path: Path
    display_path: str
    sample: int = 32  # prompts scored per window
    tail_bytes: int = 4 * 1024 * 1024
    max_age_s: float | None = None  # only requests this recent (needs `time`); None: any in the tail
    max_prompt_tokens: int = 4096
    seed: int = 0


@dataclass
class Tail:
    """What one read of the log gave: the usable prompts and why other lines were skipped."""

    samples: list[Sample] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    read_bytes: int = 0
    pool: int = 0  # usable lines the sample was drawn from
    problem: str | None = None  # the log could not be read at all

    def evidence(self) -> dict[str, Any]:
        return {"usable": len(self.samples), "pool": self.pool, "skipped": dict(sorted(self.skipped.items())),
                "read_bytes": self.read_bytes, **({"problem": self.problem} if self.problem else {})}


def _read_tail(path: Path, tail_bytes: int) -> tuple[bytes, int]:
    """The last ``tail_bytes`` of the regular file ``path`` and the offset they start at."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(fd).st_size
        start = max(0, size - tail_bytes)
        handle.seek(start)
        return handle.read(min(size, tail_bytes)), start


def _sample(record: Any, offset: int, spec: RequestLogSpec, now: float) -> Sample | str:
    """The line's prompt as a sample, or the reason it is skipped."""
    if not isinstance(record, dict):
        return "not_an_object"
    ids = record.get("input_ids")
    if not isinstance(ids, list) or not ids or not all(is_token_id(t) for t in ids):
        return "bad_input_ids"
    if len(ids) > spec.max_prompt_tokens:
        return "too_long"
    when = record.get("time")
    if spec.max_age_s is not None:
        if not isinstance(when, int | float) or isinstance(when, bool) or when != when:
            return "no_time"
        if now - when > spec.max_age_s:
            return "too_old"
    tags = record.get("tags", {})
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        return "bad_tags"
    tags = {k[:MAX_TAG_CHARS]: v[:MAX_TAG_CHARS] for k, v in list(tags.items())[:16]}
    if isinstance(record.get("id"), str):
        tags["request_id"] = record["id"][:MAX_TAG_CHARS]
    return Sample(id=f"req@{offset}", input_ids=tuple(ids), tags=tags, line=0)


def _offsets(lines: list[bytes], start: int) -> list[int]:
    out, offset = [], start
    for raw in lines:
        out.append(offset)
        offset += len(raw) + 1
    return out


def _parse_line(raw: bytes, here: int, spec: RequestLogSpec, now: float) -> Sample | str | None:
    """The line's sample, the reason it is skipped, or None for a blank line."""
    if not raw.strip():
        return None
    if len(raw) > MAX_LINE_BYTES:
        return "too_long"
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):
        return "not_json"
    return _sample(record, here, spec, now)


def read_requests(spec: RequestLogSpec, now: float, window: int) -> Tail:
    """Up to ``spec.sample`` recent prompts from the log, with the counts of skipped lines: lines are read
    newest first until ``POOL × sample`` usable ones are found (the parse cost is bounded by the sample,
    not the tail), and a seeded random sample of that pool is returned in log order."""
    out = Tail()
    try:
        data, start = _read_tail(spec.path, spec.tail_bytes)
    except OSError as exc:
        out.problem = f"{spec.display_path}: cannot read the request log: {exc.strerror or exc}"
        return out
    out.read_bytes = len(data)
    lines = data.split(b"\n")
    if lines.pop():  # after the final newline: empty, or a line still being written
        out.skipped["incomplete"] += 1
    if start > 0 and lines:
        lines[0] = b""  # cut by the tail: not a whole line
        out.skipped["cut_by_tail"] += 1
    offsets = _offsets(lines, start)
    pool: list[Sample] = []
    for index in range(len(lines) - 1, -1, -1):
        if len(pool) >= POOL * spec.sample:
            break
        got = _parse_line(lines[index], offsets[index], spec, now)
        if isinstance(got, str):
            out.skipped[got] += 1
        elif got is not None:
            pool.append(got)
    pool.reverse()
    out.pool = len(pool)
    rng = random.Random(spec.seed * 1_000_003 + window)
    keep = sorted(rng.sample(range(len(pool)), min(spec.sample, len(pool))))
    out.samples = [pool[i] for i in keep]
    return out


def as_evalset(samples: list[Sample], display: str, path: Path) -> EvalSet:
    """The window's prompts as the in-memory eval set the stages read."""
    return EvalSet(path=path, display_path=display, samples=tuple(samples))


def from_evalset(evalset: EvalSet, sample: int, seed: int, window: int) -> list[Sample]:
    """Without a request log: a seeded sample of the contract's eval set, a different one each window."""
    rng = random.Random(seed * 1_000_003 + window)
    keep = sorted(rng.sample(range(len(evalset.samples)), min(sample, len(evalset.samples))))
    return [evalset.samples[i] for i in keep]
