"""The one HTTP layer of promote's three clients (the `openai` kernel, Prometheus, GitHub).

Built on ``requests`` (TLS verification and CA bundles, proxies from the environment, chunked bodies,
connection reuse), which two of the clients already used, plus what ``requests`` leaves to its
caller, decided once here so all three behave alike (docs/runtime.md "HTTP"):

* **Credentials go to one origin.** ``credentials`` (headers such as ``Authorization``) are sent only
  to the origin — scheme, host and port — of ``credential_origin`` (else of the URL a call names).
  Redirects are followed here, never by ``requests``: up to :data:`MAX_REDIRECTS`, to http(s) only;
  one to another origin while credentials are set is refused (:class:`HttpError` ``redirect``)
  rather than followed without them, because the answer would come from a server the user did not
  name. Without credentials it is followed, and :attr:`Reply.url` names the server that answered.
* **A total deadline per request**: connect, redirects, headers and body together. ``requests``'
  timeout bounds each socket read only, so a server dripping a byte a second never times out; here a
  watchdog thread shuts the request's sockets down when its deadline passes.
* **A cap on every body**, counted after decompression (urllib3 inflates with a bounded output per
  read, so a 3 MB gzip bomb never becomes 3 GB in memory): over the cap → ``too_large``.
* Every failure — refused connection, bad status line, too many headers, a body cut short — is one
  :class:`HttpError` naming the URL, never a library exception. HTTP statuses are not failures here:
  the clients decide what a 404 or a 429 means (:func:`retry_after`, :data:`RETRY_STATUSES`).
"""

from __future__ import annotations

import base64
import contextlib
import heapq
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.utils import parse_header_links
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from promote.redact import register_secret

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 30.0
CHUNK = 64 * 1024
POOL_SIZE = 256
_DEFAULT_PORTS = {"http": 80, "https": 443}


class HttpError(Exception):
    """No usable HTTP reply: ``kind`` is ``connection`` (refused, reset, closed mid-body), ``timeout``
    (the total deadline passed), ``too_large`` (the body cap), ``redirect`` (a redirect refused),
    ``protocol`` (not HTTP: a bad status line, too many or too long headers), ``tls`` (verification
    failed) or ``url`` (not http(s))."""

    def __init__(self, kind: str, message: str, url: str) -> None:
        super().__init__(message)
        self.kind, self.url = kind, url


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in: what "same origin" compares."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: matches nothing
        return scheme, (parts.hostname or "").lower(), -1
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)


def origin_text(url: str) -> str:
    scheme, host, port = origin(url)
    return f"{scheme}://{host}:{port}"


def basic_auth(user: str, password: str) -> str:
    """The ``Authorization`` value of HTTP Basic auth, registered with the redactor as a whole and as its
    base64 part: a server that echoes the header back in an error body must not print it."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    for secret in (user, password, token, f"Basic {token}"):
        register_secret(secret)
    return f"Basic {token}"


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form; an HTTP date is ignored)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def size_text(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n} bytes"


@dataclass
class Reply:
    """A whole HTTP answer: status, headers, the (decompressed, capped) body, the URL that answered
    (after redirects), and ``finished``: the ``time.perf_counter()`` of the last byte read, before any
    decoding (a caller's wire time is ``finished`` minus its own start)."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    url: str
    requested: str
    finished: float

    @property
    def status_code(self) -> int:
        return self.status

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON (ValueError when it is not)."""
        return json.loads(self.body)

    @property
    def links(self) -> dict[str, dict[str, str]]:
        """The ``Link`` header by ``rel`` (GitHub pagination), as ``requests`` gives it."""
        header = self.headers.get("link")
        return {link.get("rel") or link.get("url", ""): link for link in parse_header_links(header)} if header \
            else {}

    @property
    def redirected(self) -> bool:
        return self.url != self.requested


# -- the deadline watchdog ------------------------------------------------------------------------


@dataclass(eq=False)
class _Watch:
    """The connections one request has used, shut down once its deadline passes."""

    deadline: float
    conns: list[Any] = field(default_factory=list)
    expired: bool = False
    done: bool = False

    def kill(self) -> None:
        for conn in list(self.conns):
            # http.client drops `sock` once an answer is delimited by the connection's close; the
            # response still reads from it, so the socket connect() made is kept beside it
            sock = getattr(conn, "sock", None) or getattr(conn, "watched_sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):  # the plain socket's shutdown wakes a blocked read, TLS or not
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread for every request: sleeps until the earliest deadline, then keeps shutting
    that request's sockets down (a connect may finish after the first try) until it returns."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Watch]] = []
        self._thread: threading.Thread | None = None
        self._n = 0

    def add(self, watch: _Watch) -> None:
        with self._cond:
            self._n += 1
            heapq.heappush(self._heap, (watch.deadline, self._n, watch))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="promote-http-deadline", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                now = time.monotonic()
                if not self._heap:
                    self._cond.wait(60.0)
                    continue
                when, n, watch = self._heap[0]
                if when > now:
                    self._cond.wait(when - now)
                    continue
                watch.expired = True
                watch.kill()
                heapq.heapreplace(self._heap, (now + 0.05, n, watch))


_WATCHDOG = _Watchdog()
_current = threading.local()


def _register(conn: Any) -> Any:
    watch = getattr(_current, "watch", None)
    if watch is not None:
        if conn not in watch.conns:
            watch.conns.append(conn)
        if watch.expired:
            watch.kill()
    return conn


class _Conn(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        self.watched_sock = self.sock
        _register(self)


class _TLSConn(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        self.watched_sock = self.sock
        _register(self)


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Conn

    def _get_conn(self, timeout: float | None = None) -> Any:
        return _register(super()._get_conn(timeout))


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConn

    def _get_conn(self, timeout: float | None = None) -> Any:
        return _register(super()._get_conn(timeout))


class _Adapter(HTTPAdapter):
    """requests' adapter with connection pools that report each connection a request takes to the
    watchdog (urllib3's documented ``pool_classes_by_scheme`` hook; ``_get_conn`` is where a pool
    hands out a connection)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}
        return manager


# -- the transport --------------------------------------------------------------------------------


class Transport:
    """One client's HTTP: a ``requests.Session`` (reused connections) and the rules of this module.
    ``deadline_s`` and ``max_body`` are defaults a call may lower or raise."""

    def __init__(self, *, deadline_s: float, max_body: int, credentials: Mapping[str, str] | None = None,
                 credential_origin: str | None = None, headers: Mapping[str, str] | None = None,
                 verify: bool | str = True) -> None:
        self.deadline_s, self.max_body = deadline_s, max_body
        self.credentials = dict(credentials or {})
        self.credential_origin = origin(credential_origin) if credential_origin else None
        self.session = requests.Session()
        self.session.verify = verify
        self.session.headers.update(headers or {})
        # Kept-alive connections for up to POOL_SIZE requests in flight (a runtime level's concurrency):
        # beyond it urllib3 opens extra ones and logs a warning for each it cannot keep.
        self.session.mount("http://", _Adapter(pool_maxsize=POOL_SIZE))
        self.session.mount("https://", _Adapter(pool_maxsize=POOL_SIZE))

    def __repr__(self) -> str:  # never the credentials
        return f"Transport(deadline_s={self.deadline_s}, max_body={self.max_body})"

    def request(self, method: str, url: str, *, body: bytes | None = None, headers: Mapping[str, str] | None = None,
                deadline_s: float | None = None, max_body: int | None = None,
                stop: Callable[[bytes], bool] | None = None) -> Reply:
        """One request, its redirects followed under the rules above, the whole body read (or until
        ``stop(body so far)`` says enough: a stream's first event). Raises :class:`HttpError`."""
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            raise HttpError("url", f"`{url}` is not an http:// or https:// URL", url)
        deadline_s = self.deadline_s if deadline_s is None else deadline_s
        watch = _Watch(time.monotonic() + deadline_s)
        _current.watch = watch
        _WATCHDOG.add(watch)
        late = HttpError("timeout", f"{url}: no complete answer within {deadline_s:g} s (the total deadline of a "
                                    "request: connect, headers and body)", url)
        try:
            reply = self._follow(method, url, body, dict(headers or {}), watch,
                                 self.max_body if max_body is None else max_body, stop)
        except HttpError as exc:
            if watch.expired and exc.kind != "too_large":
                raise late from None
            raise
        finally:
            watch.done = True
            _current.watch = None
        if watch.expired:  # a body delimited by the connection's close ends "normally" when it is shut
            raise late
        return reply

    def _follow(self, method: str, url: str, body: bytes | None, headers: dict[str, str], watch: _Watch,
                max_body: int, stop: Callable[[bytes], bool] | None) -> Reply:
        first, home = url, self.credential_origin or origin(url)
        for _ in range(MAX_REDIRECTS + 1):
            sent = {**headers, **(self.credentials if origin(url) == home else {})}
            response = self._send(method, url, body, sent, watch)
            location = response.headers.get("location")
            if response.status_code not in REDIRECT_STATUSES or not location:
                try:
                    data = _read(response, url, max_body, stop)
                finally:
                    response.close()
                return Reply(response.status_code, response.reason or "", response.headers, data, url, first,
                             time.perf_counter())
            response.close()
            target = urljoin(url, location)
            if urlsplit(target).scheme.lower() not in ("http", "https"):
                raise HttpError("redirect", f"{url} redirected to `{target[:200]}`, which is not an http(s) URL; "
                                            "promote follows http(s) redirects only", first)
            if origin(target) != home and self.credentials:
                raise HttpError("redirect", f"{url} redirected to {origin_text(target)}, another origin than "
                                            f"{origin_text(first)}; promote sends credentials to the origin it was "
                                            "given only and does not follow a redirect elsewhere with them: point "
                                            "the URL at the server that answers", first)
            if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
                method, body = "GET", None
            url = target
        raise HttpError("redirect", f"{first}: more than {MAX_REDIRECTS} redirects", first)

    def _send(self, method: str, url: str, body: bytes | None, headers: dict[str, str], watch: _Watch) -> Any:
        left = max(watch.deadline - time.monotonic(), 0.001)
        try:
            # ``verify`` passed per request: requests lets $REQUESTS_CA_BUNDLE/$CURL_CA_BUNDLE replace a
            # session's CA file (psf/requests#3829), so a configured ca_file would silently be ignored
            return self.session.request(method, url, data=body, headers=headers, timeout=(left, left), stream=True,
                                        allow_redirects=False, verify=self.session.verify)
        except Exception as exc:  # noqa: BLE001 - requests, urllib3 and http.client raise many kinds
            raise _failure(exc, url) from None


def _read(response: Any, url: str, max_body: int, stop: Callable[[bytes], bool] | None) -> bytes:
    """The decompressed body, at most ``max_body`` bytes (else ``too_large``)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body and "content-encoding" not in response.headers:
        raise HttpError("too_large", _too_large(url, max_body), url)
    parts: list[bytes] = []
    total = 0
    try:
        while chunk := response.raw.read1(CHUNK, decode_content=True):  # what has come, inflated ≤ CHUNK a time
            total += len(chunk)
            if total > max_body:
                raise HttpError("too_large", _too_large(url, max_body), url)
            parts.append(chunk)
            if stop is not None and stop(b"".join(parts)):
                break
    except HttpError:
        raise
    except Exception as exc:  # noqa: BLE001 - a body cut short, a broken gzip stream, a reset
        raise _failure(exc, url) from None
    return b"".join(parts)


def _too_large(url: str, max_body: int) -> str:
    return (f"{url} answered more than {size_text(max_body)} (after decompression), the most this request can "
            "legitimately return; refusing to read more")


def _failure(exc: BaseException, url: str) -> HttpError:
    text = f"{type(exc).__name__}: {exc}"
    protocol = any(word in text for word in ("BadStatusLine", "LineTooLong", "more than 100 headers",
                                             "HeaderParsingError", "InvalidHeader", "LineTooLong"))
    if protocol:
        return HttpError("protocol", f"{url} did not answer valid HTTP ({_short(exc)})", url)
    if isinstance(exc, (requests.Timeout, TimeoutError, socket.timeout)):
        return HttpError("timeout", f"{url}: no answer in time ({_short(exc)})", url)
    if isinstance(exc, requests.exceptions.SSLError):
        return HttpError("tls", f"TLS with {url} failed ({_short(exc)})", url)
    if isinstance(exc, requests.exceptions.ConnectionError) and "Max retries" in str(exc):
        return HttpError("connection", f"cannot connect to {url} ({_short(exc)})", url)
    return HttpError("connection", f"the connection to {url} failed ({_short(exc)})", url)


def _short(exc: BaseException) -> str:
    """The innermost reason of a wrapped requests/urllib3 error, one line, no object addresses."""
    while exc.args and isinstance(exc.args[0], BaseException):
        exc = exc.args[0]
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        exc = reason
    text = str(exc).split(": ", 1)[-1] if "object at 0x" in str(exc) else str(exc)
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
