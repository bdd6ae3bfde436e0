"""The `vllm` kernel's worker: vLLM's own engine, in its own venv, handing every prompt position's
logits to promote through shared memory instead of JSON (docs/runtime.md, "`kind: vllm`").

promote runs this file as a script with the vLLM venv's interpreter (``PYTHON -I vllm_worker.py``):
vLLM pins torch/transformers versions that cannot share promote's interpreter, so the engine lives
in a second process. It imports only the standard library, torch and vLLM (promote is not
installed in that venv), and ``-I`` keeps the working directory and ``PYTHONPATH`` off its path.

How the logits are captured. vLLM 0.32's V1 model runner computes full logits for every prompt
position only when a request asks for ``prompt_logprobs``: ``GPUModelRunner._get_prompt_logprobs_dict``
calls ``model.compute_logits`` once per request on that request's slice of the step's hidden
states (a chunk of the prompt when prefill is chunked). The engine core runs in this process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``, as RL frameworks colocate it), so two instance-level wrappers
see those calls: the one around ``_get_prompt_logprobs_dict`` marks the step, the one around
``compute_logits`` finds the request by the slice's row offset (``query_start_loc``), its prompt
position by ``num_computed_tokens``, and copies the logits (float32) into the batch's shared file
at ``[row, position]``. Nothing is rendered per vocabulary entry. During the step, vLLM's
``gather_logprobs`` keeps only the prompt token's value (a gather): the rank it would count by a
pass over the whole vocabulary at every position is never read. That value is vLLM's own output
(``RequestOutput.prompt_logprobs``) and is sent back, so promote checks every captured row against
the engine's own answer (a mismapped row or a torn file cannot pass).

Protocol: one JSON object per line. stdin: the configuration first (model, dtype, max_model_len,
engine_args), then ``{"op": "score", "prompts": [[ids]], "out": PATH, "shape": [B, T, V]}`` per
batch (``"op": "prefill"``: vLLM's own time for the same prompts, nothing captured, for the
benchmark), ``{"op": "close"}`` last. Answers go to the process's original stdout, one line each
(``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``); fd 1 is pointed at stderr first, so
whatever vLLM prints lands in the log promote keeps, never in the protocol.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import Any

REQUEST_ID = re.compile(r"^b(\d+)r(\d+)(?:-[0-9A-Za-z]+)?$")  # ours, plus vLLM's random suffix
RESERVED = ("model", "dtype", "max_model_len", "logprobs_mode", "enable_prefix_caching", "skip_tokenizer_init")


class Capture:
    """The two wrappers and where the current batch's logits go."""

    def __init__(self) -> None:
        self.out: Any = None  # torch float32 [B, T, V] on the shared file, during a batch
        self.batch = -1
        self.filled: dict[int, int] = {}  # row -> positions written
        self.base: Any = None  # the step's hidden states, while vLLM computes prompt logits
        self.runner: Any = None

    def install(self, worker: Any) -> str:
        """Runs in the engine's worker (``LLM.collective_rpc``; in this process)."""
        runner = worker.model_runner
        for name in ("_get_prompt_logprobs_dict", "model", "query_start_loc", "input_batch", "requests", "sampler"):
            if not hasattr(runner, name):
                raise RuntimeError(f"vLLM's model runner {type(runner).__name__} has no `{name}`: promote's capture "
                                   "is written against vLLM 0.32's V1 runner")
        self.runner = runner
        prompt_logprobs, compute_logits = runner._get_prompt_logprobs_dict, runner.model.compute_logits
        gather = runner.sampler.gather_logprobs

        def marked(hidden_states: Any, num_scheduled_tokens: Any) -> Any:
            self.base = hidden_states
            try:
                return prompt_logprobs(hidden_states, num_scheduled_tokens)
            finally:
                self.base = None

        def captured(hidden_states: Any) -> Any:
            logits = compute_logits(hidden_states)
            if self.base is not None and self.out is not None:
                self.store(hidden_states, logits)
            return logits

        def target_only(logprobs: Any, num_logprobs: int, token_ids: Any) -> Any:
            if self.base is None or self.out is None or num_logprobs != 0:
                return gather(logprobs, num_logprobs, token_ids)
            import torch
            from vllm.v1.outputs import LogprobsTensors

            ids = token_ids.unsqueeze(-1)
            return LogprobsTensors(ids.to(torch.int32), logprobs.gather(-1, ids),
                                   torch.zeros(ids.shape[0], dtype=torch.int64, device=ids.device))

        runner._get_prompt_logprobs_dict = marked
        runner.model.compute_logits = captured
        runner.sampler.gather_logprobs = target_only
        return type(runner).__name__

    def store(self, hidden_states: Any, logits: Any) -> None:
        """Copy one request's prompt logits to ``out[row, first:first + n]``."""
        base, runner = self.base, self.runner
        step = base.stride(0) * base.element_size()
        offset, rest = divmod(hidden_states.data_ptr() - base.data_ptr(), step)
        starts = runner.query_start_loc.np
        ids = runner.input_batch.req_ids
        matches = [rid for i, rid in enumerate(ids) if rid is not None and int(starts[i]) == offset]
        if rest or len(matches) != 1:
            raise RuntimeError(f"prompt logits at hidden-state row {offset} match {len(matches)} requests")
        found = REQUEST_ID.match(matches[0])
        if found is None or int(found.group(1)) != self.batch:
            raise RuntimeError(f"prompt logits of request {matches[0]!r}, which promote did not send in this batch")
        row, first = int(found.group(2)), int(runner.requests[matches[0]].num_computed_tokens)
        n, width = logits.shape[0], logits.shape[-1]
        if row >= self.out.shape[0] or first + n > self.out.shape[1] or width != self.out.shape[2]:
            raise RuntimeError(f"prompt logits [{n}, {width}] at row {row}, position {first} do not fit the batch "
                               f"{list(self.out.shape)}")
        self.out[row, first:first + n].copy_(logits)
        self.filled[row] = self.filled.get(row, 0) + n


class Engine:
    """vLLM's ``LLM`` with the capture installed; scores one batch of token-id prompts at a time."""

    def __init__(self, config: dict[str, Any]) -> None:
        from vllm import LLM, SamplingParams

        args = dict(config.get("engine_args") or {})
        clash = sorted(set(args) & set(RESERVED))
        if clash:
            raise ValueError(f"engine_args may not set {clash}: promote sets them")
        if config.get("max_model_len"):
            args["max_model_len"] = int(config["max_model_len"])
        args.setdefault("enforce_eager", True)
        args.setdefault("seed", 0)
        self.llm = LLM(model=str(config["model"]), dtype=str(config.get("dtype", "auto")), logprobs_mode="raw_logits",
                       enable_prefix_caching=False, skip_tokenizer_init=True, **args)
        self.engine = self.llm.llm_engine
        self.capture = Capture()
        self.runner = self.llm.collective_rpc(self.capture.install)[0]
        self.params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        self.vocab = int(self.engine.model_config.get_vocab_size())
        self.max_len = int(self.engine.model_config.max_model_len)
        self.batches = 0

    def facts(self) -> dict[str, Any]:
        import torch
        import vllm

        return {"vocab": self.vocab, "max_model_len": self.max_len, "vllm": vllm.__version__,
                "torch": torch.__version__, "dtype": str(self.engine.model_config.dtype).removeprefix("torch."),
                "runner": self.runner, "threads": torch.get_num_threads()}

    def score(self, message: dict[str, Any]) -> dict[str, Any]:
        prompts, shape = message["prompts"], [int(x) for x in message["shape"]]
        self.check(prompts, shape)
        import torch

        size = shape[0] * shape[1] * shape[2]
        if os.stat(message["out"]).st_size != size * 4:
            raise ValueError(f"the shared file is not {size * 4} bytes")
        mapped = torch.from_file(str(message["out"]), shared=True, size=size, dtype=torch.float32)
        self.capture.out = mapped.view(*shape)
        self.capture.batch, self.capture.filled = self.batches, {}
        start = time.perf_counter()
        try:
            finished = self.run(prompts)
        finally:
            self.capture.out = None
            self.batches += 1
        seconds = time.perf_counter() - start
        targets = []
        for row, prompt in enumerate(prompts):
            if self.capture.filled.get(row, 0) != len(prompt) - 1:
                raise RuntimeError(f"row {row}: captured {self.capture.filled.get(row, 0)} positions of "
                                   f"{len(prompt) - 1}")
            answer = finished[f"b{self.batches - 1}r{row}"].prompt_logprobs or [None]
            targets.append([float(lp[tok].logprob) for lp, tok in zip(answer[1:], prompt[1:], strict=True)])
        return {"ok": True, "rows": [len(p) - 1 for p in prompts], "target": targets, "engine_s": seconds}

    def prefill(self, message: dict[str, Any]) -> dict[str, Any]:
        """vLLM's own time for the same prompts, nothing captured (bench/bench_vllm_paths.py's baseline):
        a plain prefill (`prompt_logprobs` off: logits of the last position only) or vLLM's own
        prompt log-probs (`prompt_logprobs: 0`, every position's logits, its own rank count)."""
        prompts = message["prompts"]
        self.check(prompts, [len(prompts), max(map(len, prompts)), self.vocab])
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, temperature=0.0, detokenize=False,
                                prompt_logprobs=0 if message.get("prompt_logprobs") else None)
        start = time.perf_counter()
        try:
            self.run(prompts, params)
        finally:
            self.batches += 1
        return {"ok": True, "engine_s": time.perf_counter() - start}

    def check(self, prompts: Any, shape: list[int]) -> None:
        if len(shape) != 3 or shape[0] != len(prompts) or shape[2] != self.vocab:
            raise ValueError(f"shape {shape} does not fit {len(prompts)} prompts and a vocabulary of {self.vocab}")
        for prompt in prompts:
            if not isinstance(prompt, list) or not 1 <= len(prompt) <= min(shape[1], self.max_len - 1):
                raise ValueError(f"a prompt must be 1..{min(shape[1], self.max_len - 1)} token ids")
            if not all(type(t) is int and 0 <= t < self.vocab for t in prompt):
                raise ValueError(f"token ids must be integers in [0, {self.vocab})")

    def run(self, prompts: list[list[int]], params: Any = None) -> dict[str, Any]:
        base = f"b{self.batches}r"
        for row, prompt in enumerate(prompts):
            self.engine.add_request(f"{base}{row}", {"prompt_token_ids": prompt}, params or self.params)
        finished: dict[str, Any] = {}
        while self.engine.has_unfinished_requests():
            for output in self.engine.step():
                if output.finished:
                    finished[output.request_id] = output
        missing = [f"{base}{row}" for row in range(len(prompts)) if f"{base}{row}" not in finished]
        if missing:
            raise RuntimeError(f"vLLM finished without answering {missing[:3]}")
        return finished


def main() -> int:
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # vLLM's own prints go to the log, never into the protocol
    sys.stdout = sys.stderr
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the capture needs the engine core in this process

    def reply(obj: dict[str, Any]) -> None:
        answers.write(json.dumps(obj) + "\n")

    try:
        engine = Engine(json.loads(sys.stdin.readline()))
    except Exception as exc:  # noqa: BLE001 - any start-up failure is reported, then the worker ends
        reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return 3
    reply({"ok": True, **engine.facts()})
    for line in sys.stdin:
        try:
            message = json.loads(line)
            if message.get("op") == "close":
                return 0
            reply(engine.prefill(message) if message.get("op") == "prefill" else engine.score(message))
        except Exception as exc:  # noqa: BLE001 - reported to promote, which ends the check (exit 3)
            reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
