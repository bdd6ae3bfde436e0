"""A hostile HTTP server for tests of promote's three clients (openai kernel, Prometheus, GitHub).

A real TCP server on 127.0.0.1 (a free port) speaking raw bytes, so it can do what a well-behaved
server library never would: redirect to another port, drip bytes, close mid-body, inflate gzip,
misspell token ids, echo the request's headers back, send a bad status line or too many headers.
Each test scripts it with :meth:`Hostile.route` (path → answer); every request is logged with its
headers, so a test can assert which credentials reached which server.
"""

from __future__ import annotations

import contextlib
import functools
import json
import socket
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

Answer = Callable[[socket.socket, "Request"], None]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Hostile:
    """``with Hostile() as server:`` — ``server.url("/x")``, ``server.route("/x", answer)``, ``server.log``."""

    routes: dict[str, Answer] = field(default_factory=dict)
    log: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)  # accept() polls `stopping`: closing a socket does not wake it
        self.port = self._listener.getsockname()[1]
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def route(self, path: str, answer: Answer) -> Hostile:
        self.routes[path] = answer
        return self

    def __enter__(self) -> Hostile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.stopping.set()
        for conn in self._conns:  # wake every handler waiting for a next request on a kept-alive connection
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)
            worker = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            worker.start()
            self._threads.append(worker)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            reader = conn.makefile("rb")
            while not self.stopping.is_set():
                try:
                    request = _read_request(reader)
                except (OSError, ValueError):
                    return
                if request is None:
                    return
                self.log.append(request)
                answer = self.routes.get(request.path.split("?")[0], status(404, b'{"error": "no route"}'))
                try:
                    answer(conn, request)
                except OSError:
                    return
                if getattr(answer, "closes", False):
                    return


def _read_request(reader) -> Request | None:  # noqa: ANN001 - a socket file
    line = reader.readline()
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        header = reader.readline().decode("latin-1").rstrip("\r\n")
        if not header:
            break
        name, _, value = header.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = reader.read(int(headers.get("content-length", 0) or 0))
    return Request(method, path, headers, body)


def _head(code: int, headers: dict[str, str], length: int | None) -> bytes:
    lines = [f"HTTP/1.1 {code} X"] + [f"{k}: {v}" for k, v in headers.items()]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def status(code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Answer:
    """A complete answer with Content-Length."""
    def answer(conn: socket.socket, request: Request) -> None:
        conn.sendall(_head(code, {"Content-Type": "application/json", **(headers or {})}, len(body)) + body)
    return answer


def json_reply(value: object, code: int = 200) -> Answer:
    return status(code, json.dumps(value).encode())


def computed(make: Callable[[Request], object], code: int = 200) -> Answer:
    """A JSON answer built from the request (e.g. an answer for the prompt it was sent)."""
    def answer(conn: socket.socket, request: Request) -> None:
        status(code, json.dumps(make(request)).encode())(conn, request)
    return answer


def redirect(location: str, code: int = 302) -> Answer:
    return status(code, b"", {"Location": location})


def echo_headers(code: int = 400) -> Answer:
    """An error body that repeats every request header (a debug page, a misconfigured proxy)."""
    def answer(conn: socket.socket, request: Request) -> None:
        text = json.dumps({"error": {"message": f"bad request; you sent {request.headers}"},
                           "headers": request.headers}).encode()
        status(code, text)(conn, request)
    return answer


def drip(server: Hostile, head: bytes | None = None, every_s: float = 0.2, byte: bytes = b" ") -> Answer:
    """Headers (unless ``head`` is given raw), then one byte every ``every_s`` until the server stops:
    each read returns in time, the answer never ends."""
    def answer(conn: socket.socket, request: Request) -> None:
        conn.sendall(head if head is not None else _head(200, {"Content-Type": "application/json",
                                                               "Connection": "close"}, None))
        while not server.stopping.wait(every_s):
            conn.sendall(byte)
    answer.closes = True  # type: ignore[attr-defined]
    return answer


def drip_headers(server: Hostile, every_s: float = 0.2) -> Answer:
    """A status line, then an endless header dripped a byte at a time."""
    def answer(conn: socket.socket, request: Request) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while not server.stopping.wait(every_s):
            conn.sendall(b"a")
    answer.closes = True  # type: ignore[attr-defined]
    return answer


def huge(size: int, chunked: bool = False) -> Answer:
    """A body of ``size`` bytes of JSON-ish filler, sent in 1 MiB pieces (stops when the client goes)."""
    piece = b" " * 2**20

    def answer(conn: socket.socket, request: Request) -> None:
        if chunked:
            conn.sendall(_head(200, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}, None))
        else:
            conn.sendall(_head(200, {"Content-Type": "application/json"}, size))
        sent = 0
        while sent < size:  # sendall raises once the client has gone
            part = piece[: min(len(piece), size - sent)]
            conn.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n" if chunked else part)
            sent += len(part)
        if chunked:
            conn.sendall(b"0\r\n\r\n")
    answer.closes = True  # type: ignore[attr-defined]
    return answer


def gzip_bomb(inflated: int, chunked: bool = False) -> Answer:
    """A small gzip body (``Content-Encoding: gzip``) that inflates to ``inflated`` bytes (built a MiB
    at a time: the test itself never holds the inflated size)."""
    body = _gzipped_zeros(inflated)

    def answer(conn: socket.socket, request: Request) -> None:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
            conn.sendall(_head(200, headers, None) + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        else:
            conn.sendall(_head(200, headers, len(body)) + body)
    return answer


@functools.lru_cache(maxsize=4)
def _gzipped_zeros(inflated: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    zeros = b"\0" * 2**20
    return b"".join(packer.compress(zeros) for _ in range(inflated // 2**20)) + packer.flush()


def truncated(body: bytes, keep: int) -> Answer:
    """Announces ``len(body)`` bytes, sends ``keep`` of them, closes the connection."""
    def answer(conn: socket.socket, request: Request) -> None:
        conn.sendall(_head(200, {"Content-Type": "application/json"}, len(body)) + body[:keep])
        time.sleep(0.05)
        conn.shutdown(socket.SHUT_RDWR)
    answer.closes = True  # type: ignore[attr-defined]
    return answer


def raw(data: bytes) -> Answer:
    """Exactly these bytes, then close: a bad status line, too many headers, a header line too long."""
    def answer(conn: socket.socket, request: Request) -> None:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_RDWR)
    answer.closes = True  # type: ignore[attr-defined]
    return answer


BAD_STATUS_LINE = b"HTTP/1.1 twohundred OK\r\n\r\n{}"
TOO_MANY_HEADERS = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(150)) + b"\r\n{}"
LINE_TOO_LONG = b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n{}"
