"""A local Kubernetes-API-shaped HTTP server holding objects and applying RFC 7386 merge patches.

It does what the API server does for the requests the sinks send: ``GET`` an object, ``PATCH`` it with
``Content-Type: application/merge-patch+json`` (anything else is 415), the ``/status`` subresource (only the
patch's ``status`` applies there; the main resource ignores ``status`` when the subresource exists),
``metadata.resourceVersion`` in a patch must match (else 409), every change bumps the resourceVersion, and a
bearer token is required when one is set (401 without it). Errors answer a ``Status`` object. Every request
is recorded (method, path, content type, whether the token came).
"""

from __future__ import annotations

import copy
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.prometheus_live import free_port


def rfc7386(target: Any, patch: Any) -> Any:
    """RFC 7386 section 2, written from the RFC (independently of the code under test)."""
    if isinstance(patch, dict):
        if not isinstance(target, dict):
            target = {}
        out = copy.deepcopy(target)
        for name, value in patch.items():
            if value is None:
                out.pop(name, None)
            else:
                out[name] = rfc7386(out.get(name), value)
        return out
    return copy.deepcopy(patch)


class KubeApi:
    def __init__(self, objects: dict[str, dict[str, Any]], *, token: str | None = None,
                 status_subresource: bool = True, tls: tuple[str, str] | None = None) -> None:
        self.objects = {path: copy.deepcopy(obj) for path, obj in objects.items()}
        for obj in self.objects.values():
            obj.setdefault("metadata", {}).setdefault("resourceVersion", "1")
        self.token, self.status_subresource = token, status_subresource
        self.requests: list[dict[str, Any]] = []
        self.fail_next: int | None = None  # answer the next PATCH with this status
        self.ignore_patches = False  # answer 200 and change nothing (a webhook or controller undoing the change)
        self.lock = threading.Lock()
        self.port = free_port()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _status(self, code: int, message: str) -> None:
                self._json(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                                  "code": code})

            def _json(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _allowed(self) -> bool:
                auth = self.headers.get("Authorization")
                api.requests.append({"method": self.command, "path": self.path, "authorized": auth is not None,
                                     "content_type": self.headers.get("Content-Type")})
                if api.token is not None and auth != f"Bearer {api.token}":
                    self._status(401, "Unauthorized")
                    return False
                return True

            def do_GET(self) -> None:  # noqa: N802
                if not self._allowed():
                    return
                with api.lock:
                    obj = api.objects.get(self.path)
                    return self._json(200, obj) if obj is not None else self._status(404, f"{self.path} not found")

            def do_PATCH(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self._allowed():
                    return
                if self.headers.get("Content-Type") != "application/merge-patch+json":
                    return self._status(415, "the body must be application/merge-patch+json")
                if api.fail_next is not None:
                    code, api.fail_next = api.fail_next, None
                    return self._status(code, "injected failure")
                path, sub = self.path, None
                if path.endswith("/status") and path[: -len("/status")] in api.objects:
                    path, sub = path[: -len("/status")], "status"
                    if not api.status_subresource:
                        return self._status(404, "the server could not find the requested resource")
                with api.lock:
                    obj = api.objects.get(path)
                    if obj is None:
                        return self._status(404, f"{path} not found")
                    patch = json.loads(body)
                    version = (patch.get("metadata") or {}).get("resourceVersion")
                    if version is not None and version != obj["metadata"]["resourceVersion"]:
                        return self._status(409, "Operation cannot be fulfilled: the object has been modified")
                    if sub == "status":
                        patch = {"status": patch.get("status")} if "status" in patch else {}
                    elif api.status_subresource:
                        patch = {k: v for k, v in patch.items() if k != "status"}
                    new = obj if api.ignore_patches else rfc7386(obj, patch)
                    if new != obj:
                        new["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
                    api.objects[path] = new
                    self._json(200, new)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.scheme = "http"
        if tls is not None:  # (certificate, key) files: an https:// API server like a real one
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
