"""Eval-set inputs of `data.task: tensor` (docs/tensors.md): named arrays per sample, and batching.

A sample's inputs come inline from its JSONL line (``"inputs": {"x": [[...]]}``; JSON has no dtypes,
so all-bool lists become ``bool``, all-int lists ``int64``, anything else ``float32``) and/or from a
safetensors file (``data.inputs_file``) whose tensors are named ``<sample id>/<input name>`` and keep
their stored dtype. File tensors are indexed from the header only and read batch by batch, so a
large input file is never held whole.

Batching stacks inputs along a new leading axis, which needs equal shapes: samples are grouped by
*input signature* (names, dtypes, shapes), groups in order of first appearance, file order within a
group, and each group is cut into batches of ``batch_size``. So an eval set with two image sizes
runs as two streams of full batches, whatever the order of its lines.

Torch-free, like the rest of ``data/``: ``promote validate`` uses it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from promote.data.samples import EvalSet, Sample
from promote.errors import UsageError

# safetensors dtype codes numpy can hold (BF16 and FP8 it cannot).
_ST_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "I64": "int64", "I32": "int32",
              "I16": "int16", "I8": "int8", "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64",
              "BOOL": "bool"}
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class FileInput:
    """An input stored in ``data.inputs_file``: its tensor name, dtype and shape (read lazily)."""

    key: str
    dtype: np.dtype
    shape: tuple[int, ...]


@dataclass(frozen=True)
class TensorBatch:
    """Stacked inputs of samples that share one input signature: name → array [B, ...]."""

    samples: tuple[Sample, ...]
    inputs: dict[str, np.ndarray]

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.samples]

    @property
    def size(self) -> int:
        return len(self.samples)


def parse_inline(value: Any, *, where: str) -> dict[str, np.ndarray]:
    """Check and convert a JSONL ``inputs`` object: name → nested list of numbers (or one number).

    Raises:
        UsageError: not an object, an empty name, a ragged or non-numeric list; ``where`` prefixes it.
    """
    if not isinstance(value, dict):
        raise UsageError(f"{where}: `inputs` must be an object mapping input names to (nested) lists of numbers")
    out: dict[str, np.ndarray] = {}
    for name, data in value.items():
        if not name or "/" in name:
            raise UsageError(f"{where}: input name {name!r} must be non-empty and contain no `/`")
        if _beyond_int64(data):
            raise UsageError(f"{where}: input `{name}` holds an integer outside int64 (-2^63 .. 2^63-1); inputs "
                             "are passed to the kernels as int64")
        try:
            array = np.asarray(data)
        except ValueError:
            array = np.asarray([], dtype=object)
            ragged = True
        else:
            ragged = array.dtype == object
        if ragged:
            raise UsageError(f"{where}: input `{name}` is a ragged list (rows of different lengths); "
                             "every input must be a rectangular array")
        if array.dtype.kind not in "biuf":
            raise UsageError(f"{where}: input `{name}` must hold numbers or booleans, got {array.dtype.kind!r} "
                             "values")
        if array.dtype.kind in "iu":
            array = array.astype(np.int64)
        elif array.dtype.kind == "f":
            array = array.astype(np.float32)
        out[name] = array
    return out


def _beyond_int64(data: Any) -> bool:
    """True when nested lists hold an int that int64 cannot (numpy would make it object or wrap it)."""
    if isinstance(data, list):
        return any(_beyond_int64(item) for item in data)
    return isinstance(data, int) and not isinstance(data, bool) and not -(2**63) <= data < 2**63


def read_safetensors_header(path: Path, display: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """tensor name → (dtype code, shape), from the file header only (no tensor data is read)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
            size = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            if not 0 < size <= _MAX_HEADER:
                raise ValueError("no safetensors header")
            header = json.loads(handle.read(size))
    except FileNotFoundError:
        raise UsageError(f"{display}: inputs file not found; fix `data.inputs_file` in the contract") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{display}: not a readable safetensors file ({exc})") from None
    if not isinstance(header, dict):
        raise UsageError(f"{display}: not a safetensors file (header is not an object)")
    return {k: (v["dtype"], tuple(v["shape"])) for k, v in header.items() if k != "__metadata__"}


def index_inputs_file(path: Path, display: str) -> dict[str, dict[str, FileInput]]:
    """sample id → input name → FileInput, for every tensor ``<id>/<name>`` in the file.

    Raises:
        UsageError: a tensor name without ``/``, or a dtype numpy cannot hold (e.g. BF16).
    """
    index: dict[str, dict[str, FileInput]] = {}
    for key, (code, shape) in read_safetensors_header(path, display).items():
        sample_id, sep, name = key.rpartition("/")
        if not sep or not sample_id or not name:
            raise UsageError(f"{display}: tensor `{key}` is not named `<sample id>/<input name>`")
        if code not in _ST_DTYPES:
            raise UsageError(f"{display}: tensor `{key}` has dtype {code}, which numpy cannot hold; store inputs "
                             f"as one of {', '.join(sorted(_ST_DTYPES))} (e.g. float32 for bfloat16 data)")
        index.setdefault(sample_id, {})[name] = FileInput(key, np.dtype(_ST_DTYPES[code]), shape)
    return index


def attach_file_inputs(samples: list[Sample], display: str, path: Path, file_display: str,
                       *, complete: bool) -> list[Sample]:
    """Join `<id>/<name>` tensors of the inputs file to the samples by id; every mismatch is an error."""
    index = index_inputs_file(path, file_display)
    known = {s.id for s in samples}
    unknown = sorted(set(index) - known)
    if unknown and complete:
        raise UsageError(f"{file_display}: tensors for sample id(s) not in {display}: {', '.join(unknown[:10])}"
                         + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""))
    out = []
    for sample in samples:
        extra = index.get(sample.id, {})
        both = sorted(set(extra) & set(sample.inputs))
        if both:
            raise UsageError(f"{display}:{sample.line}: sample `{sample.id}`: input(s) {', '.join(both)} given both "
                             f"inline and in {file_display}; keep one")
        out.append(replace(sample, inputs={**sample.inputs, **extra}) if extra else sample)
    return out


def signature(sample: Sample) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    """What must agree for samples to share a batch: input names, dtypes and shapes."""
    return tuple(sorted((name, np.dtype(a.dtype).str, tuple(a.shape)) for name, a in sample.inputs.items()))


def tensor_batch_groups(samples: Sequence[Sample], batch_size: int) -> list[tuple[Sample, ...]]:
    """The samples of each batch, in batch order: same-signature samples, in file order within a
    signature, signatures in order of first appearance. A shard takes whole batches of this list, and
    re-batching its samples gives exactly these batches again."""
    groups: dict[tuple, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(signature(sample), []).append(sample)
    return [tuple(members[start : start + batch_size]) for members in groups.values()
            for start in range(0, len(members), batch_size)]


def tensor_batches(evalset: EvalSet, batch_size: int, samples: Sequence[Sample] | None = None
                   ) -> Iterator[TensorBatch]:
    """Batches of same-signature samples (see the module docstring for the order)."""
    handle = None
    if evalset.inputs_file is not None:
        from safetensors import safe_open

        handle = safe_open(str(evalset.inputs_file), framework="numpy")
    for chunk in tensor_batch_groups(evalset.samples if samples is None else samples, batch_size):
        inputs = {name: np.stack([_load(s.inputs[name], handle) for s in chunk]) for name in chunk[0].inputs}
        yield TensorBatch(samples=chunk, inputs=inputs)


def _load(value: np.ndarray | FileInput, handle: Any) -> np.ndarray:
    if isinstance(value, FileInput):
        return handle.get_tensor(value.key)
    return value
