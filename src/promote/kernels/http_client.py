"""The `openai` kernel's JSON-over-HTTP client, on promote's one HTTP layer (:mod:`promote.http`:
the same-origin credential rule, total deadlines, body caps, bounded decompression, redirects).

What it adds for serving engines: bounded retries with backoff on 429/5xx and on connection failures
and timeouts (honouring ``Retry-After``), counted outcomes for the report (requests, retries, error
kinds), and the request's *wire time*. The API key is registered with ``promote.redact`` and only
ever sent as a header, to the origin of the kernel's ``url``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from promote.http import MAX_RETRY_AFTER_S, RETRY_STATUSES, HttpError, Reply, Transport, retry_after

#: The most a GET of a probe (``/version``, ``/health``) may answer.
MAX_SMALL_BODY = 1 * 2**20
#: The most read of a streamed answer before its first event (time to first token).
MAX_STREAM_PREFIX = 1 * 2**20
#: A `/metrics` page (Prometheus exposition of a serving process).
MAX_METRICS_BODY = 16 * 2**20


class HttpFailure(Exception):
    """A request that failed for good: ``kind`` (connection, timeout, protocol, too_large, redirect, url,
    http_<status>, malformed_json), the status and the server's message when there was one, and
    ``answered_by``: the URL that answered when a redirect took the request elsewhere."""

    def __init__(self, kind: str, message: str, status: int | None = None, detail: str = "",
                 answered_by: str | None = None) -> None:
        super().__init__(message)
        self.kind, self.status, self.detail, self.answered_by = kind, status, detail, answered_by
        self.retry_after: float | None = None


@dataclass
class Client:
    """POST JSON to one server; thread-safe counters of requests, retries and error kinds.
    ``timeout_s`` is each attempt's total deadline (connect, headers and body); ``max_body`` the
    default cap on an answer (a call may name its own, derived from what it asked for);
    ``origin_url`` the URL whose origin receives the API key (default: each call's URL)."""

    timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 0.5
    api_key: str | None = None
    max_body: int = 256 * 2**20
    origin_url: str | None = None
    requests: int = 0
    retried: int = 0
    errors: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        credentials = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self.transport = Transport(deadline_s=self.timeout_s, max_body=self.max_body, credentials=credentials,
                                   credential_origin=self.origin_url)

    def _count(self, what: str, kind: str | None = None) -> None:
        with self._lock:
            if what == "request":
                self.requests += 1
            elif what == "retry":
                self.retried += 1
            if kind:
                self.errors[kind] += 1

    def post(self, url: str, body: dict[str, Any], max_body: int | None = None) -> Any:
        """The decoded JSON answer; retries transient failures, raises :class:`HttpFailure` otherwise."""
        return self.post_timed(url, body, max_body)[0]

    def post_timed(self, url: str, body: dict[str, Any], max_body: int | None = None) -> tuple[Any, float]:
        """:meth:`post`, with the request's *wire time*: seconds from the first send to the last byte of
        the answer that succeeded (retries and their back-off included: a user waits for them too),
        without decoding the JSON. Why: stage 3 compares the servers' latencies; promote's own decoding
        is the same on both sides, so it would only add a constant that pulls every ratio towards 1
        (a 30 % slower canary read as 16 % on a loaded machine)."""
        start = time.perf_counter()
        reply = self._retrying(url, body, max_body, None)
        return _decode(reply.body, reply.url), reply.finished - start

    def first_event_seconds(self, url: str, body: dict[str, Any]) -> float:
        """Seconds from the first send of a *streamed* request (``"stream": true``, server-sent events)
        to the first ``data:`` event carrying an answer — the time to first token when the body asks
        for generated tokens — with the same retries as :meth:`post`. The stream is closed at that
        event (the rest is never read); an answer that ends without one is ``malformed_json``."""
        start = time.perf_counter()
        reply = self._retrying(url, body, MAX_STREAM_PREFIX, _has_event)
        if not _has_event(reply.body + b"\n"):
            raise HttpFailure("malformed_json", "the streamed answer held no `data:` event")
        return reply.finished - start

    def _retrying(self, url: str, body: dict[str, Any], max_body: int | None, stop: Any) -> Reply:
        """One request with bounded retries of transient failures (429/5xx, connection, timeout)."""
        data = json.dumps(body).encode()
        attempt = 0
        while True:
            self._count("request")
            try:
                return _checked(self.transport.request("POST", url, body=data, max_body=max_body, stop=stop,
                                                       headers={"Content-Type": "application/json"}))
            except HttpError as exc:
                failure = _from_error(exc)
            except HttpFailure as exc:
                failure = exc
            self._count("error", failure.kind)
            transient = failure.kind in ("connection", "timeout") or (failure.status in RETRY_STATUSES)
            if not transient or attempt >= self.retries:
                raise failure
            delay = failure.retry_after
            time.sleep(min(delay if delay is not None else self.backoff_s * 2**attempt, MAX_RETRY_AFTER_S))
            attempt += 1
            self._count("retry")

    def get(self, url: str) -> Any:
        """GET with the same error mapping and no retries (probes: /health, /version)."""
        reply = self._get(url, MAX_SMALL_BODY)
        return _decode(reply.body, reply.url)

    def get_bytes(self, url: str, max_body: int = MAX_METRICS_BODY) -> bytes:
        """The raw body of a GET (a Prometheus `/metrics` page), no retries."""
        return self._get(url, max_body).body

    def _get(self, url: str, max_body: int) -> Reply:
        try:
            return _checked(self.transport.request("GET", url, max_body=max_body))
        except HttpError as exc:
            raise _from_error(exc) from None


def _from_error(exc: HttpError) -> HttpFailure:
    return HttpFailure(exc.kind, str(exc))


def _checked(reply: Reply) -> Reply:
    """A 2xx reply as is; any other status as an :class:`HttpFailure` with the server's message."""
    if 200 <= reply.status < 300:
        return reply
    failure = HttpFailure(f"http_{reply.status}", f"HTTP {reply.status}", reply.status,
                          _server_message(reply.body[:2000].decode("utf-8", "replace")),
                          reply.url if reply.redirected else None)
    failure.retry_after = retry_after(reply.headers.get("Retry-After"))
    raise failure


def _has_event(body: bytes) -> bool:
    """A whole ``data:`` line carrying an answer in server-sent events (`data: {...}` lines, blank lines
    between, `data: [DONE]` last); a line still being received does not count yet."""
    lines = body.split(b"\n")[:-1]
    return any(line.startswith(b"data:") and line[5:].strip() not in (b"", b"[DONE]") for line in lines)


def _decode(raw: bytes, url: str) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        shown = raw[:120].decode("utf-8", "replace")
        raise HttpFailure("malformed_json", f"the answer is not JSON ({exc}); it starts {shown!r}") from None
    except RecursionError:
        raise HttpFailure("malformed_json", "the answer is JSON nested too deeply to read") from None


def _server_message(detail: str) -> str:
    """The human part of an error body: OpenAI-style ``{"error": {"message"}}``, ``{"message"}``, or text."""
    try:
        body = json.loads(detail)
    except (json.JSONDecodeError, RecursionError):
        return detail.strip()[:500]
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])[:500]
        for key in ("message", "detail", "error"):
            if key in body:
                return str(body[key])[:500]
    return detail.strip()[:500]


__all__ = ["Client", "HttpFailure"]
