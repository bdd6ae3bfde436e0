"""Reading RL rollout dumps (JSONL or Parquet): per sample, the tokens and both sides' log-probs of
the sampled response tokens (docs/rl.md names the columns and maps verl's and TRL's onto them).

Every RL framework can dump, per rollout, the prompt and response token ids, a response mask and the
log-prob of each sampled token from the inference engine and from the trainer. ``read_rollouts``
turns such a dump into ``Rollout`` rows, checking every row (lengths agree, log-probs finite or −inf,
ids unique) and naming the file, row and column of the first problem, so a converted run never
scores misaligned tokens. Torch-free; Parquet needs pyarrow.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promote.bounded import check_regular
from promote.data.jsonl import is_token_id
from promote.errors import UsageError

# Canonical column names; ``columns=`` maps them onto a dump's own names.
COLUMNS = ("id", "prompt_ids", "response_ids", "response_mask", "engine_logprobs", "trainer_logprobs", "tags",
           "trainer_response_ids", "trainer_response_mask")
REQUIRED = ("prompt_ids", "response_ids", "engine_logprobs", "trainer_logprobs")
# Field names of common frameworks (docs/rl.md): pass as ``columns=VERL_COLUMNS``.
VERL_COLUMNS = {"id": "uid", "prompt_ids": "prompts", "response_ids": "responses", "response_mask": "response_mask",
                "engine_logprobs": "rollout_log_probs", "trainer_logprobs": "old_log_probs"}
TRL_COLUMNS = {"prompt_ids": "prompt_ids", "response_ids": "completion_ids", "response_mask": "completion_mask",
               "engine_logprobs": "sampling_per_token_logps", "trainer_logprobs": "old_per_token_logps"}


@dataclass(frozen=True)
class Rollout:
    """One rollout: prompt and response token ids, response mask (1 = scored), both sides' log-probs.

    ``trainer_response_ids``/``trainer_response_mask``: what the trainer scored, when the dump records it
    apart from the engine's sample (None: the same tokens and mask); the identity check compares them
    position by position (docs/identity.md), so a misaligned recompute is ``invalid``, not a drift.
    """

    id: str
    prompt_ids: tuple[int, ...]
    response_ids: tuple[int, ...]
    response_mask: tuple[bool, ...]
    engine_logprobs: tuple[float, ...]
    trainer_logprobs: tuple[float, ...]
    tags: dict[str, str] = field(default_factory=dict)
    trainer_response_ids: tuple[int, ...] | None = None
    trainer_response_mask: tuple[bool, ...] | None = None


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        check_regular(path)  # a FIFO would block the read, a device flood it
    except OSError as exc:
        raise UsageError(f"{path}: cannot read rollouts ({exc.strerror or exc})") from None
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:  # pragma: no cover - pyarrow is a declared dependency
            raise UsageError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
        try:
            table = pq.read_table(path)
        except Exception as exc:
            raise UsageError(f"{path}: not a readable Parquet file ({exc})") from None
        for index, row in enumerate(table.to_pylist(), start=1):
            yield index, row
        return
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read rollouts ({exc})") from None
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{line_no}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise UsageError(f"{path}:{line_no}: each line must be a JSON object (one rollout)")
        yield line_no, row


#: Above this a log-prob is impossible (a probability over 1); the slack absorbs rounding of an exact 0.
MAX_LOGPROB = 1e-6


def token_ids(value: Any, where: str, name: str) -> tuple[int, ...]:
    """A column of token ids, each an integer in [0, 2^63) (they travel as int64)."""
    if not isinstance(value, (list, tuple)) or not all(is_token_id(v) for v in value):
        raise UsageError(f"{where}: column `{name}` must be a list of token ids (integers in [0, 2^63))")
    return tuple(value)


def mask_bits(value: Any, where: str, name: str) -> tuple[bool, ...]:
    """A response mask as booleans: each entry ``true``/``false`` or the number 0 or 1, nothing else
    (``bool("0")`` is True, and 2, −1 or 0.5 are not a mask bit: coercing them would score padding)."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, bool) or (isinstance(v, (int, float))
                                                                               and v in (0, 1)) for v in value):
        raise UsageError(f"{where}: column `{name}` must be a list of mask bits (true/false or 0/1)")
    return tuple(bool(v) for v in value)


def _floats(value: Any, where: str, name: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                        for v in value):
        raise UsageError(f"{where}: column `{name}` must be a list of log-probabilities (numbers)")
    out = tuple(float(v) for v in value)
    bad = [i for i, v in enumerate(out) if math.isnan(v) or v > MAX_LOGPROB]
    if bad:
        raise UsageError(f"{where}: column `{name}` holds {len(bad)} values that are NaN or above 0 (first at "
                         f"response token {bad[0]}: {out[bad[0]]}); log-probabilities are ≤ 0")
    return out


_Side = tuple[Any, Any, tuple[float, ...]]  # (response ids, mask, log-probs) of one side, trailing padding dropped


def _side(row: dict[str, Any], names: Mapping[str, str], where: str, ids_key: str, mask_key: str, lp_key: str,
          default_mask: tuple[bool, ...] | None = None) -> _Side:
    """One side's per-response-token columns, of one length, trailing padding (mask 0) dropped."""
    response = token_ids(row[names[ids_key]], where, names[ids_key])
    logprobs = _floats(row[names[lp_key]], where, names[lp_key])
    raw_mask = row.get(names[mask_key])
    mask = (mask_bits(raw_mask, where, names[mask_key]) if raw_mask is not None
            else default_mask if default_mask is not None and len(default_mask) == len(response)
            else (True,) * len(response))
    lengths = {names[ids_key]: len(response), names[lp_key]: len(logprobs), names[mask_key]: len(mask)}
    if len(set(lengths.values())) != 1:
        shown = ", ".join(f"`{k}` {v}" for k, v in lengths.items())
        raise UsageError(f"{where}: per-response-token columns differ in length ({shown}); each needs one "
                         "entry per response token")
    keep = max((i + 1 for i, m in enumerate(mask) if m), default=0)  # drop trailing padding
    return response[:keep], mask[:keep], logprobs[:keep]


def _sides(row: dict[str, Any], names: Mapping[str, str], where: str) -> tuple[_Side, _Side]:
    """The engine's and the trainer's columns. Without ``trainer_response_ids`` the trainer scored the
    engine's tokens, so its log-probs share the engine's length and mask; with it, each side is checked
    on its own and the identity check compares them (a length or token mismatch is ``invalid``, exit 3)."""
    if names["trainer_response_ids"] not in row:
        engine = _side(row, names, where, "response_ids", "response_mask", "engine_logprobs")
        lengths = {names["engine_logprobs"]: len(row[names["engine_logprobs"]]),
                   names["trainer_logprobs"]: len(_floats(row[names["trainer_logprobs"]], where,
                                                          names["trainer_logprobs"]))}
        if len(set(lengths.values())) != 1:
            shown = ", ".join(f"`{k}` {v}" for k, v in lengths.items())
            raise UsageError(f"{where}: per-response-token columns differ in length ({shown}); each needs one "
                             "entry per response token (or give the trainer's own `trainer_response_ids`)")
        trainer = _floats(row[names["trainer_logprobs"]], where, names["trainer_logprobs"])[: len(engine[0])]
        return engine, (None, None, trainer)
    engine = _side(row, names, where, "response_ids", "response_mask", "engine_logprobs")
    raw_engine_mask = row.get(names["response_mask"])
    default = mask_bits(raw_engine_mask, where, names["response_mask"]) if raw_engine_mask is not None else None
    trainer = _side(row, names, where, "trainer_response_ids", "trainer_response_mask", "trainer_logprobs", default)
    return engine, trainer


def read_rollouts(path: str | Path, *, columns: Mapping[str, str] | None = None,
                  tag_columns: tuple[str, ...] = ()) -> list[Rollout]:
    """Rollouts from a JSONL (one object per line) or ``.parquet`` dump.

    ``columns`` maps canonical names (``COLUMNS``) to the dump's (e.g. ``VERL_COLUMNS``); unmapped
    ones keep their canonical name. Without an ``id`` column rows are named ``row-N``. Log-probs and
    the mask are per response token (trailing padding where the mask is 0 is dropped); optional
    ``trainer_response_ids``/``trainer_response_mask`` give what the trainer scored when it differs from
    the engine's sample (docs/rl.md). ``tag_columns`` become string tags for slices (``tags.NAME``).
    """
    path = Path(path)
    names = {c: c for c in COLUMNS} | dict(columns or {})
    out: list[Rollout] = []
    seen: dict[str, str] = {}
    for index, row in _rows(path):
        where = f"{path}:{index}"
        missing = [c for c in REQUIRED if names[c] not in row]
        if missing:
            raise UsageError(f"{where}: rollout lacks column{'s' if len(missing) > 1 else ''} "
                             + ", ".join(f"`{names[c]}` ({c})" for c in missing)
                             + "; map the dump's names with columns= (docs/rl.md)")
        rid = str(row[names["id"]]) if names["id"] in row else f"row-{index}"
        if rid in seen:
            raise UsageError(f"{where}: rollout id `{rid}` repeats {seen[rid]}; ids must be unique")
        seen[rid] = where
        prompt = token_ids(row[names["prompt_ids"]], where, names["prompt_ids"])
        if not prompt:
            raise UsageError(f"{where}: `{names['prompt_ids']}` is empty; the first response token is scored "
                             "from the prompt's last position, so a prompt needs at least one token")
        engine, trainer = _sides(row, names, where)
        tags = {name: str(row[name]) for name in tag_columns if row.get(name) is not None}
        if isinstance(row.get(names["tags"]), dict):
            tags = {str(k): str(v) for k, v in row[names["tags"]].items()} | tags
        own = trainer[0] is not None  # the dump records what the trainer scored apart from the sample
        out.append(Rollout(rid, prompt, engine[0], engine[1], engine[2], trainer[2], tags,
                           trainer[0] if own else None, trainer[1] if own else None))
    if not out:
        raise UsageError(f"{path}: no rollouts in the file")
    return out


__all__ = ["COLUMNS", "MAX_LOGPROB", "TRL_COLUMNS", "VERL_COLUMNS", "Rollout", "read_rollouts"]
