"""The eval set's types: samples, the set, and right-padded token batches (torch-free).

The leaf of the ``data`` package: readers (``jsonl.py``) build these, batching cuts them, kernels
and the pass engine consume them. Nothing here reads files.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One eval sample; ``line`` is its 1-based line in the data file (for messages)."""

    id: str
    input_ids: tuple[int, ...]
    tags: dict[str, str]
    line: int
    task: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)  # task tensor: name → ndarray or data.tensors.FileInput

    @property
    def scored_positions(self) -> int:
        """Causal LM: position t predicts input_ids[t+1], so a sequence of length L scores L−1."""
        return max(len(self.input_ids) - 1, 0)


@dataclass(frozen=True)
class EvalSet:
    path: Path
    display_path: str
    samples: tuple[Sample, ...]
    task: str = "causal-lm"
    inputs_file: Path | None = None
    limit: int | None = None  # `data.limit`: the set may be a prefix of the file (records may hold more ids)

    @property
    def positions(self) -> int:
        """Scored positions; for `task: tensor` each sample is one scored unit."""
        if self.task == "tensor":
            return len(self.samples)
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

    def first_token_beyond(self, vocab: int) -> tuple[Sample, int] | None:
        """The first (sample, position) whose token id is ≥ ``vocab``, padding excluded: scoring it
        would index past the logits, so the kernel check reports it by name instead."""
        t = np.arange(self.input_ids.shape[1])
        beyond = (self.input_ids >= vocab) & (t[None, :] < self.lengths[:, None])
        if not beyond.any():
            return None
        row, col = np.argwhere(beyond)[0]
        return self.samples[int(row)], int(col)

    def scored_mask(self) -> np.ndarray:
        """bool [B, T]: True at positions that are scored (t < length − 1)."""
        t = np.arange(self.input_ids.shape[1])
        return t[None, :] < (self.lengths[:, None] - 1)


def batches(samples: tuple[Sample, ...] | list[Sample], batch_size: int, *, pad_id: int = 0) -> Iterator[Batch]:
    """Right-padded batches in file order (reproducible; padding is ignored via ``scored_mask``)."""
    for start in range(0, len(samples), batch_size):
        chunk = tuple(samples[start : start + batch_size])
        lengths = np.array([len(s.input_ids) for s in chunk], dtype=np.int64)
        ids = np.full((len(chunk), int(lengths.max())), pad_id, dtype=np.int64)
        for row, sample in enumerate(chunk):
            ids[row, : len(sample.input_ids)] = sample.input_ids
        yield Batch(samples=chunk, input_ids=ids, lengths=lengths)
