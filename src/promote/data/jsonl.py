"""Eval-set reading (docs/contract.md, `data`): the JSONL file, checked line by line.

The file is read once, line by line (``data.limit`` stops the read), and every bad line is reported
with its number; only a regular file is read. Token lists are small; model
outputs (the large part) are never held whole — see ``engine.py``. Torch-free, so ``promote
validate`` can use it cheaply. Samples of ``task: tensor`` carry named ``inputs`` instead of
``input_ids``; their parsing lives in ``data/tensors.py``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from promote.bounded import open_regular
from promote.data.samples import EvalSet, Sample
from promote.data.tensors import attach_file_inputs, parse_inline
from promote.errors import UsageError

TASK_FIELDS = ("label", "target", "reward", "score")
_ALLOWED_KEYS = {"id", "input_ids", "tags", "text", *TASK_FIELDS}
# `task: tensor` samples carry named `inputs` (data/tensors.py) instead of token ids.
_TENSOR_KEYS = (_ALLOWED_KEYS - {"input_ids"}) | {"inputs"}


#: Token ids travel as int64 (numpy, torch, onnxruntime): a larger id cannot even be put in a batch.
MAX_TOKEN_ID = 2**63 - 1


def is_token_id(value: Any) -> bool:
    """A JSON value that can be a token id: an integer in [0, 2^63)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKEN_ID


def _fail(display: str, line: int, message: str) -> UsageError:
    return UsageError(f"{display}:{line}: {message}")


def _parse_sample(record: Any, display: str, line: int, task: str = "causal-lm") -> Sample:
    if not isinstance(record, dict):
        raise _fail(display, line, f"expected a JSON object per line, got {type(record).__name__}")
    allowed = _TENSOR_KEYS if task == "tensor" else _ALLOWED_KEYS
    unknown = sorted(set(record) - allowed)
    if unknown:
        hint = {"inputs": " (`inputs` needs `data.task: tensor`)",
                "input_ids": " (`data.task: tensor` reads named `inputs`, e.g. {\"inputs\": {\"input_ids\": [...]}})"}
        raise _fail(display, line, f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
                    + "".join(hint.get(k, "") for k in unknown))
    sample_id = record.get("id")
    if not isinstance(sample_id, str) or not sample_id:
        raise _fail(display, line, "`id` must be a non-empty string (each sample needs a unique id)")
    if task == "tensor":
        return _tensor_sample(record, sample_id, display, line)
    ids = record.get("input_ids")
    if not isinstance(ids, list) or not ids:
        raise _fail(display, line, f"sample `{sample_id}`: `input_ids` must be a non-empty list of integers")
    bad = next((i for i, t in enumerate(ids) if not is_token_id(t)), None)
    if bad is not None:
        raise _fail(display, line, f"sample `{sample_id}`: `input_ids` must hold non-negative integers only "
                    f"(below 2^63); input_ids[{bad}] is {json.dumps(ids[bad])[:40]}")
    tags = record.get("tags", {})
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise _fail(display, line, f"sample `{sample_id}`: `tags` must map strings to strings")
    task = {k: record[k] for k in TASK_FIELDS if k in record}
    return Sample(id=sample_id, input_ids=tuple(ids), tags=dict(tags), line=line, task=task)


def _tensor_sample(record: dict[str, Any], sample_id: str, display: str, line: int) -> Sample:
    tags = record.get("tags", {})
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise _fail(display, line, f"sample `{sample_id}`: `tags` must map strings to strings")
    inputs = parse_inline(record.get("inputs", {}), where=f"{display}:{line}: sample `{sample_id}`")
    task = {k: record[k] for k in TASK_FIELDS if k in record}
    return Sample(id=sample_id, input_ids=(), tags=dict(tags), line=line, task=task, inputs=inputs)


MAX_LINE_BYTES = 256 * 1024 * 1024  # one sample; a 100k-token sample is under 1 MB


def _lines(path: Path, display: str) -> Iterator[tuple[int, str]]:
    """The file's non-blank lines, read one at a time (``data.limit: N`` reads only the first N samples'
    lines); only a regular file is opened, so a FIFO or a device cannot block or flood the read."""
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        raise UsageError(f"{display}: data file not found; fix `data.path` in the contract") from None
    except OSError as exc:
        raise UsageError(f"{display}: cannot read the data file: {exc.strerror or exc}; `data.path` must name a "
                         "JSONL file") from None
    with os.fdopen(fd, "rb") as handle:
        for number, raw in enumerate(iter(lambda: handle.readline(MAX_LINE_BYTES + 1), b""), start=1):
            if len(raw) > MAX_LINE_BYTES:
                raise _fail(display, number, f"line longer than {MAX_LINE_BYTES // 2**20} MiB; one sample per line")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _fail(display, number, f"not UTF-8 text ({exc.reason} at byte {exc.start} of the "
                                             "line)") from None
            if text.strip():
                yield number, text


def read_jsonl(path: Path, *, display_path: str | None = None, limit: int | None = None, task: str = "causal-lm",
               inputs_file: Path | None = None, inputs_file_display: str | None = None) -> EvalSet:
    """Read and check a JSONL eval set; every problem names the file and line.

    ``task: tensor`` samples carry ``inputs``; ``inputs_file`` adds tensors named ``<id>/<name>``.

    Raises:
        UsageError: unreadable file, malformed JSON, bad fields, duplicate ids, no samples.
    """
    display = display_path or str(path)
    samples: list[Sample] = []
    first_line: dict[str, int] = {}
    for number, raw in _lines(path, display):
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise _fail(display, number, f"malformed JSON at column {exc.colno}: {exc.msg}") from None
        except RecursionError:
            raise _fail(display, number, "JSON nested too deeply to be a sample") from None
        sample = _parse_sample(record, display, number, task)
        if sample.id in first_line:
            raise _fail(display, number, f"duplicate id `{sample.id}` (first at line {first_line[sample.id]})")
        first_line[sample.id] = number
        samples.append(sample)
        if limit is not None and len(samples) >= limit:
            break
    if not samples:
        raise UsageError(f"{display}: the eval set has no samples")
    if inputs_file is not None:
        samples = attach_file_inputs(samples, display, inputs_file, inputs_file_display or str(inputs_file),
                                      complete=limit is None)
    for sample in samples if task == "tensor" else ():
        if not sample.inputs:
            raise _fail(display, sample.line, f"sample `{sample.id}` has no inputs: give `inputs` inline"
                        + (f" or tensors `{sample.id}/<name>` in {inputs_file_display}" if inputs_file else
                           " or set `data.inputs_file`"))
    return EvalSet(path=path, display_path=display, samples=tuple(samples), task=task, inputs_file=inputs_file,
                   limit=limit)


def load_evalset(spec: Any) -> EvalSet:
    """The eval set a contract's `data` section (contract.model.DataSpec) describes."""
    return read_jsonl(spec.path, display_path=spec.display_path, limit=spec.limit, task=spec.task,
                      inputs_file=spec.inputs_file, inputs_file_display=spec.inputs_file_display)
