"""Servers started for one check (an `openai` kernel's `launch:`) and stopped by PID when it ends.

Why in promote and not only in tools/vllm_server.py: "start a server, export its URL, check, stop
it" is four commands a newcomer can get wrong (a server left running, a fixed pid-file path two jobs
overwrite). With `launch:` the kernel starts the server when it opens and stops it when it closes;
``Kernel.close`` runs on every way out of a check (a result, an error, Ctrl-C and SIGTERM raise
through it: promote/signals.py), and an ``atexit`` hook stops whatever is still running if a
caller never closed the kernel. The server runs in a new session (its own process group), so
stopping it also stops its children (vLLM's engine core), and never anything else.

Each job gets its own log and pid file (``promote-<role>-<pid>-<port>.log``/``.pid`` in
``log_dir`` or the temporary directory). The log is removed after a check that went well unless
``keep_log``; when the server failed (exited before ``health``, or died later) the log is kept and
its tail quoted in the message. tools/vllm_server.py uses the same functions for servers that
outlive one check.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
#: Environment a vLLM launch always gets: loopback only, no telemetry, no Hub downloads (the model is a
#: local directory).
VLLM_ENV = {"VLLM_HOST_IP": HOST, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1"}
#: promote's own interpreter settings would make another venv's Python import promote's packages.
DROPPED_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
TAIL_CHARS = 3000


class LaunchError(Exception):
    """The server could not be started: exited early, never healthy, or its program is missing."""


def free_port() -> int:
    """A port nobody listens on now (bound, read, released; the server binds it next)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie child of ours counts as gone once reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def stop(pid: int, *, timeout: float = 30.0) -> None:
    """SIGTERM ``pid`` (a server stops its engine), then SIGKILL its process group after ``timeout``.
    The group is the session :func:`spawn` created: only the server and its children."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def tail(path: Path | None, chars: int = TAIL_CHARS) -> str:
    """The last ``chars`` characters of a log (empty when there is none)."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - chars))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


@dataclass
class Server:
    """A started server: its PID (leader of its own process group), port, per-job log and pid file."""

    pid: int
    port: int
    log: Path
    pid_file: Path | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/v1"

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return alive(self.pid)

    def exit_code(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def log_tail(self, chars: int = TAIL_CHARS) -> str:
        return tail(self.log, chars)

    def describe_death(self) -> str:
        """"exited with code -4 (SIGILL)" / "is still running", for messages."""
        if self.alive():
            return f"(pid {self.pid}) is still running"
        code = self.exit_code()
        if code is None:
            return f"(pid {self.pid}) has exited"
        name = ""
        if code < 0:
            with contextlib.suppress(ValueError):
                name = f" ({signal.Signals(-code).name})"
        return f"(pid {self.pid}) exited with code {code}{name}"

    def stop(self, *, keep_log: bool = True, timeout: float = 30.0) -> None:
        stop(self.pid, timeout=timeout)
        _RUNNING.pop(self.pid, None)
        if self.proc is not None:
            with contextlib.suppress(Exception):
                self.proc.wait(timeout=1)
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)
        if not keep_log:
            self.log.unlink(missing_ok=True)


_RUNNING: dict[int, Server] = {}


@atexit.register
def _stop_all() -> None:
    """Last resort: stop every server this process started and nobody stopped (a caller that never
    closed its kernel); the close path is the normal one."""
    for server in list(_RUNNING.values()):
        server.stop(keep_log=True, timeout=10.0)


def spawn(argv: list[str], *, port: int, env: dict[str, str] | None = None, job: str = "server",
          log_dir: Path | None = None, log: Path | None = None, pid_file: Path | None = None,
          pipes: bool = False) -> Server:
    """Start ``argv`` in a new session with its output in a per-job log; write its PID to a per-job
    pid file. ``pipes``: stdin and stdout are pipes to the caller (a worker's protocol, `kind: vllm`)
    and only stderr goes to the log. Raises LaunchError when the program cannot be executed."""
    folder = Path(log_dir) if log_dir else Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"promote-{job}-{os.getpid()}-{port}"
    log = Path(log) if log else folder / f"{stem}.log"
    pid_file = Path(pid_file) if pid_file else folder / f"{stem}.pid"
    child_env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    child_env.update(env or {})
    try:
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE if pipes else out,
                                    stderr=out if pipes else subprocess.STDOUT,
                                    stdin=subprocess.PIPE if pipes else subprocess.DEVNULL, env=child_env,
                                    start_new_session=True)
    except OSError as exc:
        raise LaunchError(f"cannot run `{argv[0]}`: {exc.strerror or exc}") from None
    server = Server(proc.pid, port, log, pid_file, proc)
    _RUNNING[proc.pid] = server
    pid_file.write_text(f"{proc.pid}\n{log}\n")
    return server


def wait_healthy(server: Server, *, path: str = "/health", timeout: float = 600.0, interval: float = 1.0) -> None:
    """Poll ``GET {base}{path}`` until it answers 200. The server is stopped and LaunchError raised
    (with the log's tail) when it exits first or the time runs out; the log is kept."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            server.stop(keep_log=True)
            raise LaunchError(f"the server {server.describe_death()} before {path} answered; log {server.log}, "
                              f"last lines:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.base + path, timeout=2) as resp:  # noqa: S310 - our loopback server
                if resp.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(interval)
    server.stop(keep_log=True)
    raise LaunchError(f"the server did not answer {path} with 200 within {timeout:g} s (`launch.timeout_s`); "
                      f"log {server.log}, last lines:\n{server.log_tail()}")


def vllm_argv(python: str, model_dir: str | os.PathLike[str], *, port: int, dtype: str, served_name: str,
              args: list[str] | tuple[str, ...] = ()) -> list[str]:
    """vLLM's OpenAI server as a module (the CPU wheel's `vllm serve` script cannot find its dist)."""
    return [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir), "--host", HOST,
            "--port", str(port), "--dtype", dtype, "--served-model-name", served_name, *args]


def host_has_amx(cpuinfo: str | None = None) -> bool:
    """True when this machine's CPU exposes AMX tiles (``amx_tile`` in /proc/cpuinfo's flags): vLLM's CPU
    backend then picks its AMX attention kernel for bfloat16 (docs/runtime.md, "bf16 vLLM on AMX CPUs")."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return False
    return any(line.startswith("flags") and "amx_tile" in line.split() for line in cpuinfo.splitlines())
