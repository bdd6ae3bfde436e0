"""Rollout dump → eval set + two sampled-token records files (trainer = reference, engine = candidate).

A rollout's response token j sits at index P + j of ``prompt + response`` (P = prompt length) and is
predicted at position P + j − 1, so its log-prob goes to ``target_logprobs[P + j − 1]`` and its mask
bit to ``mask[P + j − 1]`` (the records convention: position t scores ``input_ids[t + 1]``). The
trainer is the reference (π_train) and the engine the candidate (π_infer), so promote's
``log_ratio`` is log w = log π_train − log π_infer, the importance weight of RL off-policy correction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from promote.data.rollouts import Rollout, mask_bits, read_rollouts, token_ids
from promote.kernels.records import write_records


def _view(r: Rollout, side: str) -> tuple[tuple[int, ...], tuple[bool, ...]]:
    """The response tokens and mask a side scored: the trainer's own when the dump records them."""
    if side == "trainer" and r.trainer_response_ids is not None:
        return r.trainer_response_ids, r.trainer_response_mask or (True,) * len(r.trainer_response_ids)
    return r.response_ids, r.response_mask


def _arrays(rollouts: Sequence[Rollout], side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    width = max(len(r.prompt_ids) + len(_view(r, side)[0]) for r in rollouts)
    ids = np.zeros((len(rollouts), width), dtype=np.int64)
    mask = np.zeros((len(rollouts), width), dtype=bool)
    lp = np.zeros((len(rollouts), width), dtype=np.float64)  # exact: log w ~ 1e-4 matters
    for row, r in enumerate(rollouts):
        response, response_mask = _view(r, side)
        p, n = len(r.prompt_ids), len(response)
        ids[row, : p + n] = (*r.prompt_ids, *response)
        mask[row, p - 1 : p - 1 + n] = response_mask
        lp[row, p - 1 : p - 1 + n] = getattr(r, f"{side}_logprobs")
    return ids, mask, lp


def write_rollouts(rollouts: Sequence[Rollout], out_dir: str | Path, *,
                   metadata: Mapping[str, str] | None = None,
                   sampling: Mapping[str, Mapping[str, Any]] | None = None,
                   logprobs_mode: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Write ``eval.jsonl``, ``trainer.safetensors`` and ``engine.safetensors`` into ``out_dir``.

    Returns their paths by name (``eval``, ``trainer``, ``engine``). A contract then reads
    ``reference: {kind: records, path: trainer.safetensors}``, ``candidate: {kind: records, path:
    engine.safetensors}``, ``data: {path: eval.jsonl}``. ``sampling`` and ``logprobs_mode``, keyed
    ``engine``/``trainer``, declare each side's sampler settings and value mode (records metadata, for
    the identity check: docs/identity.md); the eval set holds the engine's sampled tokens.
    """
    unknown = sorted({*(sampling or {}), *(logprobs_mode or {})} - {"engine", "trainer"})
    if unknown:
        raise ValueError(f"write_rollouts: sampling/logprobs_mode are keyed `engine` and `trainer`, not {unknown}")
    for r in rollouts:  # Rollout objects may be built by hand: the reader's checks, before any file is written
        where = f"rollout `{r.id}`"
        token_ids(r.prompt_ids, where, "prompt_ids")
        token_ids(r.response_ids, where, "response_ids")
        mask_bits(r.response_mask, where, "response_mask")
        if r.trainer_response_ids is not None:
            token_ids(r.trainer_response_ids, where, "trainer_response_ids")
        if r.trainer_response_mask is not None:
            mask_bits(r.trainer_response_mask, where, "trainer_response_mask")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    eval_path = out / "eval.jsonl"
    with eval_path.open("w", encoding="utf-8") as handle:
        for r in rollouts:
            row = {"id": r.id, "input_ids": [*r.prompt_ids, *r.response_ids], "tags": r.tags}
            handle.write(json.dumps(row) + "\n")
    ids = [r.id for r in rollouts]
    paths = {"eval": eval_path}
    for side, name in (("trainer", "trainer"), ("engine", "engine")):
        input_ids, mask, lp = _arrays(rollouts, side)
        paths[name] = write_records(out / f"{name}.safetensors", ids, input_ids, mask, target_logprobs=lp,
                                    metadata={**(metadata or {}), "side": side},
                                    logprobs_mode=(logprobs_mode or {}).get(side),
                                    sampling=dict((sampling or {})[side]) if side in (sampling or {}) else None)
    return paths


def rollouts_to_records(source: str | Path, out_dir: str | Path, *, columns: Mapping[str, str] | None = None,
                        tag_columns: tuple[str, ...] = (), sampling: Mapping[str, Mapping[str, Any]] | None = None,
                        logprobs_mode: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Read a JSONL/Parquet rollout dump (``read_rollouts``) and write it with ``write_rollouts``."""
    rollouts = read_rollouts(source, columns=columns, tag_columns=tag_columns)
    return write_rollouts(rollouts, out_dir, metadata={"source": Path(source).name}, sampling=sampling,
                          logprobs_mode=logprobs_mode)


__all__ = ["rollouts_to_records", "write_rollouts"]
