"""`kind: openai`: a kernel behind an HTTP serving API (vLLM, an OpenAI-compatible server, SGLang, TGI).

Each eval sample's token ids are sent as a token-id prompt; the teacher-forced prompt log-probs that
come back (openai_api.py) become the same ``Outputs`` a local kernel gives, so every stage-1/2 metric
works through HTTP:

* ``top_k: all`` (vLLM ``--max-logprobs -1``): every token id at every position → full ``logits``
  rows; with ``--logprobs-mode raw_logits`` they are the engine's logits, otherwise its log-probs
  (the same distribution). Every metric is exact.
* ``top_k: K``: top-K ids and log-probs plus the actual token's log-prob → the records' top-k path:
  log-ratio metrics are exact, KL/TV/drift are certified bounds (docs/records.md).

Opening the kernel sends one probe request, so a server that is down, lacks prompt log-probs or caps
``top_k`` below what the contract asks fails before the eval set runs, with the fix in the message.
The probe is 8 tokens long: vLLM 0.32's CPU backend kills its engine on a 3- or 4-token bfloat16
prompt on CPUs with AMX (docs/runtime.md), so a probe of that length would kill a healthy server.

With `launch:` (and no `url`) the kernel starts the server itself when it opens and stops it by PID
when it closes (kernels/launch.py). A server that answered and then stops answering is reported as
dead, with the log's tail when promote launched it.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from promote.data import Batch
from promote.errors import EvaluationError, UsageError
from promote.kernels import launch
from promote.kernels import openai_api as apis
from promote.kernels.base import IdentityEvidence, Kernel, Outputs
from promote.kernels.http_client import Client, HttpFailure
from promote.kernels.openai_launch import died_message, refuse_amx_short_prompts, start_server
from promote.redact import register_secret


class OpenAIKernel(Kernel):
    kind = "openai"
    counts_in_fingerprint = True  # requests/retries/errors: fingerprinted again when the run ends

    server: launch.Server | None = None
    _answered = 0
    _server_failed = False

    @property
    def url(self) -> str:
        """The API base: the contract's `url`, or the launched server's once it runs."""
        return self.server.url if self.server is not None else self.spec.url

    def describe(self) -> str:
        where = self.url or "a server it launches"
        return f"openai, {self.spec.api} {self.spec.model} at {where}"

    def _open_impl(self) -> None:
        if self.spec.launches:
            self.server = start_server(self.spec, self.role, self.label)
        try:
            self._connect()
        except BaseException as exc:  # the kernel never opened, so close() would not stop the server
            self._server_failed = self._server_failed or isinstance(exc, Exception)  # a signal is no failure
            self._close_impl()
            raise

    def _close_impl(self) -> None:
        if self.server is not None:
            keep = self._server_failed or bool(self.spec.launch and self.spec.launch.keep_log)
            self.server.stop(keep_log=keep)
            if keep:
                self.notes.append(f"{self.label}: the launched server's log is kept at {self.server.log}")
            self.server = None

    def _bind_impl(self, evalset: Any) -> None:
        if self.server is not None:
            refuse_amx_short_prompts(self.spec, self.label, evalset.samples)
        if evalset.samples:  # the earliest point both the vocabulary (the probe's) and every prompt are known
            longest = max(evalset.samples, key=lambda s: len(s.input_ids))
            self._refuse_oversized(len(longest.input_ids), longest.id)

    def _refuse_oversized(self, tokens: int, sample_id: str) -> None:
        """Exit 3 before sending a `top_k: all` prompt whose answer could exceed what promote accepts."""
        why = apis.oversized_full_vocabulary(tokens, self.spec.top_k, self.vocab)
        if why is not None:
            raise EvaluationError(f"{self.label}: sample `{sample_id}` was not sent to {self.endpoint}: {why}")

    def _connect(self) -> None:
        spec = self.spec
        self._pending: dict[str, int] = {}  # sample id → prompt tokens, sent and not yet answered
        key = None
        if spec.api_key_env:
            key = os.environ.get(spec.api_key_env)
            if not key:
                raise UsageError(f"{self.label}: `api_key_env: {spec.api_key_env}` names an environment variable "
                                 "that is not set; export it (the key is sent as a Bearer token, never printed)")
            register_secret(key)
        if spec.api == "tgi":
            raise UsageError(f"{self.label}: TGI's /generate returns prompt log-probs for the actual tokens only (no "
                             "top-n at prompt positions) and takes text, not token ids, so it cannot be compared "
                             "teacher-forced; serve the model with vLLM (`api: vllm`) or SGLang (`api: sglang`)")
        if spec.top_k == apis.ALL and spec.api == "sglang":
            raise UsageError(f"{self.label}: `top_k: all` needs vLLM (`--max-logprobs -1`); SGLang returns at most "
                             "`top_logprobs_num` alternatives: give `top_k` a number")
        self.client = Client(timeout_s=spec.timeout_s, retries=spec.retries, backoff_s=spec.backoff_s, api_key=key,
                             origin_url=self.url)
        self.vocab: int | None = None
        self.endpoint = apis.endpoint(spec.api, self.url)
        self.values_are = "unknown"
        self._probe()
        if spec.top_k == apis.ALL:
            self.notes.append(f"{self.label}: the whole vocabulary through HTTP as {self.values_are}: every metric "
                              "is exact")
        else:
            self.notes.append(f"{self.label}: top-{spec.top_k} through HTTP: log_ratio, abs_log_ratio and "
                              "ratio_outside are exact; KL, TV, logit drift and argmax are certified bounds")

    def _probe(self) -> None:
        """One short request: is the server up, does it score prompts, does it allow ``top_k``? Eight
        tokens, never 3 or 4 (module docstring)."""
        ids = list(range(8))
        try:
            scored = self._score(ids, "probe")
        except IdentityEvidence:  # a server that changes prompts: the first sample says so, as identity
            return
        if scored.dense is not None:
            self.vocab = scored.dense.shape[1]
            total = float(np.log(np.exp(scored.dense[0] - scored.dense[0].max()).sum()) + scored.dense[0].max())
            self.values_are = "log-probs" if abs(total) < 1e-3 else "raw logits"
        elif scored.top_values is not None and float(np.max(scored.top_values)) > 1e-4:
            raise UsageError(f"{self.label}: the server returns raw logits (`--logprobs-mode raw_logits`), which a "
                             "top-k answer cannot normalise; use `top_k: all` (with `--max-logprobs -1`) or restart "
                             "the server with `--logprobs-mode raw_logprobs`")
        else:
            self.values_are = "log-probs"

    def _fail(self, failure: HttpFailure, what: str, tokens: int | None = None) -> Exception:
        spec, where = self.spec, self.endpoint
        gone = self.server is not None and not self.server.alive()
        if gone or (self._answered and failure.kind == "connection"):
            self._server_failed = True
            return EvaluationError(f"{self.label}: {died_message(self, failure, what, tokens)}")
        if failure.answered_by and failure.status is not None:
            return UsageError(f"{self.label}: {where} redirected to {failure.answered_by}, which answered HTTP "
                              f"{failure.status} ({failure.detail}); the serving API itself was never asked: point "
                              "`url` at the server that serves it")
        if failure.status == 400 and ("logprob" in failure.detail.lower()):
            asked = "the whole vocabulary (`top_k: all`)" if spec.top_k == apis.ALL else f"`top_k: {spec.top_k}`"
            return UsageError(f"{self.label}: the server refused {asked} at {where} (HTTP 400: {failure.detail}). "
                              "vLLM caps log-probs at `--max-logprobs` (default 20): restart it with "
                              "`--max-logprobs -1` for the whole vocabulary, or lower `top_k` to what it allows")
        if failure.status in (400, 404, 422):
            return UsageError(f"{self.label}: {where} answered HTTP {failure.status} ({failure.detail}); does "
                              f"the server speak `api: {spec.api}` and serve model `{spec.model}`?")
        retries = f" after {self.client.retried} retries" if self.client.retried else ""
        return EvaluationError(f"{self.label}: {what} at {where} failed{retries}: {failure}"
                               + (f" ({failure.detail})" if failure.detail else ""))

    def _score(self, ids: list[int], sample_id: str) -> apis.Scored:
        """One prompt scored; ``Scored.seconds`` is its wire time (Client.post_timed), not promote's decoding."""
        self._refuse_oversized(len(ids), sample_id)
        body = apis.request_body(self.spec.api, self.spec.model, ids, self.spec.top_k)
        self._pending[sample_id] = len(ids)  # which prompts were in flight if the server dies
        try:
            answer, seconds = self.client.post_timed(self.endpoint, body, apis.max_answer_bytes(
                len(ids), self.spec.top_k, self.vocab))
        except HttpFailure as failure:
            raise self._fail(failure, f"scoring sample `{sample_id}`", len(ids)) from None
        try:
            scored = apis.parse(self.spec.api, answer, ids, self.spec.top_k)
        except apis.PromptMismatch as exc:  # the identity check's `prompt` finding (identity/prompt.py)
            raise IdentityEvidence("prompt", self.role, f"{self.label}: the answer for sample `{sample_id}` from "
                                   f"{self.endpoint}: {exc}", {"sample": sample_id, "sent": list(ids),
                                                               "scored": exc.scored, "said": str(exc)}) from None
        except apis.ShapeError as exc:
            raise EvaluationError(f"{self.label}: the answer for sample `{sample_id}` from {self.endpoint}: {exc}") \
                from None
        if scored.dense is not None and self.vocab is not None and scored.dense.shape[1] != self.vocab:
            raise EvaluationError(f"{self.label}: the answer for sample `{sample_id}` from {self.endpoint} lists "
                                  f"{scored.dense.shape[1]} token ids per position, the probe listed {self.vocab}: "
                                  "the server's vocabulary changed during the run (was it restarted with another "
                                  "model?)")
        scored.seconds = seconds
        self._answered += 1
        self._pending.pop(sample_id, None)
        return scored

    def time_to_first_token(self, ids: list[int], sample_id: str) -> float | None:
        """Seconds to the first streamed token of a one-token generation from ``ids`` (stage 3's
        ``ttft_ms``), or None when this ``api`` has no streaming shape promote knows."""
        body = apis.stream_body(self.spec.api, self.spec.model, ids)
        if body is None:
            return None
        try:
            return self.client.first_event_seconds(apis.endpoint(self.spec.api, self.url), body)
        except HttpFailure as failure:
            raise self._fail(failure, f"streaming sample `{sample_id}`", len(ids)) from None

    def server_rss_bytes(self) -> float | None:
        """The serving process's resident memory as its Prometheus `/metrics` page reports it
        (`process_resident_memory_bytes`, which vLLM and most Python servers export), or None when the
        page or the series is missing. With vLLM's V1 multiprocessing on, the engine core is another
        process and is not included (tools/vllm_server.py runs it in-process)."""
        from prometheus_client.parser import text_string_to_metric_families

        try:
            text = self.client.get_bytes(apis.root_url(self.url) + "/metrics").decode("utf-8", "replace")
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "process_resident_memory_bytes":
                        return float(sample.value)
        except (HttpFailure, ValueError):
            return None
        return None

    def _run_impl(self, batch: Batch) -> Outputs:
        b, t = batch.input_ids.shape
        prompts = [list(map(int, s.input_ids)) for s in batch.samples]
        workers = max(1, min(self.spec.concurrency, b))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            scored = list(pool.map(self._score, prompts, [s.id for s in batch.samples]))
        mask = np.zeros((b, t), dtype=bool)
        for row, s in enumerate(scored):
            mask[row, : len(s.target)] = True
        wire = np.array([s.seconds for s in scored], dtype=np.float64)
        if scored and scored[0].dense is not None:
            logits = np.zeros((b, t, self.vocab), dtype=np.float32)
            for row, s in enumerate(scored):
                logits[row, : len(s.target)] = s.dense
            return Outputs(logits=logits, mask=mask, source=self.endpoint, request_s=wire)
        if scored and scored[0].top_ids is None:
            raise UsageError(f"{self.label}: `api: {self.spec.api}` gives the actual tokens' log-probs only")
        k = int(self.spec.top_k)
        ids = np.zeros((b, t, k), dtype=np.int64)
        values = np.zeros((b, t, k), dtype=np.float32)
        target = np.zeros((b, t), dtype=np.float32)
        for row, s in enumerate(scored):
            n = len(s.target)
            ids[row, :n], values[row, :n], target[row, :n] = s.top_ids, s.top_values, s.target
        return Outputs(topk_ids=ids, topk_logprobs=values, target_logprobs=target, mask=mask, source=self.endpoint,
                       mass_tol=1e-4 * (k + 16), request_s=wire)

    def identity_facts(self) -> dict[str, Any]:
        """The probe's vocabulary, what the values are, the server's own account (`/v1/models`, vLLM's
        `/version`) and, for a launched vLLM, its model folder's files."""
        if not hasattr(self, "_server_identity"):
            self._server_identity = {"model": self._served_model(), "version": self._version()}
        launch = self.spec.launch
        files = {"weights": launch.vllm} if launch is not None and launch.vllm is not None else {}
        return {"vocab": self.vocab, "declared": {"values": self.values_are}, "server": self._server_identity,
                "files": files}

    def _served_model(self) -> dict[str, Any] | None:
        """This model's entry of `/v1/models` (id, root, max_model_len), None when the route is missing."""
        try:
            listed = self.client.get(self.url.rstrip("/") + "/models")
        except HttpFailure:
            return None
        entries = listed.get("data") if isinstance(listed, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and entry.get("id") == self.spec.model:
                keys = ("id", "root", "max_model_len")
                return {k: entry.get(k) for k in keys if isinstance(entry.get(k), (str, int))}
        return None

    def _version(self) -> str | None:
        if self.spec.api != "vllm":
            return None
        try:
            version = self.client.get(apis.root_url(self.url) + "/version").get("version")
        except (HttpFailure, AttributeError):
            return None
        return version if isinstance(version, str) else None

    def _fingerprint_impl(self) -> dict[str, Any]:
        exact = self.spec.top_k == apis.ALL
        version = None
        if self.spec.api == "vllm":
            try:
                version = self.client.get(apis.root_url(self.url) + "/version").get("version")
            except (HttpFailure, AttributeError):
                version = None
        where = ({"url": None, "launch": self.spec.launch.summary()} if self.spec.launches and self.spec.launch
                 else {"url": self.url})  # a launched server's port changes every run: not part of its identity
        return {**where, "api": self.spec.api, "model": self.spec.model, "server_version": version,
                "top_k": self.spec.top_k, "values": self.values_are,
                "exact_metrics": "all" if exact else "log_ratio, abs_log_ratio, ratio_outside (KL, TV, drift, "
                                                      "argmax: certified bounds from the top-k)",
                "requests": self.client.requests, "retries": self.client.retried,
                "errors": dict(self.client.errors)}
