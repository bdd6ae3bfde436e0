"""`kind: vllm`: vLLM's own engine, every prompt position's logits read through shared memory.

The HTTP route (`kind: openai`, `top_k: all`) carries the whole vocabulary as JSON, ~72 bytes per
vocabulary entry per position: at V = 32 000 a 32-token request is 71 MB and takes ~13 s where the
engine needs ~0.3 s (docs/runtime.md has the measurements). Here the engine runs in a worker
process of the vLLM venv (vllm_worker.py; its pins cannot share promote's interpreter) with the
engine core in that process, as RL frameworks colocate it; the logits are captured inside the
engine where vLLM computes them for ``prompt_logprobs`` and written to a shared file per batch
(shared_logits.py), which promote maps without a copy. The numbers are the engine's own float32
logits, so every metric is exact, and each batch is checked against vLLM's own prompt log-prob
output before it is used.

The worker is promote's own file, run as ``PYTHON -I vllm_worker.py`` (no code from the contract's
folder or the working directory). Everything it answers is checked (worker_channel.py: deadlines,
size caps, one JSON object per line); a worker that fails, dies or hangs ends the check with exit 3
naming the cause and quoting its log's tail, and it is always stopped by PID.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from promote.contract.kernel_specs import VllmKernelSpec
from promote.data import Batch
from promote.errors import EvaluationError, UsageError
from promote.kernels import launch
from promote.kernels.base import Kernel, Outputs
from promote.kernels.openai_launch import refuse_amx_fatal, served_dtype
from promote.kernels.shared_logits import SharedLogits
from promote.kernels.worker_channel import Channel, WorkerFailure

WORKER = Path(__file__).with_name("vllm_worker.py")
PROBE = list(range(8))  # never 3 or 4 tokens: they kill bf16 vLLM on AMX CPUs (docs/runtime.md)
VOCAB_MAX = 1 << 22
FACTS_LIMIT = 64 * 1024


class VllmKernel(Kernel):
    kind = "vllm"
    spec: VllmKernelSpec
    worker: launch.Server | None = None
    _failed = False

    def describe(self) -> str:
        return f"vllm, {self.spec.model_display} in a worker ({self.spec.dtype})"

    def _open_impl(self) -> None:
        self.facts: dict[str, Any] = {}
        self.shared = SharedLogits(self.label)
        try:
            self._start()
            self._score([PROBE], "probe (8 tokens)", None)
        except BaseException as exc:  # never opened, so close() would not stop the worker
            self._failed = self._failed or isinstance(exc, Exception)
            self._close_impl()
            raise

    def _start(self) -> None:
        from promote import console

        spec = self.spec
        if shutil.which(spec.python) is None:
            raise UsageError(f"{self.label}: `python: {spec.python}` cannot be run: not found or not executable "
                             "(build the pinned vLLM venv with `bash tools/vllm_env.sh`, or point `python` at a "
                             "venv with vLLM, e.g. through ${PROMOTE_VLLM_PYTHON})")
        env = {**launch.VLLM_ENV, "VLLM_CPU_KVCACHE_SPACE": "1", **dict(spec.env),
               "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
        try:
            self.worker = launch.spawn([spec.python, "-I", str(WORKER)], port=0, env=env, job=f"{self.role}-vllm",
                                       log_dir=spec.log_dir, pipes=True)
        except (launch.LaunchError, OSError) as exc:
            raise UsageError(f"{self.label}: could not start the vLLM worker: {exc}") from None
        self.channel = Channel(self.worker)
        console.message(f"promote: started the {self.role} vLLM engine (pid {self.worker.pid}) on {spec.model_display};"
                        f" log {self.worker.log}; waiting for it (at most {spec.start_timeout_s:g} s)")
        config = {"model": str(spec.model), "dtype": spec.dtype, "max_model_len": spec.max_model_len,
                  "engine_args": dict(spec.engine_args)}
        answer = self._call(config, timeout=spec.start_timeout_s, limit=FACTS_LIMIT, what="the engine start")
        try:
            self.facts = _facts(answer)
        except ValueError as exc:
            raise self._failure(str(exc)) from None
        self.vocab, self.max_len = self.facts["vocab"], self.facts["max_model_len"]

    def _call(self, message: dict[str, Any], *, timeout: float, limit: int, what: str) -> dict[str, Any]:
        try:
            answer = self.channel.call(message, timeout=timeout, limit=limit, what=what)
        except WorkerFailure as exc:
            raise self._failure(f"the vLLM worker {exc}") from None
        if answer.get("ok") is not True:
            error = answer.get("error")
            raise self._failure(f"the vLLM worker failed {what}: "
                                f"{error[:2000] if isinstance(error, str) else 'no error given'}")
        return answer

    def _failure(self, text: str) -> EvaluationError:
        self._failed = True
        worker = self.worker
        if worker is None:
            return EvaluationError(f"{self.label}: {text}")
        return EvaluationError(f"{self.label}: {text}. The worker {worker.describe_death()}; its log "
                               f"is kept at {worker.log}, last lines:\n{worker.log_tail()}")

    def _close_impl(self) -> None:
        if self.worker is not None:
            keep = self._failed or self.spec.keep_log
            channel = getattr(self, "channel", None)
            if channel is not None:
                channel.close(keep_log=keep)
            else:
                self.worker.stop(keep_log=keep)
            if keep:
                self.notes.append(f"{self.label}: the vLLM worker's log is kept at {self.worker.log}")
            self.worker = None
        shared = getattr(self, "shared", None)
        if shared is not None:
            shared.close()

    def _bind_impl(self, evalset: Any) -> None:
        refuse_amx_fatal(served_dtype(self.spec.dtype, self.spec.model), self.label, evalset.samples,
                         where="the vLLM engine", dtype_key="dtype")

    def _run_impl(self, batch: Batch) -> Outputs:
        self.refuse_tokens_beyond(batch, self.vocab)
        prompts = [list(map(int, s.input_ids)) for s in batch.samples]
        for sample, prompt in zip(batch.samples, prompts, strict=True):
            if len(prompt) > self.max_len - 1:
                raise UsageError(f"{self.label}: eval set line {sample.line}: sample `{sample.id}` has {len(prompt)} "
                                 f"tokens; the engine takes at most {self.max_len - 1} (`max_model_len` "
                                 f"{self.max_len} minus the one token it generates): raise `max_model_len` or "
                                 "shorten the sample")
        logits = self._score(prompts, f"batch starting at sample `{batch.samples[0].id}`", batch.input_ids.shape[1])
        mask = np.zeros(batch.input_ids.shape, dtype=bool)
        for row, prompt in enumerate(prompts):
            mask[row, : len(prompt) - 1] = True
        return Outputs(logits=logits, mask=mask, source=f"vLLM {self.facts.get('vllm')} engine (pid "
                                                        f"{self.worker.pid if self.worker else '?'})")

    def _score(self, prompts: list[list[int]], what: str, width: int | None) -> np.ndarray:
        """Every prompt's logits [B, T, V] from the worker, checked against the engine's own answer."""
        shape = (len(prompts), width or max(map(len, prompts)), self.vocab)
        path = self.shared.allocate(shape)
        try:
            limit = FACTS_LIMIT + 40 * sum(map(len, prompts))
            answer = self._call({"op": "score", "prompts": prompts, "out": str(path), "shape": list(shape)},
                                timeout=self.spec.timeout_s, limit=limit, what=f"scoring the {what}")
        except BaseException:
            self.shared.discard(path)
            raise
        logits = self.shared.take(path, shape)
        self._verify(answer, prompts, logits, what)
        return logits

    def _verify(self, answer: dict[str, Any], prompts: list[list[int]], logits: np.ndarray, what: str) -> None:
        """The answer covers every prompt position, and each captured row holds vLLM's own value of the
        prompt token there (``RequestOutput.prompt_logprobs`` in raw-logit mode): exact, NaN for NaN."""
        rows, target = answer.get("rows"), answer.get("target")
        expected = [len(p) - 1 for p in prompts]
        if rows != expected or not isinstance(target, list) or len(target) != len(prompts):
            raise self._failure(f"the vLLM worker's answer to the {what} does not cover its prompts "
                                f"(rows {str(rows)[:200]}, expected {str(expected)[:200]})")
        for row, (prompt, values) in enumerate(zip(prompts, target, strict=True)):
            if not isinstance(values, list) or len(values) != expected[row] or not all(
                    type(v) in (float, int) for v in values):
                raise self._failure(f"the vLLM worker's answer to the {what}: row {row} is not "
                                    f"{expected[row]} numbers")
            n = expected[row]
            got = logits[row, np.arange(n), np.asarray(prompt[1:], dtype=np.int64)]
            want = np.asarray(values, dtype=np.float32)
            bad = np.flatnonzero(~((got == want) | (np.isnan(got) & np.isnan(want))))
            if bad.size:
                t = int(bad[0])
                raise self._failure(f"the logits read back for the {what}, row {row}, position {t} give "
                                    f"{float(got[t])!r} for token {prompt[t + 1]}, but the engine reported "
                                    f"{float(want[t])!r} ({bad.size} positions differ): the shared file does not "
                                    "hold what the engine computed")

    def _fingerprint_impl(self) -> dict[str, Any]:
        keys = ("vllm", "torch", "dtype", "vocab", "max_model_len", "runner", "threads")
        facts = {k: self.facts.get(k) for k in keys}
        return {"model": self.spec.model_display, **facts, "engine_args": dict(self.spec.engine_args),
                "values": "raw logits", "exact_metrics": "all", "transport": "shared memory"}


def _facts(answer: dict[str, Any]) -> dict[str, Any]:
    """The worker's start-up facts, typed and bounded (the worker is another program: trust nothing)."""
    vocab, max_len = answer.get("vocab"), answer.get("max_model_len")
    if type(vocab) is not int or not 8 <= vocab <= VOCAB_MAX or type(max_len) is not int or max_len < 9:
        raise ValueError(f"the vLLM worker reported vocabulary {str(vocab)[:40]} and max_model_len "
                              f"{str(max_len)[:40]}: expected integers, 8 ≤ vocabulary ≤ {VOCAB_MAX}, "
                              "max_model_len ≥ 9 (the probe is 8 tokens)")
    text = {k: str(answer.get(k))[:80] for k in ("vllm", "torch", "dtype", "runner")}
    threads = answer.get("threads") if type(answer.get("threads")) is int else None
    return {"vocab": vocab, "max_model_len": max_len, **text, "threads": threads}
