"""A real HAProxy (the Debian binary) in front of named HTTP backends, for the ``haproxy`` sink tests.

HAProxy runs in the foreground (``-db``) on 127.0.0.1 with free ports and a generated config: one HTTP
frontend, one ``roundrobin`` backend, a ``level admin`` stats socket both as a unix socket and on TCP. It is
proven to answer (the runtime API and one request through the frontend) before a test uses it, stopped by
its PID, and its stderr tail is shown when it fails to start.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from tests.prometheus_live import free_port

BINARY = os.environ.get("HAPROXY_BINARY", "/usr/sbin/haproxy")


class NamedServer:
    """An HTTP server answering every GET with its own name: which backend a request reached."""

    def __init__(self, name: str) -> None:
        self.name, self.port = name, free_port()
        body = name.encode()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class LiveHaproxy:
    """``haproxy -db`` with backend ``be`` holding ``servers`` (name → (port, weight))."""

    def __init__(self, servers: dict[str, tuple[int, int]], *, admin: bool = True) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="promote-haproxy-"))
        self.socket_path = str(self.dir / "admin.sock")
        self.stats_port, self.port = free_port(), free_port()
        level = "admin" if admin else "user"
        lines = ["global", f"    stats socket {self.socket_path} mode 600 level {level}",
                 f"    stats socket ipv4@127.0.0.1:{self.stats_port} level {level}", "defaults", "    mode http",
                 "    timeout connect 2s", "    timeout client 10s", "    timeout server 10s", "frontend fe",
                 f"    bind 127.0.0.1:{self.port}", "    default_backend be", "backend be", "    balance roundrobin"]
        lines += [f"    server {name} 127.0.0.1:{port} weight {weight}" for name, (port, weight) in servers.items()]
        (self.dir / "haproxy.cfg").write_text("\n".join(lines) + "\n")
        self.log = open(self.dir / "haproxy.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([BINARY, "-db", "-f", str(self.dir / "haproxy.cfg")], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"haproxy exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if "Name: HAProxy" in self.command("show info") and requests.get(self.url, timeout=5).ok:
                    return
            except (OSError, requests.RequestException):
                pass
            time.sleep(0.1)
        raise AssertionError(f"haproxy did not answer within 30 s:\n{self.log_tail()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def command(self, line: str) -> str:
        """One runtime API command over the unix socket (the test's own view, independent of the sink)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(self.socket_path)
            sock.sendall(line.encode() + b"\n")
            out = b""
            while chunk := sock.recv(4096):
                out += chunk
        return out.decode()

    def hits(self, n: int) -> dict[str, int]:
        """Send ``n`` requests through the frontend (a new connection each): which server answered each."""
        counts: dict[str, int] = {}
        for _ in range(n):
            name = requests.get(self.url, timeout=5, headers={"Connection": "close"}).text
            counts[name] = counts.get(name, 0) + 1
        return counts

    def log_tail(self) -> str:
        self.log.flush()
        return (self.dir / "haproxy.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
