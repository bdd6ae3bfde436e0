"""Eval-set reading and batching (DESIGN.md §4 "Eval set").

The JSONL file is read once and checked line by line, so a bad line is reported with its number.
Token lists are small; model outputs (the large part) are never held whole — see ``stages/``.
This module stays free of torch so ``promote validate`` can use it cheaply.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from promote.errors import UsageError

TASK_FIELDS = ("label", "target", "reward", "score")
_ALLOWED_KEYS = {"id", "input_ids", "tags", "text", *TASK_FIELDS}


@dataclass(frozen=True)
class Sample:
    """One eval sample; ``line`` is its 1-based line in the data file (for messages)."""

    id: str
    input_ids: tuple[int, ...]
    tags: dict[str, str]
    line: int
    task: dict[str, Any] = field(default_factory=dict)

    @property
    def scored_positions(self) -> int:
        """Causal LM: position t predicts input_ids[t+1], so a sequence of length L scores L−1."""
        return max(len(self.input_ids) - 1, 0)


@dataclass(frozen=True)
class EvalSet:
    path: Path
    display_path: str
    samples: tuple[Sample, ...]
    limit: int | None = None  # `data.limit`: the set may be a prefix of the file (records may hold more ids)

    @property
    def positions(self) -> int:
        return sum(s.scored_positions for s in self.samples)


@dataclass(frozen=True)
class Batch:
    """A right-padded batch: ``input_ids`` int64 [B, T], ``lengths`` int64 [B]."""

    samples: tuple[Sample, ...]
    input_ids: np.ndarray
    lengths: np.ndarray

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.samples]

    def scored_mask(self) -> np.ndarray:
        """bool [B, T]: True at positions that are scored (t < length − 1)."""
        t = np.arange(self.input_ids.shape[1])
        return t[None, :] < (self.lengths[:, None] - 1)


def _fail(display: str, line: int, message: str) -> UsageError:
    return UsageError(f"{display}:{line}: {message}")


def _parse_sample(record: Any, display: str, line: int) -> Sample:
    if not isinstance(record, dict):
        raise _fail(display, line, f"expected a JSON object per line, got {type(record).__name__}")
    unknown = sorted(set(record) - _ALLOWED_KEYS)
    if unknown:
        raise _fail(display, line, f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_ALLOWED_KEYS))}")
    sample_id = record.get("id")
    if not isinstance(sample_id, str) or not sample_id:
        raise _fail(display, line, "`id` must be a non-empty string (each sample needs a unique id)")
    ids = record.get("input_ids")
    if not isinstance(ids, list) or not ids:
        raise _fail(display, line, f"sample `{sample_id}`: `input_ids` must be a non-empty list of integers")
    if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in ids):
        raise _fail(display, line, f"sample `{sample_id}`: `input_ids` must hold non-negative integers only")
    tags = record.get("tags", {})
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise _fail(display, line, f"sample `{sample_id}`: `tags` must map strings to strings")
    task = {k: record[k] for k in TASK_FIELDS if k in record}
    return Sample(id=sample_id, input_ids=tuple(ids), tags=dict(tags), line=line, task=task)


def read_jsonl(path: Path, *, display_path: str | None = None, limit: int | None = None) -> EvalSet:
    """Read and check a JSONL eval set; every problem names the file and line.

    Raises:
        UsageError: unreadable file, malformed JSON, bad fields, duplicate ids, no samples.
    """
    display = display_path or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{display}: data file not found; fix `data.path` in the contract") from None
    except IsADirectoryError:
        raise UsageError(f"{display}: is a directory; `data.path` must name a JSONL file") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{display}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    samples: list[Sample] = []
    first_line: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise _fail(display, number, f"malformed JSON at column {exc.colno}: {exc.msg}") from None
        sample = _parse_sample(record, display, number)
        if sample.id in first_line:
            raise _fail(display, number, f"duplicate id `{sample.id}` (first at line {first_line[sample.id]})")
        first_line[sample.id] = number
        samples.append(sample)
        if limit is not None and len(samples) >= limit:
            break
    if not samples:
        raise UsageError(f"{display}: the eval set has no samples")
    return EvalSet(path=path, display_path=display, samples=tuple(samples), limit=limit)


def batches(samples: tuple[Sample, ...] | list[Sample], batch_size: int, *, pad_id: int = 0) -> Iterator[Batch]:
    """Right-padded batches in file order (reproducible; padding is ignored via ``scored_mask``)."""
    for start in range(0, len(samples), batch_size):
        chunk = tuple(samples[start : start + batch_size])
        lengths = np.array([len(s.input_ids) for s in chunk], dtype=np.int64)
        ids = np.full((len(chunk), int(lengths.max())), pad_id, dtype=np.int64)
        for row, sample in enumerate(chunk):
            ids[row, : len(sample.input_ids)] = sample.input_ids
        yield Batch(samples=chunk, input_ids=ids, lengths=lengths)
