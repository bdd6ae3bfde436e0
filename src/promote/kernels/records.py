"""`kind: records`: outputs recorded by another engine (vLLM, SGLang, TensorRT-LLM, a trainer), in
the safetensors format of docs/records.md — the way to bring kernels that cannot run on a CI runner.

Format of one file (a directory of ``*.safetensors`` shards, read in sorted order, is one set):

* ``input_ids`` int [N, T], ``mask`` bool [N, T] (positions the engine scored), and either
  ``logits`` float [N, T, V] or ``topk_ids`` int [N, T, K] + ``topk_logprobs`` float [N, T, K] +
  ``target_logprobs`` float [N, T] (log-prob of ``input_ids[:, t + 1]``), or ``target_logprobs``
  alone: *sampled-token* records (RL rollouts: the log-prob of the sampled token only; docs/rl.md);
* metadata key ``ids``: JSON list of the N sample ids; ``logprobs_mode`` (vLLM's ``--logprobs-mode``:
  what the values are) and ``sampling`` (JSON sampler settings) are declarations the identity check
  compares across sides (docs/identity.md); other metadata keys are kept as provenance.

Files are opened with ``safe_open`` (memory-mapped) and read a batch's rows at a time, so a record set
larger than memory is fine. Every mismatch with the eval set is an error naming the file and the ids.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from promote.data import Batch, EvalSet
from promote.data.sampler import parse_mode, parse_sampling
from promote.errors import UsageError
from promote.kernels.base import Kernel, Outputs

TOPK_KEYS = ("topk_ids", "topk_logprobs", "target_logprobs")
FORMAT = "promote-records/1"
#: Machine epsilon of each stored safetensors dtype: how far rounding alone moves a stored value (the top-k
#: mass tolerance below, and the logsumexp tolerance of identity/semantics.py's log-probs test).
DTYPE_EPS = {"F64": 2.2e-16, "F32": 1.2e-7, "F16": 9.8e-4, "BF16": 7.9e-3}
_SHOW = 5


def _some(ids: Sequence[str]) -> str:
    """First few ids and the count: messages stay short on a 100 000-sample mismatch."""
    shown = ", ".join(f"`{i}`" for i in list(ids)[:_SHOW])
    return f"{shown}{', …' if len(ids) > _SHOW else ''} ({len(ids)} in all)"


def write_records(
    path: str | os.PathLike[str],
    ids: Sequence[str],
    input_ids: Any,
    mask: Any,
    *,
    logits: Any = None,
    topk_ids: Any = None,
    topk_logprobs: Any = None,
    target_logprobs: Any = None,
    metadata: dict[str, str] | None = None,
    logprobs_mode: str | None = None,
    sampling: dict[str, Any] | None = None,
) -> Path:
    """Save one engine's outputs as a records file that ``kind: records`` reads.

    Pass ``logits`` [N, T, V], or the top-k set, or ``target_logprobs`` [N, T] alone (sampled-token
    records: the log-prob of ``input_ids[:, t + 1]`` where ``mask`` is set, as RL rollouts and
    trainers record them; only metrics exact on the sampled token apply). Arrays may be numpy or torch
    (bf16 is kept as is).
    ``metadata`` (string → string, e.g. ``{"engine": "vllm 0.6.3"}``) is stored as provenance.
    ``logprobs_mode`` (``raw_logits``, ``raw_logprobs``, ``processed_logits``, ``processed_logprobs``) and
    ``sampling`` (``{"temperature": 1.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0}``) declare what the
    values are and how the tokens were sampled, for the identity check (docs/identity.md).
    """
    import torch
    from safetensors.torch import save_file

    def tensor(value: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
        out = value.detach().cpu() if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))
        return out.to(dtype) if dtype is not None else out

    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise ValueError("write_records: sample ids must be unique")
    tensors = {"input_ids": tensor(input_ids, torch.int64), "mask": tensor(mask, torch.bool)}
    n, t = tensors["input_ids"].shape
    if len(ids) != n or tuple(tensors["mask"].shape) != (n, t):
        raise ValueError(f"write_records: {len(ids)} ids, input_ids {list(tensors['input_ids'].shape)}, "
                         f"mask {list(tensors['mask'].shape)} do not agree")
    if logits is not None:
        tensors["logits"] = tensor(logits)
    elif topk_ids is not None and topk_logprobs is not None and target_logprobs is not None:
        tensors.update(topk_ids=tensor(topk_ids, torch.int64), topk_logprobs=tensor(topk_logprobs),
                       target_logprobs=tensor(target_logprobs))
    elif target_logprobs is not None and topk_ids is None and topk_logprobs is None:
        tensors["target_logprobs"] = tensor(target_logprobs)
        if tuple(tensors["target_logprobs"].shape) != (n, t):
            raise ValueError(f"write_records: target_logprobs {list(tensors['target_logprobs'].shape)} must be "
                             f"[N, T] = [{n}, {t}] like input_ids")
    else:
        raise ValueError("write_records: give `logits`, or all of topk_ids, topk_logprobs, target_logprobs, or "
                         "target_logprobs alone (sampled-token records)")
    meta = {**(metadata or {}), "ids": json.dumps(ids), "format": FORMAT, **_declarations(logprobs_mode, sampling)}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out), metadata=meta)
    return out


def _declarations(logprobs_mode: str | None, sampling: dict[str, Any] | None) -> dict[str, str]:
    """The metadata of ``write_records``' declarations, checked before anything is written."""
    out = {}
    if logprobs_mode is not None:
        out["logprobs_mode"] = parse_mode(logprobs_mode, "write_records")
    if sampling is not None:
        parse_sampling(sampling, "write_records")
        out["sampling"] = json.dumps(dict(sampling))
    return out


def records_format(keys: set[str], handle: Any = None) -> str | None:
    """``logits``, ``topk``, ``sampled`` (``target_logprobs`` alone, or top-k of width 0) or None.

    ``handle`` (a safe_open handle) lets a top-k of width K = 0 count as sampled-token records.
    """
    if "logits" in keys:
        return "logits"
    if all(k in keys for k in TOPK_KEYS):
        if handle is not None and list(handle.get_slice("topk_ids").get_shape())[-1:] == [0]:
            return "sampled"
        return "topk"
    if "target_logprobs" in keys and not keys & {"topk_ids", "topk_logprobs"}:
        return "sampled"
    return None


@dataclass
class _Shard:
    path: Path
    display: str
    handle: Any
    ids: list[str]
    input_ids: np.ndarray
    mask: np.ndarray
    dtype: str


class RecordSet:
    """All shards of one record set, checked for one format and one K/V, with an id → row index."""

    def __init__(self, path: Path, display: str) -> None:
        self.path, self.display = path, display
        files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
        if not files:
            raise UsageError(f"{display}: directory has no *.safetensors record shards")
        self.shards: list[_Shard] = []
        self.where: dict[str, tuple[int, int]] = {}
        self.format: str | None = None
        self.width: int | None = None  # V for logits, K for top-k
        self.metadata: dict[str, str] = {}
        self.declared: dict[str, Any] = {}  # logprobs_mode, sampling (parsed), from the first shard that has them
        for file in files:
            self._add(file, display if file == path else os.path.join(display, file.name))

    def _add(self, file: Path, display: str) -> None:
        from safetensors import safe_open

        try:
            handle = safe_open(str(file), framework="pt")
        except Exception as exc:
            raise UsageError(f"{display}: not a readable safetensors file ({exc})") from None
        keys = set(handle.keys())
        meta = handle.metadata() or {}
        for key in ("input_ids", "mask"):
            if key not in keys:
                raise UsageError(f"{display}: records have no `{key}` tensor; a records file needs input_ids "
                                 "[N,T], mask [N,T] (the scored positions) and logits or the top-k set")
        fmt = records_format(keys, handle)
        if fmt is None:
            have = sorted(keys & {"logits", *TOPK_KEYS})
            raise UsageError(f"{display}: records need `logits`, all of {', '.join(TOPK_KEYS)}, or "
                             "`target_logprobs` alone (sampled-token records); found "
                             f"{', '.join(have) or 'none of them'}")
        width_key = {"logits": "logits", "topk": "topk_ids", "sampled": "target_logprobs"}[fmt]
        ids = self._ids(meta, display)
        input_ids = handle.get_tensor("input_ids").numpy()
        mask = handle.get_tensor("mask").numpy()
        n, t = input_ids.shape if input_ids.ndim == 2 else (-1, -1)
        shape = list(handle.get_slice(width_key).get_shape())
        if fmt == "sampled":
            shape = [*shape, 0]  # width 0: no distribution recorded beyond the sampled token
        if input_ids.ndim != 2 or mask.shape != input_ids.shape or len(shape) != 3 or shape[:2] != [n, t]:
            last = {"logits": "[N,T,V]", "topk": "[N,T,K]", "sampled": "[N,T]"}[fmt]
            raise UsageError(f"{display}: shapes disagree: input_ids {list(input_ids.shape)}, mask "
                             f"{list(mask.shape)}, {width_key} {shape[:2] if fmt == 'sampled' else shape}; "
                             f"expected [N,T], [N,T], {last}")
        if len(ids) != n:
            raise UsageError(f"{display}: metadata `ids` lists {len(ids)} ids but the file holds {n} rows")
        if mask.dtype != np.bool_:
            raise UsageError(f"{display}: `mask` must be bool, got {mask.dtype}")
        first = self.shards[0].display if self.shards else None
        if self.format is not None and fmt != self.format:
            raise UsageError(f"{display}: holds {fmt} records but {first} holds {self.format}; one set, one format")
        if self.width is not None and shape[2] != self.width:
            what = "vocabulary size V" if fmt == "logits" else "K (top-k width)"
            raise UsageError(f"{display}: {what} is {shape[2]} but {first} has {self.width}")
        index = len(self.shards)
        dupes = [i for i in ids if i in self.where]
        if dupes:
            raise UsageError(f"{display}: ids already recorded in an earlier shard: {_some(dupes)}")
        self.where.update({sample_id: (index, row) for row, sample_id in enumerate(ids)})
        self.format, self.width = fmt, shape[2]
        dtype = handle.get_slice({"logits": "logits", "topk": "topk_logprobs"}.get(fmt, "target_logprobs")).get_dtype()
        self._declare(meta, display)
        self.metadata.update({k: v for k, v in meta.items() if k not in ("ids",)})
        self.shards.append(_Shard(file, display, handle, ids, input_ids.astype(np.int64), mask, dtype))

    def _declare(self, meta: dict[str, str], display: str) -> None:
        """Metadata ``logprobs_mode`` and ``sampling``, checked; every shard of a set declares alike."""
        got: dict[str, Any] = {}
        if "logprobs_mode" in meta:
            got["logprobs_mode"] = parse_mode(meta["logprobs_mode"], f"{display}: metadata")
        if "sampling" in meta:
            got["sampling"] = parse_sampling(meta["sampling"], f"{display}: metadata `sampling`")
        for key, value in got.items():
            if key in self.declared and self.declared[key] != value:
                raise UsageError(f"{display}: metadata `{key}` is {meta[key]} but {self.shards[0].display} "
                                 f"declares {self.declared[key]}; one record set, one declaration")
        if self.shards and set(got) != set(self.declared):
            raise UsageError(f"{display}: declares {sorted(got) or 'nothing'} in its metadata but "
                             f"{self.shards[0].display} declares {sorted(self.declared) or 'nothing'}; one record "
                             "set, one declaration")
        self.declared.update(got)

    @staticmethod
    def _ids(meta: dict[str, str], display: str) -> list[str]:
        if "ids" not in meta:
            raise UsageError(f"{display}: safetensors metadata has no `ids` (a JSON list of the sample ids, one "
                             "per row); write records with promote.kernels.records.write_records")
        try:
            ids = json.loads(meta["ids"])
        except json.JSONDecodeError as exc:
            raise UsageError(f"{display}: metadata `ids` is not JSON ({exc.msg})") from None
        if not isinstance(ids, list) or not all(isinstance(i, (str, int)) for i in ids):
            raise UsageError(f"{display}: metadata `ids` must be a JSON list of sample ids")
        ids = [str(i) for i in ids]
        if len(set(ids)) != len(ids):
            raise UsageError(f"{display}: metadata `ids` repeats ids")
        return ids

    def rows(self, key: str, shard: int, rows: list[int]) -> np.ndarray:
        """The given rows of one tensor, read from the memory map (not the whole tensor)."""
        import torch

        sl = self.shards[shard].handle.get_slice(key)
        parts = [sl[r : r + 1] for r in rows]
        out = torch.cat(parts) if parts else torch.zeros(0)
        return (out.float() if out.is_floating_point() and out.dtype != torch.float64 else out).numpy()

    def logits(self, by_shard: dict[int, list[tuple[int, int]]], b: int, t: int) -> Any:
        """A batch's logits [b, t, V], a torch tensor in the records' own dtype (slot ← (shard, row) pairs), which
        scoring reads in place (docs/records.md): never widened or copied whole, as before 2026-12-06."""
        import torch

        if len(by_shard) == 1:  # the usual batch, consecutive rows of one shard: a view of safetensors' copy-on-write
            (shard, pairs), = by_shard.items()  # map (0.8; writes never reach the file), copied only if sliced
            first = pairs[0][1]
            if pairs == [(slot, first + slot) for slot in range(b)] and self.shards[shard].mask.shape[1] >= t:
                return self.shards[shard].handle.get_slice("logits")[first : first + b, :t].contiguous()
        out = None
        for shard, pairs in by_shard.items():
            source, width = self.shards[shard].handle.get_slice("logits"), min(t, self.shards[shard].mask.shape[1])
            for slot, row in pairs:
                values = source[row : row + 1, :width]
                out = torch.empty((b, t, values.shape[-1]), dtype=values.dtype) if out is None else out
                out[slot, :width] = values[0]
                out[slot, width:] = 0
        return out if out is not None else torch.zeros((b, t, self.width or 0))

    def close(self) -> None:
        self.shards.clear()


class RecordsKernel(Kernel):
    kind = "records"

    def describe(self) -> str:
        return f"records, {self.spec.path_display}"

    def _open_impl(self) -> None:
        self.records = RecordSet(self.spec.path, self.spec.path_display)
        self._bound: int | None = None

    def _close_impl(self) -> None:
        self.records.close()

    def _bind_impl(self, evalset: EvalSet) -> None:
        """Join the records to the eval set by id; every mismatch is an error naming file and ids, except
        other tokens in sampled-token records: a trainer that scored other tokens than the engine sampled is
        an identity finding (``identity/sampling.py``, exit 3), which sees both sides."""
        if self._bound == id(evalset):
            return
        where = self.records.where
        missing = [s.id for s in evalset.samples if s.id not in where]
        if missing:
            raise UsageError(f"{self.spec.path_display}: no records for eval-set ids {_some(missing)} of "
                             f"{evalset.display_path}; record every sample of the eval set")
        extra = sorted(set(where) - {s.id for s in evalset.samples})
        if extra and evalset.limit is None:
            raise UsageError(f"{self.spec.path_display}: records for ids that {evalset.display_path} does not "
                             f"have: {_some(extra)}; were they recorded from another eval set?")
        differ, short, unscored = [], [], 0
        for sample in evalset.samples:
            shard_index, row = where[sample.id]
            shard = self.records.shards[shard_index]
            n = len(sample.input_ids)
            if shard.input_ids.shape[1] < n:
                short.append(sample.id)
            elif not np.array_equal(shard.input_ids[row, :n], sample.input_ids):
                differ.append(sample.id)
            else:
                unscored += int((~shard.mask[row, : n - 1]).sum())
        if (short or differ) and self.records.format == "sampled":
            short = differ = []  # a rollout side scored other tokens: the identity check's `sampling` finding (exit 3)
        if short:
            raise UsageError(f"{self.spec.path_display}: records are shorter than the eval-set samples "
                             f"{_some(short)} (T = {self.records.shards[0].input_ids.shape[1]})")
        if differ:
            raise UsageError(f"{self.spec.path_display}: input_ids differ from {evalset.display_path} for ids "
                             f"{_some(differ)}; the records were made from other inputs")
        if unscored:
            self.notes.append(f"{self.label}: `mask` leaves out {unscored} positions the eval set scores; "
                              "they are not compared")
        self._bound = id(evalset)

    def _run_impl(self, batch: Batch) -> Outputs:
        recs = self.records
        b, t = batch.input_ids.shape
        missing = [s.id for s in batch.samples if s.id not in recs.where]
        if missing:
            raise UsageError(f"{self.spec.path_display}: no records for eval-set ids {_some(missing)}")
        by_shard: dict[int, list[tuple[int, int]]] = {}
        for slot, sample in enumerate(batch.samples):
            shard, row = recs.where[sample.id]
            by_shard.setdefault(shard, []).append((slot, row))
        mask = np.zeros((b, t), dtype=bool)
        for shard, pairs in by_shard.items():
            width = min(t, recs.shards[shard].mask.shape[1])
            mask[[s for s, _ in pairs], :width] = recs.shards[shard].mask[[r for _, r in pairs], :width]
        if recs.format == "logits":
            return Outputs(logits=recs.logits(by_shard, b, t), mask=mask, source=self.spec.path_display)
        keys = {"topk": TOPK_KEYS, "sampled": ("target_logprobs",)}[recs.format or "topk"]
        out: dict[str, np.ndarray] = {}
        for shard, pairs in by_shard.items():
            slots = [s for s, _ in pairs]
            width = min(t, recs.shards[shard].mask.shape[1])
            for key in keys:
                values = recs.rows(key, shard, [r for _, r in pairs])[:, :width]
                if key not in out:
                    fill = 0 if key == "topk_ids" else 0.0
                    out[key] = np.full((b, t, *values.shape[2:]), fill, dtype=values.dtype)
                out[key][slots, :width] = values
        if recs.format == "sampled":
            return Outputs(target_logprobs=out["target_logprobs"], mask=mask, source=self.spec.path_display)
        return Outputs(topk_ids=out["topk_ids"], topk_logprobs=out["topk_logprobs"],
                       target_logprobs=out["target_logprobs"], mask=mask, source=self.spec.path_display,
                       mass_tol=self._mass_tol())

    def _mass_tol(self) -> float:
        """How far 1 − Σ exp(top-k logprobs) may be off through the records' dtype (docs/records.md)."""
        eps = max(DTYPE_EPS.get(s.dtype, DTYPE_EPS["F32"]) for s in self.records.shards)
        return 8 * eps * ((self.records.width or 1) + 16)

    def identity_facts(self) -> dict[str, Any]:
        """Recorded logits give the vocabulary; the files' metadata is what the recording engine declared
        (``logprobs_mode`` and ``sampling`` parsed, the records' format and dtype, and for sampled-token
        records each sample's ids and mask)."""
        recs = self.records
        declared: dict[str, Any] = {k: v for k, v in recs.metadata.items() if k != "format"}
        declared.update(recs.declared, records_format=recs.format, dtype=sorted({s.dtype for s in recs.shards}),
                        declared_by=f"metadata of {self.spec.path_display}")
        if recs.format == "sampled":  # what each rollout side scored, for the `sampling` check (views, no copy)
            declared["sampled_rows"] = {sid: (recs.shards[i].input_ids[row], recs.shards[i].mask[row])
                                        for sid, (i, row) in recs.where.items()}
        return {"vocab": recs.width if recs.format == "logits" else None, "declared": declared}

    def _fingerprint_impl(self) -> dict[str, Any]:
        recs = self.records
        return {
            "records": self.spec.path_display,
            "format": recs.format,
            **({} if recs.format == "sampled" else {("vocab" if recs.format == "logits" else "k"): recs.width}),
            "shards": len(recs.shards),
            "samples": len(recs.where),
            "dtype": sorted({s.dtype for s in recs.shards}),
            "bytes": sum(s.path.stat().st_size for s in recs.shards),
            "provenance": {k: v for k, v in recs.metadata.items() if k != "format"},
        }


__all__ = ["DTYPE_EPS", "FORMAT", "RecordSet", "RecordsKernel", "records_format", "write_records"]
