"""SIGTERM/SIGINT end `promote check` within seconds with 143/130 even while its worker threads are
blocked on a server that never answers or streams forever (issue 19, item 3): `with
ThreadPoolExecutor` waits for its threads in `__exit__`, and the interpreter joins them again at exit,
so before the fix the process outlived the signal by the request timeout (here 600 s) or forever."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import yaml

from promote.errors import EXIT_SIGINT, EXIT_SIGTERM

VOCAB = 16  # the mini model's vocabulary (tests/conftest.py)


class _Hostile(BaseHTTPRequestHandler):
    """Answers the kernel's probe like vLLM (`prompt_logprobs` over the whole vocabulary), then holds
    every scoring request: `hang` never sends a byte, `drip` sends headers and one body byte at a time."""

    mode = "hang"
    stop = threading.Event()
    held = threading.Event()

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_error(404)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ids = body["prompt"]
        if ids == [0, 1, 2, 3]:  # the probe
            row = {str(i): {"logprob": float(np.log(1 / VOCAB)), "rank": i + 1} for i in range(VOCAB)}
            answer = json.dumps({"choices": [{"prompt_logprobs": [None] + [row] * (len(ids) - 1)}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            return
        self.held.set()
        if self.mode == "drip":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()  # no length: HTTP/1.0, the body ends when the connection closes
            self.wfile.write(b'{"choices": [')
            while not self.stop.wait(0.2):
                self.wfile.write(b" ")
                self.wfile.flush()
        else:
            self.stop.wait()


@pytest.fixture
def hostile_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    server.daemon_threads = True
    _Hostile.stop.clear()
    _Hostile.held.clear()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        _Hostile.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.mark.parametrize(("signum", "code", "mode"), [(signal.SIGTERM, EXIT_SIGTERM, "hang"),
                                                      (signal.SIGINT, EXIT_SIGINT, "drip")])
def test_a_signal_ends_a_run_whose_threads_are_blocked(mini, tmp_path, hostile_server, signum, code, mode):
    _Hostile.mode = mode
    url = f"http://127.0.0.1:{hostile_server.server_address[1]}/v1"
    contract = mini.contract()
    doc = yaml.safe_load(contract.read_text())
    doc["candidate"] = {"kind": "openai", "url": url, "model": "mini", "api": "vllm", "top_k": "all",
                        "concurrency": 4, "timeout_s": 600, "retries": 0}
    contract.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = tmp_path / "report.json"
    out.write_text("the previous report\n")
    proc = subprocess.Popen([sys.executable, "-m", "promote.cli", "check", str(contract), "--output", f"json={out}",
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        guard = time.monotonic() + 300  # a guard against a broken setup, not a timing assertion
        while not _Hostile.held.wait(0.1):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < guard, "the kernel never sent a scoring request"
        time.sleep(0.5)  # every worker thread is now inside its blocked request
        proc.send_signal(signum)
        try:
            stdout, stderr = proc.communicate(timeout=60)  # before the fix: 600 s (hang) or never (drip)
        except subprocess.TimeoutExpired:
            pytest.fail(f"promote still running 60 s after {signal.Signals(signum).name}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, stderr
    assert f"interrupted by {signal.Signals(signum).name}" in stderr and "Traceback" not in stderr
    assert out.read_text() == "the previous report\n"  # no verdict written over it, no half file
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report.json.")]  # no temp file left
