"""A reverse proxy for tests, in front of a real server: it can slow answers down, fail the first N
requests (500 or 429 with Retry-After), answer malformed JSON, drop prompt log-probs, change the token
ids, hang past a timeout, or demand an API key. Real traffic to the real server otherwise.

Why: the bad-input checklist and the runtime judge need faults that a healthy vLLM never shows; the
proxy plants them while everything else stays real (tests/test_vllm_*.py).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Faults:
    slowdown: float = 0.0  # extra delay as a fraction of the upstream time (0.3 = 30 % slower)
    fail_first: int = 0  # answer this many requests with `fail_status`
    fail_status: int = 500
    retry_after: str | None = None
    malformed: bool = False
    drop_prompt_logprobs: bool = False
    shift_token: bool = False  # answer for one token fewer than the prompt has
    hang_s: float = 0.0
    api_key: str | None = None
    seen_auth: list[str] = field(default_factory=list)
    served: int = 0


class Proxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults = Faults()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self._forward(None)

            def do_POST(self) -> None:  # noqa: N802
                self._forward(self.rfile.read(int(self.headers.get("Content-Length", 0))))

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(self, data: bytes | None) -> None:
                received = time.monotonic()
                f = proxy.faults
                with proxy._lock:
                    f.served += 1
                    failing = f.served <= f.fail_first
                f.seen_auth.append(self.headers.get("Authorization", ""))
                if f.api_key and self.headers.get("Authorization") != f"Bearer {f.api_key}":
                    return self._send(401, b'{"error": {"message": "bad key"}}')
                if failing:
                    extra = {"Retry-After": f.retry_after} if f.retry_after else {}
                    return self._send(f.fail_status, b'{"error": {"message": "planted failure"}}', extra)
                if f.hang_s:
                    time.sleep(f.hang_s)
                request = urllib.request.Request(proxy.upstream + self.path, data=data,
                                                 headers={"Content-Type": "application/json"},
                                                 method="POST" if data is not None else "GET")
                try:
                    with urllib.request.urlopen(request, timeout=120) as resp:
                        status, body = resp.status, resp.read()
                except urllib.error.HTTPError as exc:
                    status, body = exc.code, exc.read()
                if f.slowdown:  # a fraction of everything this request cost so far, the proxy's own work included
                    time.sleep(f.slowdown * (time.monotonic() - received))
                if f.malformed:
                    body = b'{"choices": [ this is not json'
                elif (f.drop_prompt_logprobs or f.shift_token) and status == 200 and data is not None:
                    answer = json.loads(body)
                    for choice in answer.get("choices", []):
                        if f.drop_prompt_logprobs:
                            choice.pop("prompt_logprobs", None)
                        elif choice.get("prompt_logprobs"):
                            choice["prompt_logprobs"] = choice["prompt_logprobs"][:-1]
                    body = json.dumps(answer).encode()
                self._send(status, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def reset(self) -> None:
        self.faults = Faults()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
