"""`promote serve`: the latest decision of the audit log, answered to the rollout tools people run.

- **Argo Rollouts** ``web`` metric provider: ``GET /argo`` returns JSON whose ``phase`` is ``Successful``,
  ``Failed`` or ``Inconclusive`` (and ``ok``, a boolean); an ``AnalysisTemplate`` reads it with
  ``jsonPath: "{$.phase}"`` and ``successCondition: result == "Successful"``, ``failureCondition:
  result == "Failed"`` (neither → Inconclusive), docs/watch.md.
- **Flagger** webhooks (POST, body ``{name, namespace, phase, checksum, metadata}``):
  ``/flagger/confirm-rollout`` and ``/flagger/confirm-promotion`` answer 2xx to proceed, 412 to wait;
  ``/flagger/rollback`` answers 2xx to roll back now, 412 not to.

Missing data fails, never passes: no log, a log that does not verify, a log of another contract, or a
latest decision older than ``stale_s`` answer ``Failed`` (confirm hooks wait, rollback rolls back).
Hostile-safe: only loopback by default, request bodies capped (``MAX_BODY``) and required to have a
length, a socket timeout per connection, at most ``MAX_CONNECTIONS`` served at once, JSON out only
(nothing from a request is echoed back).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from promote import console
from promote.watch.audit import AuditError, verify

MAX_BODY = 64 * 1024
SOCKET_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 64  # open connections served at once; more are closed unanswered (no thread each)
HOOKS = ("confirm-rollout", "confirm-promotion", "rollback")


class LatestDecision:
    """The audit log's last record, re-verified whenever the file changes (size, mtime, inode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: tuple | None = None
        self._latest: tuple[dict[str, Any] | None, str | None] = (None, "no audit log yet")
        self._lock = threading.Lock()

    def get(self) -> tuple[dict[str, Any] | None, str | None]:
        """(latest record, None) or (None, why there is none)."""
        try:
            info = os.stat(self.path)
            key = (info.st_size, info.st_mtime_ns, info.st_ino)
        except OSError:
            return None, f"no audit log at {self.path}"
        with self._lock:
            if key != self._key:
                try:
                    verified = verify(self.path)
                    self._latest = (verified.latest, None if verified.latest else "the audit log is empty")
                except AuditError as exc:
                    self._latest = (None, f"the audit log does not verify: {exc}")
                self._key = key
            return self._latest


def answer(record: dict[str, Any] | None, problem: str | None, *, contract_sha256: str, stale_s: float,
           now: float) -> dict[str, Any]:
    """The JSON every endpoint answers from: ``phase`` Successful / Failed / Inconclusive and the facts."""
    if record is None:
        return {"phase": "Failed", "ok": False, "reason": f"missing data: {problem}"}
    decision = record.get("decision") or {}
    state = record.get("state") or {}
    facts = {"action": decision.get("action"), "candidate_weight": decision.get("candidate_weight"),
             "window": decision.get("window"), "verdict": decision.get("verdict"), "outcome": record.get("outcome"),
             "candidate_digest": record.get("candidate_digest"), "contract_sha256": record.get("contract_sha256"),
             "state": state.get("phase"), "record_seq": record.get("seq"), "record_hash": record.get("hash"),
             "time": record.get("time")}
    if record.get("contract_sha256") != contract_sha256:
        return {"phase": "Failed", "ok": False, "reason": "missing data: the audit log's latest decision is about "
                "another contract (sha256 differs)", **facts}
    age = now - _seconds(record)
    facts["age_s"] = round(age, 3)
    if not age <= stale_s:
        return {"phase": "Failed", "ok": False, "reason": f"missing data: the latest decision is {age:.0f} s old "
                f"(stale after {stale_s:g} s): is `promote watch` running?", **facts}
    if decision.get("action") in ("route_back", "stop") or decision.get("candidate_weight") == 0:
        return {"phase": "Failed", "ok": False, "reason": decision.get("reason", ""), **facts}
    if record.get("outcome") == "clean":
        return {"phase": "Successful", "ok": True, "reason": decision.get("reason", ""), **facts}
    return {"phase": "Inconclusive", "ok": False, "reason": decision.get("reason", ""), **facts}


def _seconds(record: dict[str, Any]) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(record.get("time", "")).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return float("-inf")


def flagger(hook: str, state: dict[str, Any], payload: dict[str, Any], *, watch_promotes: bool = False
            ) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of one Flagger hook: 200 = proceed (confirm-*) or roll back now (rollback).
    ``watch_promotes`` (the contract sets ``watch.promote_after``): confirm-promotion waits for the watch's
    own ``promote`` decision instead of any clean window."""
    wanted = (payload.get("metadata") or {}).get("candidate_digest") if isinstance(payload.get("metadata"), dict) \
        else None
    if wanted is not None and wanted != state.get("candidate_digest"):
        state = {**state, "phase": "Failed", "ok": False,
                 "reason": "missing data: the latest decision is about another candidate digest than the webhook's "
                           "metadata.candidate_digest"}
    if hook == "rollback":
        yes = state["phase"] == "Failed"
    elif hook == "confirm-promotion":
        yes = state["phase"] == "Successful" and state.get("state") in (("promoted",) if watch_promotes
                                                                        else ("canary", "promoted"))
    else:
        yes = state["phase"] == "Successful"
    return (200 if yes else 412), {"hook": hook, "proceed" if hook != "rollback" else "rollback": yes, **state}


class Handler(BaseHTTPRequestHandler):
    """The endpoints; ``respond`` (the latest decision's answer) is bound per server by ``make_handler``."""

    respond: Callable[[], dict[str, Any]]
    watch_promotes: bool = False

    timeout = SOCKET_TIMEOUT_S
    server_version = "promote-serve"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        pass  # no per-request log: a request line is hostile text

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=True, allow_nan=False, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.split("?", 1)[0] in ("/argo", "/decision"):
            self._send(200, self.respond())
        elif self.path == "/healthz":
            self._send(200, {"ok": True})
        else:
            self._send(404, {"error": "not found; GET /argo, POST /flagger/<hook>"})

    def do_POST(self) -> None:  # noqa: N802
        hook = self.path.split("?", 1)[0].removeprefix("/flagger/")
        if hook not in HOOKS or not self.path.startswith("/flagger/"):
            self._send(404, {"error": "not found; POST /flagger/" + "|".join(HOOKS)})
            return
        payload = self._payload()
        if payload is not None:
                self._send(*flagger(hook, self.respond(), payload, watch_promotes=self.watch_promotes))

    def _payload(self) -> dict[str, Any] | None:
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length is None or not length.isdigit():
            self._send(411, {"error": "a Content-Length is required (no chunked bodies)"})
            return None
        if int(length) > MAX_BODY:
            self.close_connection = True
            self._send(413, {"error": f"body over {MAX_BODY} bytes"})
            return None
        try:
            payload = json.loads(self.rfile.read(int(length)) or b"{}")
        except (ValueError, RecursionError):
            self._send(400, {"error": "the body is not JSON"})
            return None
        if not isinstance(payload, dict):
            self._send(400, {"error": "the body is not a JSON object ({name, namespace, phase, checksum, "
                                      "metadata})"})
            return None
        return payload

    def do_PUT(self) -> None:  # noqa: N802
        self._send(405, {"error": "method not allowed"})

    do_DELETE = do_PATCH = do_PUT  # noqa: N815


def make_handler(respond: Callable[[], dict[str, Any]], watch_promotes: bool = False,
                 timeout: float = SOCKET_TIMEOUT_S) -> type[BaseHTTPRequestHandler]:
    return type("BoundHandler", (Handler,), {"respond": staticmethod(respond), "watch_promotes": watch_promotes,
                                             "timeout": timeout})


class BoundedServer(ThreadingHTTPServer):
    """One thread per connection, at most ``MAX_CONNECTIONS`` at once: a flood of idle connections costs
    a closed socket each, not a thread each (each held one lasts at most ``SOCKET_TIMEOUT_S`` idle)."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def make_server(contract: Any, log_path: Path, *, host: str, port: int, stale_s: float,
                clock: Callable[[], float] = time.time, watch_promotes: bool = False,
                socket_timeout: float = SOCKET_TIMEOUT_S) -> ThreadingHTTPServer:
    latest = LatestDecision(Path(log_path))

    def respond() -> dict[str, Any]:
        record, problem = latest.get()
        return answer(record, problem, contract_sha256=contract.sha256, stale_s=stale_s, now=clock())

    return BoundedServer((host, port), make_handler(respond, watch_promotes, socket_timeout))


def serve_forever(contract: Any, log_path: Path, *, host: str, port: int, stale_s: float,
                  watch_promotes: bool = False) -> None:
    """Serve until a signal (SIGTERM/Ctrl-C end it through ``signals.py``)."""
    server = make_server(contract, log_path, host=host, port=port, stale_s=stale_s, watch_promotes=watch_promotes)
    try:
        bound = server.server_address
        console.message(f"promote serve: listening on http://{bound[0]}:{bound[1]} (GET /argo, POST /flagger/"
                        f"{{{','.join(HOOKS)}}}); audit log {log_path}", err=False)
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
