"""A real Prometheus (the Debian binary) scraping in-process prometheus_client exporters, for the
stage-4 integration tests. Started once per session; every process and server stopped by handle.

Exporters tick every 0.1 s: each tick adds ``requests`` finished requests of which ``errors`` failed
and observes one latency, so rate-based error ratios are exact (both counters move together) and a
canary's burn rate relative to stable is the ratio of their ``errors/requests``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from conftest import unavailable
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

BINARY = os.environ.get("PROMETHEUS_BINARY", "/usr/bin/prometheus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], object], what: str, timeout: float = 60.0) -> object:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except requests.RequestException:
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Exporter:
    """One serving version's /metrics: request counters, a latency histogram, a heartbeat gauge."""

    version: str
    requests: int
    errors: int
    latency_s: float
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.registry = CollectorRegistry()
        self.counter = Counter("serving_requests", "Requests.", ["outcome"], registry=self.registry)
        self.latency = Histogram("serving_latency_seconds", "Latency.", buckets=(0.05, 0.1, 0.2, 0.5, 1.0),
                                 registry=self.registry)
        self.heartbeat = Gauge("serving_heartbeat", "Set every tick.", registry=self.registry)
        self.server, self.thread = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)

    def tick(self) -> None:
        self.counter.labels("ok").inc(self.requests - self.errors)
        self.counter.labels("error").inc(self.errors)
        self.latency.observe(self.latency_s)
        self.heartbeat.set(time.time())

    def stop_heartbeat(self) -> None:
        """The series disappears from /metrics: Prometheus marks it stale, its last sample ages."""
        self.registry.unregister(self.heartbeat)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class AuthProxy:
    """A reverse proxy that lets through only ``Authorization: Bearer <token>`` (403 for ``forbidden``)."""

    def __init__(self, upstream: str, token: str) -> None:
        self.port = free_port()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                header = self.headers.get("Authorization", "")
                if header == "Bearer forbidden-token":
                    return self._reply(403, b'{"status":"error","errorType":"forbidden","error":"forbidden"}')
                if header != f"Bearer {token}":
                    return self._reply(401, b"Unauthorized\n")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answer = requests.request(self.command, upstream + self.path, data=body, timeout=10,
                                          headers={"Content-Type": self.headers.get("Content-Type", "")})
                self._reply(answer.status_code, answer.content)

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _forward

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=outer.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class ScrapeTarget:
    """A /metrics endpoint this module did not start (e.g. the real vLLM server): ``host:port``, the
    job name, and the labels Prometheus attaches to its series (``{version: canary}``)."""

    job: str
    address: str
    labels: dict[str, str] = field(default_factory=dict)
    path: str = "/metrics"


class LivePrometheus:
    """``/usr/bin/prometheus`` on a free port with a temporary config and storage, 1 s scrapes of the
    in-process exporters (ticked here) and of any raw ``targets``."""

    def __init__(self, exporters: list[Exporter], targets: list[ScrapeTarget] | None = None) -> None:
        if not Path(BINARY).exists():
            unavailable(f"{BINARY} not found: apt-get install -y prometheus (stage-4 integration tests)")
        self.exporters = exporters
        self.targets = list(targets or [])
        self.dir = Path(tempfile.mkdtemp(prefix="promote-prometheus-"))
        self.port = free_port()
        jobs = "\n".join(
            f"  - job_name: {e.version}\n    static_configs:\n      - targets: ['127.0.0.1:{e.port}']\n"
            f"        labels: {{version: {e.version}}}" for e in exporters)
        jobs += "".join(
            f"\n  - job_name: {t.job}\n    metrics_path: {t.path}\n    static_configs:\n"
            f"      - targets: ['{t.address}']\n        labels: {json.dumps(t.labels)}" for t in self.targets)
        (self.dir / "prometheus.yml").write_text(
            f"global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\nscrape_configs:\n{jobs}\n")
        self.log = (self.dir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [BINARY, f"--config.file={self.dir / 'prometheus.yml'}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _tick(self) -> None:
        while not self._stop.wait(0.1):
            for exporter in self.exporters:
                exporter.tick()

    def query(self, expr: str) -> list[dict]:
        body = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5).json()
        return body["data"]["result"]

    def wait_ready(self) -> None:
        def targets_up() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited: {(self.dir / 'prometheus.log').read_text()[-2000:]}")
            active = requests.get(f"{self.url}/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
            expected = len(self.exporters) + len(self.targets)
            return len(active) == expected and all(t["health"] == "up" for t in active)

        wait_for(targets_up, "every scrape target to be up")
        if not self.exporters:
            return
        # rate() needs two scrapes of every version: wait until each has a non-zero request rate.
        wait_for(lambda: len(self.query("rate(serving_requests_total{outcome='ok'}[20s]) > 0"))
                 == len(self.exporters), "a request rate from every exporter")

    def close(self) -> None:
        self._stop.set()
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
