"""Scoring logits where they are: torch tensors on their own device, chunk by chunk over the scored positions.

A `kind: torch` kernel hands its logits over as the tensor its forward returned (any device, any float
dtype). Copying every logit to the host as float32 numpy and scoring there costs more than the forward
on a GPU, and holds both kernels' [B, T, V] logits (and copies of them) in host memory at once. Here
the scored positions are taken ``chunk`` at a time ([chunk, V] per side, gathered on the device) and
only per-position values — the fused kernel's ``COLUMNS`` — come back:

* CUDA: metrics/device.py, torch ops in float64 on the GPU;
* CPU: the numba kernel of metrics/_fused.py, reading the tensors' own memory (float32, float64, and
  bfloat16 and float16 as their bits) at the chunk's rows: no copy at all. Other dtypes or layouts are
  gathered and widened one chunk at a time. It beats torch's eager CPU ops several times over, and it is the same
  code as the numpy path, so CPU numbers do not change.

Running out of memory in a chunk is an ``EvaluationError`` (exit 3) naming the chunk and how to lower it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from promote.errors import EvaluationError
from promote.kernels.base import is_out_of_memory
from promote.metrics import device as device_metrics
from promote.metrics.distribution import COLUMNS, as_numbers, fused_columns, new_scratch

_CPU_ELEMENTS = 1 << 23  # logits per side per chunk on CPU (32 MB of float32): the default chunk is this / V
_CUDA_ELEMENTS = 1 << 25  # on a GPU: ~10 float64 temporaries of this size (2.7 GB) per chunk

#: "numba" (CPU tensors through metrics/_fused.py) or "torch" (metrics/device.py everywhere); tests set "torch"
#: to hold the torch ops equal to numba on CPU.
CPU_BACKEND = "numba"


def default_chunk(vocab: int, device: torch.device) -> int:
    """Positions per chunk when no kernel sets `chunk`: a fixed number of logits per side."""
    elements = _CUDA_ELEMENTS if device.type == "cuda" else _CPU_ELEMENTS
    return max(1, elements // max(vocab, 1))


def _as_tensor(logits: Any) -> torch.Tensor:
    """A torch tensor over the logits: torch as it is, numpy wrapped without a copy (float16/32/64; integer
    logits are numbers, widened to float64 as the numpy path did, other dtypes to float32)."""
    if isinstance(logits, torch.Tensor):
        return logits
    array = as_numbers(np.asarray(logits))
    if array.dtype not in (np.float16, np.float32, np.float64):  # long double: torch has no such dtype
        array = array.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(array))


class DeviceLogits:
    """Both kernels' logits at one batch's scored positions, left where the kernels put them.

    ``ref``/``cand`` are [B, T, V] (a torch tensor or a numpy array: a side that is not torch is wrapped
    without a copy); ``rows``/``cols`` the scored positions. The work runs on the first CUDA device
    among the sides, else on the CPU.
    """

    def __init__(self, ref: Any, cand: Any, rows: np.ndarray, cols: np.ndarray, *, chunk: int | None) -> None:
        self.ref, self.cand = _as_tensor(ref), _as_tensor(cand)
        self.vocab = self.ref.shape[-1]
        self.device = next((t.device for t in (self.ref, self.cand) if t.device.type == "cuda"), torch.device("cpu"))
        self.flat = torch.from_numpy(np.asarray(rows, dtype=np.int64) * self.ref.shape[1] + cols)
        self.chunk = chunk or default_chunk(self.vocab, self.device)
        self.explicit = chunk is not None

    @property
    def positions(self) -> int:
        return int(self.flat.numel())

    def _rows(self, side: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """[n, V] logits of ``side`` at flat positions ``index``, on the compute device."""
        gathered = side.reshape(-1, self.vocab).index_select(0, index.to(side.device))
        return gathered.to(self.device)

    def _chunks(self) -> Any:
        for start in range(0, self.positions, self.chunk):
            yield start, self.flat[start : start + self.chunk]

    def columns(self, targets: np.ndarray, tie_margin: float) -> np.ndarray:
        """The fused kernel's ``COLUMNS`` [P, len(COLUMNS)] float64 on the host."""
        out = np.empty((self.positions, len(COLUMNS)), dtype=np.float64)
        numba = self.device.type == "cpu" and CPU_BACKEND == "numba"
        views = (_in_place(self.ref), _in_place(self.cand)) if numba else (None, None)
        with self.guard("scoring"):
            scratch = new_scratch(self.vocab) if numba and self.positions else None  # one for all the chunks
            for start, index in self._chunks():
                stop = start + index.numel()
                if views[0] is not None and views[1] is not None:  # numba reads the tensors' memory: no copy
                    fused_columns(views[0], views[1], targets[start:stop], tie_margin, out[start:stop],
                                  index=index.numpy(), scratch=scratch)
                    continue
                ref, cand = self._rows(self.ref, index), self._rows(self.cand, index)
                if numba:
                    fused_columns(_numpy(ref), _numpy(cand), targets[start:stop], tie_margin, out[start:stop],
                                  scratch=scratch)
                else:
                    y = torch.from_numpy(np.ascontiguousarray(targets[start:stop], dtype=np.int64)).to(self.device)
                    out[start:stop] = device_metrics.token_columns(ref, cand, y, tie_margin).cpu().numpy()
        return out

    def per_position(self, fn: Callable[..., torch.Tensor], *, both: bool = False) -> np.ndarray:
        """``fn(ref_chunk)`` (or ``fn(ref_chunk, cand_chunk)``) → [n] per chunk, as float64 [P] on the host."""
        parts = []
        with self.guard("computing a per-position value"):
            for _, index in self._chunks():
                sides = (self.ref, self.cand) if both else (self.ref,)
                parts.append(fn(*(self._rows(s, index) for s in sides)).to(torch.float64).cpu().numpy())
        return np.concatenate(parts) if parts else np.zeros(0)

    def guard(self, what: str) -> Any:
        return _OutOfMemory(self, what)


def _in_place(logits: torch.Tensor) -> np.ndarray | None:
    """[B·T, V] numpy over a contiguous CPU tensor's own memory, for numba: float32/float64 as they are,
    bfloat16 as its bits (uint16) and float16 as its bits (int16; the kernel widens both). None when numba
    cannot read it in place."""
    if logits.device.type != "cpu" or not logits.is_contiguous():
        return None
    flat = logits.reshape(-1, logits.shape[-1])
    if logits.dtype in (torch.float32, torch.float64):
        return flat.numpy()
    if logits.dtype == torch.bfloat16:
        return flat.view(torch.int16).numpy().view(np.uint16)
    if logits.dtype == torch.float16:
        return flat.view(torch.int16).numpy()  # int16: the kernel reads these bits as fp16
    return None


def _numpy(chunk: torch.Tensor) -> np.ndarray:
    """A CPU chunk as numpy for numba: float32/float64 without a copy, other float dtypes widened to float32."""
    if chunk.dtype not in (torch.float32, torch.float64):
        chunk = chunk.to(torch.float32)
    return chunk.numpy()


class _OutOfMemory:
    """Around a chunked pass: running out of memory (torch.cuda.OutOfMemoryError, a RuntimeError "out of
    memory", MemoryError on the host) is an evaluation error naming the chunk and how to lower it."""

    def __init__(self, logits: DeviceLogits, what: str) -> None:
        self.logits, self.what = logits, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or not is_out_of_memory(exc):
            return False
        logits = self.logits
        source = "the kernel's `chunk`" if logits.explicit else f"the default for V = {logits.vocab}"
        floats = logits.chunk * logits.vocab
        raise EvaluationError(
            f"out of {'GPU' if logits.device.type == 'cuda' else 'host'} memory while {self.what} on "
            f"{logits.device}: a chunk of {logits.chunk} positions ({source}; {floats:,} logits per side) over "
            f"a batch of {logits.ref.shape[0]} sequences × {logits.ref.shape[1]} tokens. Lower `chunk` on the "
            f"torch kernels (e.g. `chunk: {max(1, logits.chunk // 4)}`) or their `batch_size` "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no message'})"
        ) from None


def is_tensor(logits: Any) -> bool:
    """Whether a kernel handed over torch logits (scored here) rather than numpy (the numba path)."""
    return isinstance(logits, torch.Tensor)


__all__ = ["CPU_BACKEND", "DeviceLogits", "default_chunk", "is_tensor"]
