"""A small real HTTP server for `launch:` tests: speaks vLLM's `/v1/completions` prompt-log-prob shape
over a 16-token vocabulary and misbehaves on request, so launch, health waits, signals and a dying
server are tested without the minutes a vLLM start costs (tests/test_vllm_launch.py uses real vLLM).

    python launch_server.py PORT MODE

MODE: ``ok`` answers; ``die-short`` answers, but a 3- or 4-token prompt makes it SIGILL itself (as
vLLM 0.32 bf16 on AMX CPUs does); ``exit`` exits with code 7 at once; ``never-healthy`` answers 503 on
/health; ``hang`` is healthy but never answers a completion.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VOCAB = 16
PORT, MODE = int(sys.argv[1]), sys.argv[2]
ONE_AT_A_TIME = threading.Lock()  # no answer is half-written when the process dies (a clean death)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt: str, *args: object) -> None:
        print(fmt % args, flush=True)

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/health":
            self._send(503 if MODE == "never-healthy" else 200, {})
        else:
            self._send(404, {"error": "no such route"})

    def do_POST(self) -> None:  # noqa: N802
        with ONE_AT_A_TIME:
            self._post()

    def _post(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["prompt"]
        if MODE == "hang":
            time.sleep(3600)
        if MODE == "die-short" and len(prompt) in (3, 4):
            print(f"Fatal Python error: Illegal instruction (a {len(prompt)}-token prompt)", flush=True)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGILL})
            signal.pthread_kill(threading.get_ident(), signal.SIGILL)  # this thread, now: no answer goes out
            time.sleep(60)
        uniform = -math.log(VOCAB)
        rows = [None] + [{str(i): {"logprob": uniform, "rank": i + 1} for i in range(VOCAB)} for _ in prompt[1:]]
        self._send(200, {"choices": [{"prompt_logprobs": rows, "prompt_token_ids": prompt}]})


if MODE == "exit":
    print("refusing to start: planted exit", flush=True)
    sys.exit(7)
print(f"serving on 127.0.0.1:{PORT} ({MODE})", flush=True)
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
