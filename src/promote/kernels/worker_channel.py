"""A worker process promote talks to in JSON lines over its stdin/stdout (`kind: vllm`'s engine).

Everything the worker sends is untrusted, like an HTTP answer: every answer has a total deadline
and a size cap, must be one JSON object, and a worker that exits, closes its pipe or stops reading
is reported by what happened to it (exit code, signal) — the caller adds the log's tail. The
process itself is a ``launch.Server`` (its own session, per-job log and pid file, stopped by PID,
the ``atexit`` backstop), so nothing here ever signals anything but that process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import time
from typing import Any

from promote.kernels import launch


class WorkerFailure(Exception):
    """The worker did not answer as the protocol says: why, in words for a message."""


class Channel:
    """Request/answer lines with one worker: :meth:`call` sends one object and reads one back."""

    def __init__(self, server: launch.Server) -> None:
        assert server.proc is not None and server.proc.stdin is not None and server.proc.stdout is not None
        self.server = server
        self._stdin = server.proc.stdin
        self._fd = server.proc.stdout.fileno()
        self._buffer = bytearray()

    def send(self, message: dict[str, Any], what: str) -> None:
        try:
            self._stdin.write(json.dumps(message).encode("utf-8") + b"\n")
            self._stdin.flush()
        except OSError as exc:  # BrokenPipeError: it exited or closed its stdin
            raise WorkerFailure(f"stopped reading before {what} ({exc.strerror or exc}); it "
                                f"{self._death()}") from None

    def receive(self, *, timeout: float, limit: int, what: str) -> dict[str, Any]:
        """One answer line within ``timeout`` seconds and ``limit`` bytes, parsed as a JSON object."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            if len(self._buffer) > limit:
                raise WorkerFailure(f"answered {what} with more than {limit} bytes (the cap for that answer)")
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerFailure(f"did not answer {what} within {timeout:g} s")
            ready, _, _ = select.select([self._fd], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(self._fd, 1 << 16)
            if not chunk:
                raise WorkerFailure(f"closed its answers before {what}: it {self._death()}")
            self._buffer += chunk
        end = self._buffer.index(b"\n")
        line = bytes(self._buffer[:end])
        del self._buffer[:end + 1]
        if len(line) > limit:
            raise WorkerFailure(f"answered {what} with {len(line)} bytes, over the cap of {limit}")
        try:
            answer = json.loads(line)
        except ValueError:
            raise WorkerFailure(f"answered {what} with a line that is not JSON: {line[:120]!r}") from None
        if not isinstance(answer, dict):
            raise WorkerFailure(f"answered {what} with JSON that is not an object: {line[:120]!r}")
        return answer

    def call(self, message: dict[str, Any], *, timeout: float, limit: int, what: str) -> dict[str, Any]:
        self.send(message, what)
        return self.receive(timeout=timeout, limit=limit, what=what)

    def _death(self) -> str:
        """How the process ended ("exited with code -9 (SIGKILL)"), given a moment to be reaped."""
        proc = self.server.proc
        with contextlib.suppress(Exception):
            if proc is not None:
                proc.wait(timeout=5)
        return self.server.describe_death()

    def close(self, *, keep_log: bool, grace: float = 10.0) -> None:
        """Ask the worker to end (``{"op": "close"}``), wait ``grace`` seconds, then stop it by PID
        (SIGTERM, SIGKILL of its process group); close the pipes."""
        proc = self.server.proc
        with contextlib.suppress(OSError, ValueError):
            self._stdin.write(b'{"op": "close"}\n')
            self._stdin.flush()
        if proc is not None:
            with contextlib.suppress(Exception):
                proc.wait(timeout=grace)
        self.server.stop(keep_log=keep_log, timeout=grace)
        for pipe in (self._stdin, proc.stdout if proc is not None else None):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                pipe.close()
