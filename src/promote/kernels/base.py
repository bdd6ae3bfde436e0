"""The Kernel lifecycle: public ``open``/``run``/``close`` check state and outputs, subclasses fill
the ``_open_impl``/``_run_impl``/``_close_impl`` hooks (Polygraphy's runner pattern).

Checking outputs here, once, means every kernel kind gets the same guarantees: the right shape,
float logits, one row per sample — or a clear error naming the kernel. The check follows the task,
which the batch type carries: a ``Batch`` (causal LM) needs logits, a ``TensorBatch`` (`task:
tensor`) needs named outputs with a leading batch dimension.

User code (model files, factories, forward) runs only inside these lifecycle calls, so they are
also the one place where anything it raises, ``SystemExit`` and ``KeyboardInterrupt`` included,
becomes an evaluation error (exit 3, report written) instead of ending the process with whatever
code user code chose; a real Ctrl-C or SIGTERM stays a signal (promote/signals.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from promote import signals
from promote.data import Batch, EvalSet, TensorBatch
from promote.errors import EvaluationError, UsageError
from promote.heap import loading, released


@dataclass
class Outputs:
    """One batch's outputs, aligned with the batch.

    Causal LM: live kernels give full ``logits`` float [B, T, V] aligned with ``Batch.input_ids``.
    Recorded engines may give only the top-k: ``topk_ids`` int [B, T, K], ``topk_logprobs`` float
    [B, T, K] and ``target_logprobs`` float [B, T] (log-prob of ``input_ids[:, t + 1]``); those are
    scored with certified bounds (metrics/topk.py). ``mask`` bool [B, T], when given, marks the
    positions this kernel has values for; positions it leaves out are not scored. ``source`` names
    the file the outputs came from, for messages; ``mass_tol`` how far 1 − Σ exp(topk_logprobs) may
    be off through the records' rounding.

    `task: tensor`: ``named`` maps key path → array [B, ...] (a torch model's nested outputs
    flattened by ``keypaths.flatten_outputs``; an ONNX model's output names). ``dtypes`` holds
    the source dtype of an array numpy had to widen (``bfloat16`` arrives as float32), so ulps and
    dtype checks use the dtype the model actually produced.

    ``request_s`` float [B], HTTP kernels only: each row's wire time (request sent → last byte of the
    answer), which stage 3 times instead of the call's wall time so promote's own decoding does not
    dilute latency ratios.

    ``logits`` may be a torch tensor (a `kind: torch` kernel's own, on its device and in its dtype): the
    pass engine then scores it where it is (engine/device_scoring.py), ``chunk`` positions at a time,
    and only per-position values reach the host. Code that needs numpy calls ``host_logits``.
    """

    logits: np.ndarray | None = None
    topk_ids: np.ndarray | None = None
    topk_logprobs: np.ndarray | None = None
    target_logprobs: np.ndarray | None = None
    mask: np.ndarray | None = None
    source: str | None = None
    mass_tol: float | None = None  # rounding of Σ exp(topk_logprobs) in the records' dtype
    named: dict[str, np.ndarray] | None = None
    dtypes: dict[str, str] = field(default_factory=dict)
    request_s: np.ndarray | None = None
    chunk: int | None = None  # positions per metric chunk when ``logits`` is a torch tensor (the kernel's `chunk`)

    @property
    def is_topk(self) -> bool:
        return self.logits is None and self.named is None

    @property
    def is_sampled(self) -> bool:
        """Only ``target_logprobs`` (the sampled token's log-prob; no top-k, or top-k of width 0)."""
        return self.is_topk and self.target_logprobs is not None and (
            self.topk_ids is None or self.topk_ids.shape[-1] == 0)

    def dtype_of(self, key: str) -> str:
        """The model's own dtype name of named output ``key``."""
        return self.dtypes.get(key) or (self.named or {})[key].dtype.name

    def on_host(self) -> Outputs:
        """These outputs with numpy logits (a copy to the host as float32 when they are a torch tensor)."""
        if self.logits is None or isinstance(self.logits, np.ndarray):
            return self
        return dataclasses.replace(self, logits=host_logits(self.logits))


def host_logits(logits: Any) -> np.ndarray:
    """Logits as numpy: an array as it is, a torch tensor (any device, any float dtype) as float32 on the
    host. For code that needs numpy (output faults, replay, records); scoring keeps tensors where they are."""
    if isinstance(logits, np.ndarray):
        return logits
    import torch

    return logits.detach().to("cpu", torch.float32).numpy()


def rows_on_host(logits: Any, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``logits[rows, cols]`` as numpy: a torch tensor is indexed where it is, then only those rows copied."""
    if isinstance(logits, np.ndarray):
        return logits[rows, cols]
    import torch

    return host_logits(logits[torch.from_numpy(rows), torch.from_numpy(cols)])


def is_out_of_memory(exc: BaseException) -> bool:
    """Running out of memory, however torch or Python says it: ``torch.cuda.OutOfMemoryError``, a RuntimeError
    "out of memory" (CUDA) or "can't allocate memory" (torch's CPU allocator), a ``MemoryError``."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _is_float(logits: Any) -> bool:
    if isinstance(logits, np.ndarray):
        return bool(np.issubdtype(logits.dtype, np.floating))
    return bool(logits.is_floating_point())


class IdentityEvidence(EvaluationError):
    """A kernel saw, while running, that it does not compute on what it was given: the eval set has an
    id beyond its vocabulary (``check`` ``vocabulary``), or a server scored other ids than it was sent
    (``prompt``: a BOS added, a template applied). The identity check turns it into an ``invalid``
    finding with the fix (``identity/runner.py``); uncaught, it is still exit 3 with ``message``."""

    def __init__(self, check: str, role: str, message: str, evidence: dict[str, Any]) -> None:
        super().__init__(message)
        self.check, self.role, self.evidence = check, role, evidence


class Kernel(ABC):
    """A program producing outputs for batches. Use as a context manager."""

    kind: str = "abstract"

    def __init__(self, spec: Any, *, role: str) -> None:
        self.spec = spec
        self.role = role
        self._opened = False
        self.seconds = 0.0
        self.notes: list[str] = []

    @property
    def label(self) -> str:
        """How messages name this kernel, e.g. ``candidate (torch, bf16)``."""
        return f"{self.role} ({self.describe()})"

    def describe(self) -> str:
        return self.kind

    def time_to_first_token(self, ids: list[int], sample_id: str) -> float | None:
        """Seconds to the first streamed token of a generation from ``ids`` (stage 3's ``ttft_ms``);
        None for a kernel that does not stream (every local kind; an HTTP kernel whose API's stream
        promote does not know)."""
        return None

    def server_rss_bytes(self) -> float | None:
        """Resident memory of the process that serves this kernel elsewhere (an HTTP server's
        `/metrics`); None for a kernel running in promote's own process, whose RSS promote reads itself."""
        return None

    def open(self) -> None:
        if not self._opened:
            with contained(self.label, "opening the kernel"), loading():  # long-lived: see promote/heap.py
                self._open_impl()
            self._opened = True

    def close(self) -> None:
        if self._opened:
            self._opened = False
            with contained(self.label, "closing the kernel"):
                self._close_impl()
            released()  # what open() froze may be garbage now (promote/heap.py)

    def __enter__(self) -> Kernel:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, batch: Batch | TensorBatch) -> Outputs:
        """Run one batch, time it, and check the outputs are what the task needs."""
        if not self._opened:
            raise RuntimeError(f"{self.label}: run() before open()")
        start = time.perf_counter()
        with contained(self.label, "running a batch"):
            outputs = self._run_impl(batch)
            self.seconds += time.perf_counter() - start
            self._check(outputs, batch)
        return outputs

    def bind(self, evalset: EvalSet) -> None:
        """See the whole eval set before the first batch (records join their ids to it here)."""
        with contained(self.label, "binding the eval set"):
            self._bind_impl(evalset)

    def _bind_impl(self, evalset: EvalSet) -> None:  # noqa: B027 - optional hook
        pass

    def _check(self, outputs: Outputs, batch: Batch | TensorBatch) -> None:
        if isinstance(batch, TensorBatch):
            self._check_named(outputs, batch)
            return
        if outputs.mask is not None and outputs.mask.shape != batch.input_ids.shape:
            raise UsageError(f"{self.label}: mask must be [batch, seq] = {list(batch.input_ids.shape)}, "
                             f"got {list(outputs.mask.shape)}")
        if outputs.logits is None and outputs.named is None:
            self._check_topk(outputs, batch)
            return
        logits = outputs.logits
        if logits is None:
            raise UsageError(f"{self.label}: the task `causal-lm` needs logits, but this kernel returned named "
                             f"outputs {sorted(outputs.named or {})}; use `data.task: tensor` to compare them")
        b, t = batch.input_ids.shape
        if logits.ndim != 3 or logits.shape[0] != b or logits.shape[1] != t:
            raise UsageError(
                f"{self.label}: the task `causal-lm` expects logits shaped [batch, seq, vocab] = [{b}, {t}, V], "
                f"got {list(logits.shape)}; make the model's forward return next-token logits"
            )
        if not _is_float(logits):
            raise UsageError(f"{self.label}: logits must be floating point, got {logits.dtype}")
        self.refuse_tokens_beyond(batch, logits.shape[2])

    def refuse_tokens_beyond(self, batch: Batch, vocab: int) -> None:
        """A usage error naming the first sample with a token id outside ``0..vocab-1`` (a kernel that
        knows its vocabulary before running, `kind: vllm`, asks before sending the batch)."""
        beyond = batch.first_token_beyond(vocab)
        if beyond is not None:
            sample, position = beyond
            raise IdentityEvidence(
                "vocabulary", self.role,
                f"{self.label}: eval set line {sample.line}: sample `{sample.id}` has token id "
                f"{sample.input_ids[position]} at position {position} (input_ids[{position}]), beyond the "
                f"model's vocabulary of {vocab} ids (0..{vocab - 1})",
                {"sample": sample.id, "line": sample.line, "position": position,
                 "token": int(sample.input_ids[position]), "vocab": vocab})

    def _check_named(self, outputs: Outputs, batch: TensorBatch) -> None:
        """`task: tensor`: at least one output, each an array whose first axis is the batch."""
        if not outputs.named:
            raise UsageError(f"{self.label}: the task `tensor` needs named outputs (tensors, possibly nested in "
                             "dicts, lists, tuples, dataclasses or HF ModelOutputs); the model returned none")
        for key, array in outputs.named.items():
            if not isinstance(array, np.ndarray):
                raise UsageError(f"{self.label}: output `{key}` is {type(array).__name__}, not an array")
            if array.ndim == 0 or array.shape[0] != batch.size:
                raise UsageError(
                    f"{self.label}: the task `tensor` expects every output to have a leading batch dimension "
                    f"of {batch.size} (samples in this batch), but output `{key}` has shape {list(array.shape)}; "
                    "return one row per sample (e.g. keep the batch axis instead of reducing over it)")

    def _check_topk(self, outputs: Outputs, batch: Batch) -> None:
        b, t = batch.input_ids.shape
        parts = {"topk_ids": outputs.topk_ids, "topk_logprobs": outputs.topk_logprobs,
                 "target_logprobs": outputs.target_logprobs}
        missing = [name for name, value in parts.items() if value is None]
        if outputs.is_sampled:  # sampled-token outputs: the target log-prob alone
            if outputs.target_logprobs.shape != (b, t):
                raise UsageError(f"{self.label}: sampled-token outputs must be target_logprobs [{b}, {t}], got "
                                 f"{list(outputs.target_logprobs.shape)}")
            return
        if missing:
            raise UsageError(f"{self.label}: outputs have neither `logits`, the top-k set, nor `target_logprobs` "
                             "alone; missing "
                             f"{', '.join(missing)}")
        ids, lps, target = outputs.topk_ids, outputs.topk_logprobs, outputs.target_logprobs
        if ids.ndim != 3 or ids.shape[:2] != (b, t) or lps.shape != ids.shape or target.shape != (b, t):
            raise UsageError(f"{self.label}: top-k outputs must be topk_ids/topk_logprobs [{b}, {t}, K] and "
                             f"target_logprobs [{b}, {t}], got {list(ids.shape)}, {list(lps.shape)}, "
                             f"{list(target.shape)}")

    @property
    def capabilities(self) -> frozenset[str]:
        """What this kernel can do (``contract/kinds.py``: rerun, modules, http), from its kind."""
        from promote.contract.kinds import capabilities_of

        return capabilities_of(getattr(self.spec, "kind", self.kind))

    def identity_facts(self) -> dict[str, Any]:
        """What this kernel says about what it computes on, for the identity check (``identity/api.py``
        ``SideFacts``, docs/identity.md). Keys, each optional: ``vocab`` (rows it scores, when known before
        a batch), ``tokenizer_vocab``, ``scored_ids`` (sample id → the ids it actually scored, where it can
        see them: a server's echo), ``declared`` (what it declares about its values and sampler: a records
        header, a server flag), ``files`` (name → a path to fingerprint by content: ``weights``,
        ``config``, ``tokenizer``), ``server`` (a server's own account: ``/v1/models``, ``/version``)."""
        return {}

    def fingerprint(self) -> dict[str, Any]:
        """Environment facts that change numerics: library versions, device, flags, threads."""
        return {
            "kind": self.kind,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "numpy": np.__version__,
            **self._fingerprint_impl(),
        }

    @abstractmethod
    def _open_impl(self) -> None: ...

    @abstractmethod
    def _run_impl(self, batch: Batch | TensorBatch) -> Outputs: ...

    def _close_impl(self) -> None:  # noqa: B027 - optional hook
        pass

    def _fingerprint_impl(self) -> dict[str, Any]:
        return {}


class WrappedKernel(Kernel):
    """A kernel around another one (fault injectors, calibration's replay and rebatching): the inner
    kernel's spec, role, kind and lifecycle, so a wrapper only overrides what it changes. Its
    fingerprint is the inner one's (the outer ``fingerprint()`` adds the kind again)."""

    def __init__(self, inner: Kernel) -> None:
        super().__init__(inner.spec, role=inner.role)
        self.inner = inner
        self.kind = inner.kind

    def describe(self) -> str:
        return self.inner.describe()

    def _open_impl(self) -> None:
        self.inner.open()

    def _bind_impl(self, evalset: EvalSet) -> None:
        self.inner.bind(evalset)

    def _run_impl(self, batch: Batch | TensorBatch) -> Outputs:
        return self.inner.run(batch)

    def _close_impl(self) -> None:
        self.inner.close()

    def _fingerprint_impl(self) -> dict[str, Any]:
        inner = self.inner.fingerprint()
        inner.pop("kind", None)
        return inner

    @property
    def capabilities(self) -> frozenset[str]:
        return self.inner.capabilities

    def identity_facts(self) -> dict[str, Any]:
        return self.inner.identity_facts()

    def time_to_first_token(self, ids: list[int], sample_id: str) -> float | None:
        return self.inner.time_to_first_token(ids, sample_id)

    def server_rss_bytes(self) -> float | None:
        return self.inner.server_rss_bytes()


def evaluation_failure(label: str, what: str, exc: BaseException) -> BaseException:
    """What to raise for ``exc`` escaping user code (factory, forward, model import): exit 3 with the
    cause named and no traceback, whatever ``exc`` is — a ``SystemExit(0)`` must never read as a pass.

    A real signal stays a signal: :class:`~promote.signals.Interrupted` itself, or anything user code
    raised after one arrived, is returned as the interruption (exit 130/143).
    """
    if isinstance(exc, signals.Interrupted):
        return exc
    signum = signals.received()
    if signum is not None:
        return signals.Interrupted(signum)
    return EvaluationError(f"{label}: {what} {_what_it_did(exc)}")


def _what_it_did(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return (f"called sys.exit({exc.code!r}) (SystemExit); model code must not end the process. If it "
                "parses arguments (argparse), it read promote's own command line: pass values to the "
                "factory instead")
    if isinstance(exc, KeyboardInterrupt):
        return "raised KeyboardInterrupt (no Ctrl-C reached promote)"
    text = str(exc)
    return f"raised {type(exc).__name__}: {text}" if text else f"raised {type(exc).__name__}"


@contextlib.contextmanager
def contained(label: str, what: str) -> Iterator[None]:
    """Around every kernel lifecycle call: a ``BaseException`` that is not an ``Exception`` (SystemExit,
    KeyboardInterrupt, GeneratorExit, a user class) from user code anywhere below becomes an
    evaluation error. Ordinary exceptions keep their path (typed errors carry their own exit code)."""
    try:
        yield
    except Exception:
        raise
    except BaseException as exc:
        raise evaluation_failure(label, what, exc) from None
