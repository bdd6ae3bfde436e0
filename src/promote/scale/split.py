"""The deterministic split of an eval set into shards, at batch boundaries.

Why batches: a kernel's numerics depend on the batch a sample is computed in (padding length,
blocked matmuls), so a shard that re-batched its samples would not reproduce a single-process run.
The split is therefore defined on the batches of the single-process run: the eval set in file
order, cut into batches of ``min(reference.batch_size, candidate.batch_size)``, and shard ``I`` of
``N`` takes the contiguous batches ``[floor(I·B/N), floor((I+1)·B/N))`` of the ``B`` batches. It
depends only on the data file and the contract (no hash seeds, no host), so every machine computes
the same split, and each shard re-batches its samples into exactly the batches the single run used.
The partial file records the shard's sample ids; ``promote merge`` checks them against this split.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from promote.data import Sample
from promote.errors import UsageError

MAX_SHARDS = 100_000  # a forged partial's `count: 1e9` must not make merge list a billion missing shards


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` (0 ≤ I < N ≤ ``MAX_SHARDS``) → (I, N); a clear usage error otherwise."""
    index, sep, count = str(text).partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i = n = -1
    if not sep or not 1 <= n <= MAX_SHARDS or not 0 <= i < n:
        raise UsageError(f"--shard {text!r}: expected I/N with 0 ≤ I < N ≤ {MAX_SHARDS}, e.g. --shard 0/4 (the first "
                         "of 4 shards)")
    return i, n


def shard_bounds(total: int, batch_size: int, index: int, count: int) -> tuple[int, int]:
    """Sample range [start, end) of shard ``index`` of ``count`` (contiguous whole batches)."""
    nbatches = math.ceil(total / batch_size) if total else 0
    first, last = index * nbatches // count, (index + 1) * nbatches // count
    return min(first * batch_size, total), min(last * batch_size, total)


def shard_samples(samples: Sequence[Sample], batch_size: int, index: int, count: int) -> tuple[Sample, ...]:
    start, end = shard_bounds(len(samples), batch_size, index, count)
    return tuple(samples[start:end])


def ids_digest(ids: Sequence[str]) -> str:
    """sha256 of the ids in order: two partials cut from the same eval set agree on it."""
    digest = hashlib.sha256()
    for sample_id in ids:
        digest.update(sample_id.encode("utf-8") + b"\n")
    return digest.hexdigest()


def content_digest(samples: Sequence[Sample]) -> str:
    """sha256 of what the shards score, sample by sample (id, token ids, tags, task fields): tokens
    edited in place keep the ids and lengths, so the id digest alone would merge shards of two sets."""
    digest = hashlib.sha256()
    for sample in samples:
        digest.update(json.dumps([sample.id, list(sample.input_ids), sample.tags, sample.task,
                                  _inputs(sample.inputs)], sort_keys=True, default=repr,
                                 separators=(",", ":")).encode("utf-8") + b"\n")
    return digest.hexdigest()


def _inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """`data.task: tensor` inputs as digestible facts: an array's dtype, shape and sha256 of its bytes; a
    tensor of `data.inputs_file` by its name, dtype and shape (the file is read by the kernels' pass)."""
    out: dict[str, Any] = {}
    for name, value in sorted(inputs.items()):
        if isinstance(value, np.ndarray):
            out[name] = [str(value.dtype), list(value.shape), hashlib.sha256(np.ascontiguousarray(value)).hexdigest()]
        else:
            out[name] = [getattr(value, "key", None), str(getattr(value, "dtype", "")),
                         list(getattr(value, "shape", ()))]
    return out


FULL_HASH_LIMIT = 1 << 30  # files up to 1 GiB are hashed whole
SAMPLED_CHUNKS, CHUNK = 64, 1 << 20  # larger ones: the size and 64 evenly spaced MiB


def file_digest(path: Path) -> str:
    """sha256 of a model or weights file: the whole file up to ``FULL_HASH_LIMIT``, beyond it the size
    and ``SAMPLED_CHUNKS`` evenly spaced chunks (hashing 140 GB of weights per shard would cost minutes;
    an edited checkpoint changes far more than one untouched MiB)."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    with path.open("rb") as handle:
        if size <= FULL_HASH_LIMIT:
            for block in iter(lambda: handle.read(CHUNK), b""):
                digest.update(block)
            return digest.hexdigest()
        digest.update(f"size={size};sampled={SAMPLED_CHUNKS}x{CHUNK}".encode())
        for k in range(SAMPLED_CHUNKS):
            handle.seek((size - CHUNK) * k // (SAMPLED_CHUNKS - 1))
            digest.update(handle.read(CHUNK))
    return "sampled:" + digest.hexdigest()


def kernel_files(specs: Sequence[tuple[str, Any]]) -> dict[str, str]:
    """``role.field`` → digest of each file a kernel spec names (torch model file and weights, ONNX
    file, a single records file); a records directory and served models have no file here."""
    out: dict[str, str] = {}
    for role, spec in specs:
        for name in ("model_file", "weights", "path"):
            value = getattr(spec, name, None)
            if isinstance(value, Path) and value.is_file():
                out[f"{role}.{name}"] = file_digest(value)
    return out
