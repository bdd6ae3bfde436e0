"""Request and response shapes of the serving APIs the `openai` kernel speaks (no HTTP here).

Every API is asked for teacher-forced log-probs of the *prompt* (the eval sample's token ids, sent as
ids, never as text) and every answer becomes one :class:`Scored` per sample, aligned by token id:
position ``t`` holds the distribution that predicts ``input_ids[t + 1]``. Never aligned by decoded
text (two ids can decode alike). Shapes: research/promotion-anchors.md §5.

* ``vllm``: ``/v1/completions`` with ``prompt_logprobs: k`` (``-1``: the whole vocabulary); answer
  ``choices[0].prompt_logprobs = [null, {"<id>": {logprob, rank, decoded_token}}, …]``.
* ``openai``: the legacy echo route, ``echo: true, logprobs: k, max_tokens: 0,
  return_tokens_as_token_ids: true``; answer ``choices[0].logprobs.{tokens, token_logprobs,
  top_logprobs}`` keyed ``"token_id:N"``.
* ``sglang``: native ``/generate`` with ``input_ids``, ``return_logprob``, ``logprob_start_len: 0``,
  ``top_logprobs_num``; answer ``meta_info.input_token_logprobs = [[logprob, id, text], …]`` and
  ``input_top_logprobs``.
* ``tgi``: native ``/generate`` with ``decoder_input_details``; ``details.prefill = [{id, logprob}]``
  gives the actual tokens' log-probs only (TGI has no top-n for prompt positions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

ALL = "all"
APIS = ("vllm", "openai", "sglang", "tgi")
# Where each API lives relative to the contract's `url` (the /v1 base of an OpenAI-compatible server).
ROUTES = {"vllm": "/completions", "openai": "/completions", "sglang": "/generate", "tgi": "/generate"}


#: Bytes one log-prob entry may take in an answer (``"151643": {"logprob": -25.7, "rank": 151643,
#: "decoded_token": "<|endoftext|>"}`` is ~80); the body cap of a scoring request is derived from it.
BYTES_PER_ENTRY = 256
#: The largest vocabulary the probe's answer may list (before the server's vocabulary is known).
PROBE_VOCAB = 2**19


def max_answer_bytes(tokens: int, top_k: int | str, vocab: int | None) -> int:
    """The most a scoring answer can legitimately take: positions × (vocabulary for ``top_k: all``,
    else top_k + 4 entries: the actual token, the echoed token, its text) × :data:`BYTES_PER_ENTRY`,
    plus 64 KiB of envelope. Anything longer is refused before it fills memory (docs/runtime.md)."""
    entries = (vocab or PROBE_VOCAB) if top_k == ALL else int(top_k) + 4
    return max(tokens, 1) * entries * BYTES_PER_ENTRY + 64 * 1024


#: The most one scoring answer may take. A `top_k: all` request whose cap (:func:`max_answer_bytes`)
#: is larger is never sent: at a real vocabulary the JSON would be gigabytes (vLLM renders ~60 bytes
#: per id per position) and minutes of server rendering before promote could refuse it.
MAX_SCORING_ANSWER = 2**30


def oversized_full_vocabulary(tokens: int, top_k: int | str, vocab: int | None) -> str | None:
    """Why a ``top_k: all`` prompt of ``tokens`` ids at ``vocab`` cannot come back through HTTP (its
    answer's cap exceeds :data:`MAX_SCORING_ANSWER`), with what to ask for instead; None when it can."""
    if top_k != ALL or vocab is None or max_answer_bytes(tokens, top_k, vocab) <= MAX_SCORING_ANSWER:
        return None
    longest = (MAX_SCORING_ANSWER - 64 * 1024) // (vocab * BYTES_PER_ENTRY)
    return (f"at a vocabulary of {vocab} ids a `top_k: all` answer for {tokens} tokens may take "
            f"{max_answer_bytes(tokens, top_k, vocab) / 2**30:.1f} GiB ({tokens} × {vocab} ids × {BYTES_PER_ENTRY} "
            f"bytes; vLLM renders ~60 bytes per id, ~{tokens * vocab * 60 / 2**30:.1f} GiB), more than the "
            f"{MAX_SCORING_ANSWER // 2**20} MiB promote accepts in one answer (prompts of at most {longest} tokens "
            "fit). Ask the server for `top_k: N` (e.g. 20): log_ratio, abs_log_ratio and ratio_outside stay exact "
            "and KL, TV and drift become certified bounds (docs/runtime.md, \"Remote servers at real "
            f"vocabulary\"); for exact full-vocabulary metrics compute the logits where they live: {_exact_paths()}")


def _exact_paths() -> str:
    """The kernel kinds that give full logits without JSON (the in-process vLLM kind once registered)."""
    from promote.contract.kinds import KINDS

    engine = ["`kind: vllm` (the engine in process)"] if "vllm" in KINDS else []
    return ", ".join([*engine, "`kind: torch` on the same weights", "`kind: records` of the logits the engine "
                      "recorded"])


class ShapeError(ValueError):
    """The answer does not have the documented shape, or does not match the prompt; the message says how."""


class PromptMismatch(ShapeError):
    """The server scored other ids than the prompt's (a BOS prepended, a template applied): ``scored`` is
    what it reports it scored, None when it only gave another length. The identity check's ``prompt``
    finding (identity/prompt.py) names it, with the fix."""

    def __init__(self, message: str, scored: list[int] | None) -> None:
        super().__init__(message)
        self.scored = scored


@dataclass
class Scored:
    """One sample's teacher-forced scores: ``target`` [T-1] log-prob of each next token, and either
    ``dense`` [T-1, V] (every id: logits or log-probs) or ``top_ids``/``top_values`` [T-1, K];
    ``seconds`` the request's wire time, set by the kernel that sent it."""

    target: np.ndarray
    dense: np.ndarray | None = None
    top_ids: np.ndarray | None = None
    top_values: np.ndarray | None = None
    seconds: float = float("nan")


def root_url(url: str) -> str:
    """The server root for native routes (SGLang/TGI `/generate`): the `url` without a trailing /v1."""
    url = url.rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def endpoint(api: str, url: str) -> str:
    base = url.rstrip("/") if api in ("vllm", "openai") else root_url(url)
    return base + ROUTES[api]


def request_body(api: str, model: str, ids: list[int], top_k: int | str, text: str | None = None) -> dict[str, Any]:
    """The JSON body that scores ``ids`` teacher-forced with ``top_k`` alternatives per position."""
    k = -1 if top_k == ALL else int(top_k)
    if api == "vllm":
        return {"model": model, "prompt": ids, "max_tokens": 1, "temperature": 0, "prompt_logprobs": k,
                "return_token_ids": True}  # vLLM ≥ 0.10.2 answers `prompt_token_ids`: the prompt identity check
    if api == "openai":
        return {"model": model, "prompt": ids, "max_tokens": 0, "temperature": 0, "echo": True, "logprobs": k,
                "return_tokens_as_token_ids": True}
    if api == "sglang":
        return {"input_ids": ids, "sampling_params": {"max_new_tokens": 0, "temperature": 0},
                "return_logprob": True, "logprob_start_len": 0, "top_logprobs_num": k}
    if api == "tgi":
        return {"inputs": text or "", "parameters": {"max_new_tokens": 1, "details": True,
                                                      "decoder_input_details": True, "do_sample": False}}
    raise ValueError(f"unknown api {api!r}")


def stream_body(api: str, model: str, ids: list[int]) -> dict[str, Any] | None:
    """A streamed one-token generation from ``ids`` (time to first token), or None where promote does
    not know the API's streaming shape (SGLang and TGI stream differently and cannot be checked here)."""
    if api in ("vllm", "openai"):
        return {"model": model, "prompt": ids, "max_tokens": 1, "temperature": 0, "stream": True}
    return None


def parse(api: str, body: Any, ids: list[int], top_k: int | str) -> Scored:
    """Turn one answer into a :class:`Scored`; :class:`ShapeError` names what is missing or wrong."""
    if not isinstance(body, dict):
        raise ShapeError(f"the answer is a JSON {type(body).__name__}, not an object")
    parser = {"vllm": _vllm, "openai": _echo, "sglang": _sglang}.get(api)
    try:
        return parser(body, ids, top_k) if parser else _tgi(body, ids)
    except ShapeError:
        raise
    except (IndexError, KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        # a field of the wrong type or length deep inside (a list where an object belongs, a row too
        # short): not the documented shape, said as such rather than as a crash
        raise ShapeError(f"the answer does not have the `api: {api}` shape ({type(exc).__name__}: "
                         f"{str(exc)[:200]})") from None


def _choice(body: dict[str, Any]) -> dict[str, Any]:
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ShapeError("the answer has no `choices[0]`")
    return choices[0]


def _vllm(body: dict[str, Any], ids: list[int], top_k: int | str) -> Scored:
    entries = _choice(body).get("prompt_logprobs")
    if entries is None:
        raise ShapeError("`choices[0].prompt_logprobs` is missing: this server does not return prompt log-probs "
                         "(a vLLM extension); use `api: openai` (echo + logprobs) or `api: sglang`")
    if not isinstance(entries, list):
        raise ShapeError("`prompt_logprobs` is not a list")
    if len(entries) != len(ids):
        n = len(entries)
        scored = _reported_ids(_choice(body))
        scored = None if scored == list(ids) else scored  # the same ids, other entries: say only the length
        raise PromptMismatch(f"`prompt_logprobs` has {n} entries for a prompt of {len(ids)} tokens; the server "
                             "tokenized the prompt differently (token mismatch)", scored)
    scored = _reported_ids(_choice(body))
    if scored is not None and scored != list(ids):
        raise PromptMismatch("`prompt_token_ids` differ from the prompt's token ids (token mismatch)", scored)
    if top_k == ALL:
        return _vllm_dense(entries, ids)
    rows = []
    for t in range(1, len(ids)):
        entry = entries[t]
        if not isinstance(entry, dict):
            raise ShapeError(f"`prompt_logprobs[{t}]` is not an object")
        try:
            rows.append({_id(key): (float(v["logprob"]), int(v.get("rank") or 0)) for key, v in entry.items()})
        except (TypeError, ValueError, KeyError):
            raise ShapeError(f"`prompt_logprobs[{t}]` is not {{token id: {{logprob, rank}}}}") from None
    return _assemble(rows, ids, top_k)


def _vllm_dense(entries: list[Any], ids: list[int]) -> Scored:
    """The full-vocabulary answer straight into arrays (the hot path: V entries per position)."""
    n = len(ids) - 1
    first = entries[1] if n > 0 else {}
    vocab = len(first) if isinstance(first, dict) else 0
    dense = np.empty((n, vocab), dtype=np.float64)
    for t in range(n):
        entry = entries[t + 1]
        if not isinstance(entry, dict) or len(entry) != vocab:
            got = len(entry) if isinstance(entry, dict) else "no"
            raise ShapeError(f"a full-vocabulary answer must list every token id at every position; position "
                             f"{t + 1} lists {got} ids, position 1 lists {vocab}")
        try:
            keys = np.fromiter(entry.keys(), dtype=np.int64, count=vocab)
            values = np.fromiter((v["logprob"] for v in entry.values()), dtype=np.float64, count=vocab)
        except (TypeError, ValueError, KeyError):
            raise ShapeError(f"`prompt_logprobs[{t + 1}]` is not {{token id: {{logprob, rank}}}}") from None
        if not _every_id_once(entry, keys, vocab):
            raise ShapeError(f"a full-vocabulary answer must list every token id 0..{vocab - 1} once, spelled as a "
                             f"plain decimal number; position {t + 1} has ids outside that range, spelled twice "
                             "(`0` and `00`, `+1`, ` 1`) or missing")
        dense[t, keys] = values
        if ids[t + 1] >= vocab:
            raise ShapeError(f"position {t + 1} has no entry for the prompt's token id {ids[t + 1]} (token "
                             "mismatch: the server scored other tokens than it was sent)")
    target = dense[np.arange(n), np.asarray(ids[1:], dtype=np.int64)] if n else np.empty(0)
    return Scored(target=target, dense=dense)


def _canonical_length(vocab: int) -> int:
    """Characters of the decimal spellings of 0..vocab-1 together."""
    total, width, low = 0, 1, 0
    while low < vocab:
        high = min(vocab, 10**width)
        total += (high - low) * width
        low, width = high, width + 1
    return total


def _every_id_once(entry: dict[str, Any], keys: np.ndarray, vocab: int) -> bool:
    """The keys are 0..vocab-1, each once, in canonical decimal: distinct and in range, ASCII digits
    only, and no longer together than the canonical spellings (a leading zero, `+` or space would be)."""
    if keys.min() < 0 or keys.max() >= vocab:
        return False
    seen = np.zeros(vocab, dtype=bool)
    seen[keys] = True
    if not seen.all():  # vocab keys in range, none missing: each exactly once
        return False
    text = "".join(entry)
    return text.isascii() and text.isdigit() and len(text) == _canonical_length(vocab)


def _id(key: Any) -> int:
    """A token id as the answer spells it: a non-negative integer, or its canonical decimal string."""
    if isinstance(key, int) and not isinstance(key, bool) and key >= 0:
        return key
    if isinstance(key, str) and key.isascii() and key.isdigit() and str(int(key)) == key:
        return int(key)
    raise ShapeError(f"token id {str(key)[:40]!r} is not a non-negative integer in plain decimal")


def _assemble(rows: list[dict[int, tuple[float, int]]], ids: list[int], top_k: int | str) -> Scored:
    """Rows of {id: (value, rank)} (rank 0 = unknown: order by value) → a Scored."""
    n = len(rows)
    target = np.empty(n, dtype=np.float64)
    for t, row in enumerate(rows):
        actual = ids[t + 1]
        if actual not in row:
            raise ShapeError(f"position {t + 1} has no entry for the prompt's token id {actual} (token mismatch: "
                             "the server scored other tokens than it was sent)")
        target[t] = row[actual][0]
    if top_k == ALL:
        width = max((len(r) for r in rows), default=0)
        vocab = max((max(r) for r in rows if r), default=-1) + 1
        if any(len(r) != width for r in rows) or width != vocab:
            raise ShapeError(f"a full-vocabulary answer must list every token id at every position; got "
                             f"{min(len(r) for r in rows)}..{width} ids of a vocabulary of {vocab}")
        dense = np.empty((n, vocab), dtype=np.float64)
        for t, row in enumerate(rows):
            dense[t, list(row)] = [v for v, _ in row.values()]
        return Scored(target=target, dense=dense)
    k = int(top_k)
    top_ids = np.zeros((n, k), dtype=np.int64)
    top_values = np.full((n, k), -math.inf, dtype=np.float64)
    for t, row in enumerate(rows):
        ranked = sorted(row.items(), key=lambda kv: (kv[1][1] if kv[1][1] > 0 else math.inf, -kv[1][0]))
        best = [kv for kv in ranked if kv[1][1] <= k] if all(kv[1][1] > 0 for kv in ranked) else ranked
        best = sorted(best, key=lambda kv: -kv[1][0])[:k]
        if len(best) < k:
            raise ShapeError(f"position {t + 1} lists {len(best)} alternatives, fewer than top_k = {k}")
        top_ids[t] = [i for i, _ in best]
        top_values[t] = [v for _, (v, _) in best]
    return Scored(target=target, top_ids=top_ids, top_values=top_values)


def _reported_ids(choice: dict[str, Any]) -> list[int] | None:
    """vLLM's ``prompt_token_ids`` (sent with ``return_token_ids``), the ids it actually scored; None when absent."""
    reported = choice.get("prompt_token_ids")
    return [_id(i) for i in reported] if isinstance(reported, list) else None


def _token_id(key: str) -> int:
    if not key.startswith("token_id:"):
        raise ShapeError(f"top log-probs are keyed by text ({key!r}), not `token_id:N`: the server ignores "
                         "`return_tokens_as_token_ids`; decoded text cannot be aligned to token ids, use "
                         "`api: vllm` or `api: sglang`")
    return _id(key.split(":", 1)[1])


def _echo(body: dict[str, Any], ids: list[int], top_k: int | str) -> Scored:
    lp = _choice(body).get("logprobs")
    if not isinstance(lp, dict) or "top_logprobs" not in lp or "tokens" not in lp:
        raise ShapeError("`choices[0].logprobs` with `tokens` and `top_logprobs` is missing: the server does not "
                         "score echoed prompts; use `api: vllm` (prompt_logprobs) or `api: sglang`")
    tokens, tops, token_lps = lp["tokens"], lp["top_logprobs"], lp.get("token_logprobs") or []
    if len(tokens) < len(ids) or [_token_id(x) for x in tokens[: len(ids)]] != list(ids):
        raise PromptMismatch("the echoed tokens differ from the prompt's token ids (token mismatch)",
                             [_token_id(x) for x in tokens])
    rows = []
    for t in range(1, len(ids)):
        top = tops[t] or {}
        row = {_token_id(key): (float(value), 0) for key, value in top.items()}
        if ids[t] not in row and t < len(token_lps) and token_lps[t] is not None:
            row[ids[t]] = (float(token_lps[t]), 0)
        rows.append(row)
    return _assemble(rows, ids, top_k)


def _sglang(body: dict[str, Any], ids: list[int], top_k: int | str) -> Scored:
    meta = body.get("meta_info")
    if not isinstance(meta, dict) or "input_token_logprobs" not in meta:
        raise ShapeError("`meta_info.input_token_logprobs` is missing: send `return_logprob: true` and "
                         "`logprob_start_len: 0` to SGLang's native /generate")
    tokens = meta["input_token_logprobs"]
    tops = meta.get("input_top_logprobs") or [None] * len(tokens)
    if len(tokens) != len(ids) or [_id(x[1]) for x in tokens] != list(ids):
        raise PromptMismatch(f"`input_token_logprobs` lists {len(tokens)} tokens that differ from the prompt's "
                             f"{len(ids)} token ids (token mismatch)", [_id(x[1]) for x in tokens])
    rows = []
    for t in range(1, len(ids)):
        row = {_id(i): (float(v), 0) for v, i, *_ in (tops[t] or [])}
        row.setdefault(ids[t], (float(tokens[t][0]), 0))
        rows.append(row)
    return _assemble(rows, ids, top_k)


def _tgi(body: dict[str, Any], ids: list[int]) -> Scored:
    details = body.get("details")
    prefill = details.get("prefill") if isinstance(details, dict) else None
    if not isinstance(prefill, list) or not prefill:
        raise ShapeError("`details.prefill` is missing: send `decoder_input_details: true` (not with streaming)")
    got = [_id(p["id"]) for p in prefill]
    if got != list(ids):
        raise PromptMismatch(f"`details.prefill` lists {len(got)} tokens that differ from the prompt's {len(ids)} "
                             "token ids (token mismatch)", got)
    return Scored(target=np.array([float(p["logprob"]) for p in prefill[1:]], dtype=np.float64))
