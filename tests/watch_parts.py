"""The real parts `promote watch` is tested end to end on (issue 24): two vLLM servers of the tiny Llama
(reference and candidate), a real HAProxy (Debian's) in front of both as ONE backend with two weighted
servers and its runtime API on a stats socket, and a real Prometheus scraping both servers and HAProxy.

Everything listens on 127.0.0.1 at free ports, is proved to answer a real request before use, and is
stopped by PID. Requests through HAProxy carry the answering server's name in ``X-Promote-Server``
(HAProxy sets it from ``srv_name``), so a test tells reference and candidate apart per request; HAProxy's
own per-server counters (``show stat``) and each vLLM's ``/metrics`` are the independent evidence.

The candidate is swapped for a faulted one (the tiny Llama's wrong ``rope_theta``,
examples/tiny_llama/faults.py) by restarting it on its port with the faulted weights: HAProxy's health
checks take it out while it restarts and put it back once ``/health`` answers.

The classes need no pytest (bench/bench_watch.py builds the same stack); the fixtures at the bottom are
imported by tests/test_watch_e2e.py.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from conftest import VllmServer, start_vllm, unavailable
from prometheus_live import LivePrometheus, ScrapeTarget, free_port

from promote.kernels import launch

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "tiny_llama"
HAPROXY = os.environ.get("HAPROXY_BINARY", shutil.which("haproxy") or "/usr/sbin/haproxy")
BACKEND = "tiny_llama"  # the one HAProxy backend; its servers are `reference` and `candidate`
SERVED_BY = "X-Promote-Server"
#: 8 token ids: never 3 or 4 tokens (they kill bf16 vLLM on AMX CPUs, docs/runtime.md), short answers.
PROMPT = [1, 5, 9, 13, 21, 34, 55, 89]
CANARY_WEIGHT = 30  # the candidate's share of traffic (%), the reference has the rest


def wait_until(condition: Callable[[], object], what: str, timeout: float, interval: float = 0.5,
               tail: Callable[[], str] | None = None) -> object:
    """Poll ``condition`` until it returns something truthy; raise naming ``what`` (and a log tail) after
    ``timeout`` seconds. A bounded wait, never a timing assert."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except (requests.RequestException, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    extra = f"\n--- log tail:\n{tail()}" if tail else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r}){extra}")


class Haproxy:
    """``haproxy -db`` with one frontend (``url``), one backend of two weighted servers with health checks,
    an admin runtime API on a unix socket (``socket``) and on TCP (``api_port``), and its Prometheus
    exporter (``metrics_address``). Stopped by PID (its own process group)."""

    def __init__(self, reference_port: int, candidate_port: int, candidate_weight: int = CANARY_WEIGHT) -> None:
        if not Path(HAPROXY).exists():
            raise FileNotFoundError(f"{HAPROXY} not found: apt-get install -y haproxy (tools/setup.sh does)")
        self.dir = Path(tempfile.mkdtemp(prefix="promote-haproxy-"))
        self.socket = self.dir / "admin.sock"
        self.port, self.api_port, self.metrics_port = free_port(), free_port(), free_port()
        self.config = self.dir / "haproxy.cfg"
        self.config.write_text(self._config(reference_port, candidate_port, candidate_weight))
        checked = subprocess.run([HAPROXY, "-c", "-f", str(self.config)], capture_output=True, text=True)
        if checked.returncode != 0:
            raise RuntimeError(f"haproxy rejected {self.config}:\n{checked.stdout}{checked.stderr}")
        self.server = launch.spawn([HAPROXY, "-db", "-f", str(self.config)], port=self.port, job="haproxy",
                                   log_dir=self.dir)

    def _config(self, reference_port: int, candidate_port: int, candidate_weight: int) -> str:
        check = "check inter 1s fall 3 rise 2"
        return f"""\
global
    log stdout format raw local0
    stats socket {self.socket} mode 600 level admin
    stats socket ipv4@127.0.0.1:{self.api_port} level admin
    stats timeout 30s

defaults
    mode http
    log global
    option httplog
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout check 10s
    retries 3
    option redispatch

frontend canary
    bind 127.0.0.1:{self.port}
    default_backend {BACKEND}

frontend metrics
    bind 127.0.0.1:{self.metrics_port}
    http-request use-service prometheus-exporter if {{ path /metrics }}

backend {BACKEND}
    balance roundrobin
    option httpchk GET /health
    http-response set-header {SERVED_BY} %[srv_name]
    server reference 127.0.0.1:{reference_port} weight {100 - candidate_weight} {check}
    server candidate 127.0.0.1:{candidate_port} weight {candidate_weight} {check}
"""

    @property
    def url(self) -> str:
        """The canary's address clients use: ``…/v1`` like a vLLM server's."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def metrics_address(self) -> str:
        return f"127.0.0.1:{self.metrics_port}"

    @property
    def pid(self) -> int:
        return self.server.pid

    def log_tail(self) -> str:
        return self.server.log_tail()

    def api(self, command: str) -> str:
        """One runtime API command over the unix socket; its answer (HAProxy closes after one command)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(self.socket))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def weight(self, server: str) -> int:
        """The server's current weight (``get weight`` answers ``30 (initial 30)``)."""
        return int(self.api(f"get weight {BACKEND}/{server}").split()[0])

    def set_weight(self, server: str, weight: int) -> None:
        answer = self.api(f"set weight {BACKEND}/{server} {weight}").strip()
        if answer:
            raise RuntimeError(f"haproxy refused `set weight {BACKEND}/{server} {weight}`: {answer}")

    def stats(self) -> dict[str, dict[str, str]]:
        """``show stat`` of the backend's servers by name: status (UP/DOWN/…), stot (sessions), weight…"""
        text = self.api("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {r["svname"]: r for r in rows if r["pxname"] == BACKEND and r["svname"] not in ("BACKEND", "FRONTEND")}

    def wait_up(self, *servers: str, timeout: float = 120.0) -> None:
        """Until every named server passes its health checks (status UP)."""
        def up() -> bool:
            if not self.server.alive():
                raise AssertionError(f"haproxy {self.server.describe_death()}:\n{self.log_tail()}")
            stats = self.stats()
            return all(stats.get(s, {}).get("status") == "UP" for s in servers)
        wait_until(up, f"haproxy to see {', '.join(servers)} UP", timeout, tail=self.log_tail)

    def close(self) -> None:
        self.server.stop(keep_log=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def send(base_url: str, n: int, *, timeout: float = 120.0) -> Counter:
    """``n`` real completions (8-token prompt, 1 token out) to ``base_url`` (``…/v1``), one at a time;
    a Counter of the ``X-Promote-Server`` header of the answers (``None`` for a server not behind HAProxy).
    Any answer but a 200 with choices raises, naming the status and body."""
    served: Counter = Counter()
    for i in range(n):
        answer = requests.post(f"{base_url}/completions", timeout=timeout, json={
            "model": "tiny-llama", "prompt": [*PROMPT[:-1], 100 + i % 50], "max_tokens": 1, "temperature": 0})
        if answer.status_code != 200 or not answer.json().get("choices"):
            raise AssertionError(f"request {i} to {base_url}: HTTP {answer.status_code}: {answer.text[:300]}")
        served[answer.headers.get(SERVED_BY)] += 1
    return served


def vllm_requests(server: VllmServer) -> float:
    """Finished requests the vLLM server counted itself (``vllm:request_success_total``, every reason)."""
    text = requests.get(f"{server.base}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vllm:request_success_total{"))


def served_prompts(n: int = 32, tokens: int = 12) -> list[list[int]]:
    """The prompts the live traffic sends: the example eval set's documents cut to ``tokens`` ids (short
    prompts keep whole-vocabulary answers small; never 3 or 4 tokens)."""
    lines = (EXAMPLE / "eval.jsonl").read_text().splitlines()[:n]
    return [json.loads(line)["input_ids"][:tokens] for line in lines]


class Traffic:
    """A client sending real completions through HAProxy in a background thread — the canary's live
    traffic: both servers' vLLM counters move, Prometheus sees rates — one every ``every`` seconds, until
    closed. Each prompt sent is appended to ``request_log`` (the JSONL `promote watch` tails, docs/watch.md)
    the way a serving gateway would log it. Failed requests are counted, not raised (the candidate
    restarts during a swap; HAProxy's health checks take it out)."""

    def __init__(self, base_url: str, request_log: Path | None = None, every: float = 1.0) -> None:
        self.base_url, self.request_log, self.every = base_url, request_log, every
        self.prompts = served_prompts()
        self.served: Counter = Counter()
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _one(self, i: int) -> None:
        prompt = self.prompts[i % len(self.prompts)]
        try:
            answer = requests.post(f"{self.base_url}/completions", timeout=60, json={
                "model": "tiny-llama", "prompt": prompt, "max_tokens": 1, "temperature": 0})
        except requests.RequestException:
            self.failed += 1
            return
        if answer.status_code != 200:
            self.failed += 1
            return
        self.served[answer.headers.get(SERVED_BY)] += 1
        if self.request_log is not None:
            with open(self.request_log, "a") as log:
                log.write(json.dumps({"input_ids": prompt, "time": time.time(), "id": f"req-{i}"}) + "\n")

    def _run(self) -> None:
        i = 0
        while not self._stop.wait(self.every):
            self._one(i)
            i += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=90)


class WatchRun:
    """``promote watch CONTRACT --window W --log LOG`` as a real process (its own session, stopped by PID),
    with its output in a file and its audit log read as it grows."""

    def __init__(self, contract: Path, log: Path, env: dict[str, str], window: str, *extra: str) -> None:
        self.log = log
        self.output = log.with_suffix(".out")
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "promote.cli", "watch", str(contract), "--window", window, "--log", str(log),
                 *extra], env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output_tail(self, chars: int = 4000) -> str:
        return launch.tail(self.output, chars)

    def records(self) -> list[dict]:
        """The whole records written so far (a line still being written is left for the next read)."""
        try:
            data = self.log.read_bytes()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in data.split(b"\n")[:-1]]

    def wait_records(self, condition: Callable[[list[dict]], object], what: str, timeout: float) -> list[dict]:
        """The records once ``condition(records)`` holds; fails (with the watch's output) if the watch ends
        first or the time runs out."""
        def ready() -> list[dict] | None:
            records = self.records()
            if condition(records):
                return records
            if self.proc.poll() is not None:
                raise AssertionError(f"promote watch exited ({self.proc.returncode}) before {what}:\n"
                                     f"{self.output_tail()}")
            return None
        return wait_until(ready, what, timeout, interval=1.0, tail=self.output_tail)  # type: ignore[return-value]

    def stop(self, timeout: float = 120.0) -> int:
        """SIGTERM (the loop ends between two whole records), SIGKILL of its group after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                launch.stop(self.proc.pid, timeout=1)
                self.proc.wait()
        return self.proc.returncode


def faulted_model(folder: Path) -> Path:
    """A copy of the tiny Llama with the wrong ``rope_theta`` (examples/tiny_llama/faults.py)."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        from faults import wrong_rope
    finally:
        sys.path.remove(str(EXAMPLE))
    return wrong_rope(folder / "model")


def swap(server: VllmServer, model_dir: Path) -> None:
    """Restart ``server`` on its own port serving ``model_dir``, proved to answer a real request again."""
    server.stop()
    server.model_dir = Path(model_dir)
    server.start()
    server.ensure()


def prometheus_for(reference: VllmServer, candidate: VllmServer, haproxy: Haproxy) -> LivePrometheus:
    """A real Prometheus scraping both vLLM servers every second — labelled ``version: stable`` (the
    reference) and ``version: canary`` (the candidate), as a canary set-up labels them — and HAProxy."""
    prometheus = LivePrometheus([], targets=[
        ScrapeTarget("reference", urlsplit(reference.base).netloc, {"version": "stable"}),
        ScrapeTarget("candidate", urlsplit(candidate.base).netloc, {"version": "canary"}),
        ScrapeTarget("haproxy", haproxy.metrics_address)])
    try:
        prometheus.wait_ready()
    except BaseException:
        prometheus.close()
        raise
    return prometheus


# --- pytest fixtures (session-scoped: two vLLM engines cost minutes to start) -------------------------

def _missing(what: str) -> None:
    """Outside CI a missing service skips; under CI=true it fails (a core feature is never skipped)."""
    unavailable(f"{what} not available here")


@pytest.fixture(scope="session")
def watch_faulted_model(tmp_path_factory) -> Path:
    return faulted_model(tmp_path_factory.mktemp("wrong-rope"))


@pytest.fixture(scope="session")
def watch_candidate(request) -> VllmServer:
    """The candidate vLLM server (fp32, honest weights until a test swaps it: ``swap``)."""
    return start_vllm(request, EXAMPLE / "model", dtype="float32")


@pytest.fixture
def honest_candidate(watch_candidate) -> VllmServer:
    """The candidate serving the honest weights: swapped back first when an earlier test faulted it."""
    if watch_candidate.model_dir != EXAMPLE / "model":
        swap(watch_candidate, EXAMPLE / "model")
    return watch_candidate


@pytest.fixture(scope="session")
def watch_haproxy(vllm_fp32, watch_candidate):
    """HAProxy in front of the reference (the session's fp32 server) and the candidate, candidate at
    CANARY_WEIGHT %, both servers UP and a request answered through it before any test uses it."""
    if not Path(HAPROXY).exists():
        _missing(HAPROXY)
    proxy = Haproxy(vllm_fp32.port, watch_candidate.port)
    try:
        proxy.wait_up("reference", "candidate")
        send(proxy.url, 1)
    except BaseException:
        tail = proxy.log_tail()
        proxy.close()
        raise AssertionError(f"haproxy did not come up; log tail:\n{tail}") from None
    yield proxy
    proxy.close()


@pytest.fixture
def canary_weights(watch_haproxy):
    """The canary split restored before the test (an earlier one may have routed back), both servers UP."""
    watch_haproxy.set_weight("reference", 100 - CANARY_WEIGHT)
    watch_haproxy.set_weight("candidate", CANARY_WEIGHT)
    watch_haproxy.wait_up("reference", "candidate")
    return watch_haproxy


@pytest.fixture(scope="session")
def watch_prometheus(vllm_fp32, watch_candidate, watch_haproxy):
    """Prometheus scraping reference, candidate and HAProxy every second, every target up."""
    if not Path(os.environ.get("PROMETHEUS_BINARY", "/usr/bin/prometheus")).exists():
        _missing("prometheus")
    prometheus = prometheus_for(vllm_fp32, watch_candidate, watch_haproxy)
    yield prometheus
    prometheus.close()


@contextlib.contextmanager
def traffic(url: str, request_log: Path | None = None, every: float = 1.0):
    """Live traffic through ``url`` (logged to ``request_log``) for the body of the ``with``."""
    client = Traffic(url, request_log, every)
    try:
        yield client
    finally:
        client.close()
