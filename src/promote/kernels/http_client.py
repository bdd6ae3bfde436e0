"""A small JSON-over-HTTP client for serving engines: bounded retries with backoff on 429/5xx and
connection failures (honouring ``Retry-After``), a per-request timeout, counted outcomes.

Why not a library: the standard library does what is needed, and promote must count what happened
(retries, error kinds) for the report, never print the API key (it is registered as a secret with
``promote.redact`` and only sent as a header), and turn every failure into one clear message.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 30.0


class HttpFailure(Exception):
    """A request that failed for good: ``kind`` (connection, timeout, http_<status>, malformed_json),
    the status and the server's message when there was one."""

    def __init__(self, kind: str, message: str, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.kind, self.status, self.detail = kind, status, detail


@dataclass
class Client:
    """POST JSON to one server; thread-safe counters of requests, retries and error kinds."""

    timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 0.5
    api_key: str | None = None
    requests: int = 0
    retried: int = 0
    errors: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _count(self, what: str, kind: str | None = None) -> None:
        with self._lock:
            if what == "request":
                self.requests += 1
            elif what == "retry":
                self.retried += 1
            if kind:
                self.errors[kind] += 1

    def post(self, url: str, body: dict[str, Any]) -> Any:
        """The decoded JSON answer; retries transient failures, raises :class:`HttpFailure` otherwise."""
        return self.post_timed(url, body)[0]

    def post_timed(self, url: str, body: dict[str, Any]) -> tuple[Any, float]:
        """:meth:`post`, with the request's *wire time*: seconds from the first send to the last byte of
        the answer that succeeded (retries and their back-off included: a user waits for them too),
        without decoding the JSON. Why: stage 3 compares the servers' latencies; promote's own decoding
        is the same on both sides, so it would only add a constant that pulls every ratio towards 1
        (a 30 % slower canary read as 16 % on a loaded machine)."""
        start = time.perf_counter()

        def once(request: urllib.request.Request) -> tuple[Any, float]:
            raw = _open(request, self.timeout_s)
            seconds = time.perf_counter() - start
            return _decode(raw, url), seconds

        return self._retrying(url, body, once)

    def first_event_seconds(self, url: str, body: dict[str, Any]) -> float:
        """Seconds from the first send of a *streamed* request (``"stream": true``, server-sent events)
        to the first ``data:`` event carrying an answer — the time to first token when the body asks
        for generated tokens — with the same retries as :meth:`post`. The rest of the stream is read
        and dropped; an answer that ends without such an event is ``malformed_json``."""
        start = time.perf_counter()

        def once(request: urllib.request.Request) -> float:
            return _first_event(request, self.timeout_s, start)

        return self._retrying(url, body, once)

    def _retrying(self, url: str, body: dict[str, Any], once: Any) -> Any:
        """``once(request)`` with bounded retries of transient failures (429/5xx, connection, timeout)."""
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        attempt = 0
        while True:
            self._count("request")
            try:
                return once(urllib.request.Request(url, data=data, headers=headers, method="POST"))
            except HttpFailure as failure:
                self._count("error", failure.kind)
                transient = failure.kind in ("connection", "timeout") or (failure.status in RETRY_STATUSES)
                if not transient or attempt >= self.retries:
                    raise
                delay = getattr(failure, "retry_after", None)
                time.sleep(min(delay if delay is not None else self.backoff_s * 2**attempt, MAX_RETRY_AFTER_S))
                attempt += 1
                self._count("retry")

    def get(self, url: str) -> Any:
        """GET with the same error mapping and no retries (probes: /health, /version)."""
        return _decode(self.get_bytes(url), url)

    def get_bytes(self, url: str) -> bytes:
        """The raw body of a GET (a Prometheus `/metrics` page), no retries."""
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.api_key}"} if self.api_key
                                         else {})
        return _open(request, self.timeout_s)


def _open(request: urllib.request.Request, timeout: float) -> bytes:
    return _opened(request, timeout, lambda resp: resp.read())


def _first_event(request: urllib.request.Request, timeout: float, start: float) -> float:
    def read(resp: Any) -> float:
        seconds = None
        for line in resp:  # server-sent events: `data: {...}` lines, blank lines between, `data: [DONE]` last
            if seconds is None and line.startswith(b"data:") and line[5:].strip() not in (b"", b"[DONE]"):
                seconds = time.perf_counter() - start
        if seconds is None:
            raise HttpFailure("malformed_json", "the streamed answer held no `data:` event")
        return seconds

    return _opened(request, timeout, read)


def _opened(request: urllib.request.Request, timeout: float, read: Any) -> Any:
    """``read(response)`` with every failure mapped to an :class:`HttpFailure`."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return read(resp)
    except HttpFailure:
        raise
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:2000]
        failure = HttpFailure(f"http_{exc.code}", f"HTTP {exc.code}", exc.code, _server_message(detail))
        failure.retry_after = _retry_after(exc.headers.get("Retry-After"))  # type: ignore[attr-defined]
        raise failure from None
    except TimeoutError:
        raise HttpFailure("timeout", f"no answer within {timeout:g} s") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (TimeoutError, socket.timeout)):
            raise HttpFailure("timeout", f"no answer within {timeout:g} s") from None
        raise HttpFailure("connection", f"cannot connect ({exc.reason})") from None
    except (ConnectionError, OSError) as exc:
        raise HttpFailure("connection", f"connection failed ({exc})") from None


def _decode(raw: bytes, url: str) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        shown = raw[:120].decode("utf-8", "replace")
        raise HttpFailure("malformed_json", f"the answer is not JSON ({exc}); it starts {shown!r}") from None


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form; an HTTP date is ignored)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _server_message(detail: str) -> str:
    """The human part of an error body: OpenAI-style ``{"error": {"message"}}``, ``{"message"}``, or text."""
    try:
        body = json.loads(detail)
    except json.JSONDecodeError:
        return detail.strip()[:500]
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])[:500]
        for key in ("message", "detail", "error"):
            if key in body:
                return str(body[key])[:500]
    return detail.strip()[:500]
