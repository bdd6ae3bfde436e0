"""The ``haproxy`` sink: server weights through HAProxy's runtime API (the ``stats socket``).

Why the runtime API and not a config reload: ``set weight <backend>/<server> <w>`` takes effect at once, on
the running process, without dropping a connection (HAProxy's management guide, "set weight"), and
``get weight`` answers ``<current> (initial <configured>)``, which is the read-back. The socket needs
``level admin`` (``set weight`` is refused below it, and the refusal is reported, not hidden).

The candidate's share ``w`` (0..100) becomes weight ``w`` on the candidate server and, when a ``reference``
server is named, ``100 - w`` on it, so the two weights are percentages of the backend's traffic. Weights are
raised before others are lowered, so the backend never passes through a moment where both are 0. Commands are
sent one per connection (HAProxy's non-interactive mode: one line in, the answer, the connection closes), with a
total deadline and a cap on the answer.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Mapping
from typing import Any

from promote.sinks.base import BaseSink, TargetError
from promote.sinks.options import Options, one_line

MAX_ANSWER = 64 * 1024
_NAME = re.compile(r"^[A-Za-z0-9_.:#-]+$")  # HAProxy proxy/server names, or #<id>
_WEIGHT = re.compile(r"^(\d+) \(initial (\d+)\)$")

KEYS = {
    "socket": "the stats socket: a unix socket path, or tcp://HOST:PORT (`stats socket ... level admin`)",
    "backend": "the backend holding both servers",
    "candidate": "the candidate's server name in that backend",
    "reference": "the reference's server name (optional): it gets 100 minus the candidate's weight",
    "timeout_s": "seconds for one command, connect to answer (default 5)",
}


def build(options: Mapping[str, Any], where: str) -> HaproxySink:
    """The ``SinkFactory`` of ``haproxy``."""
    opts = Options("haproxy", options, where, KEYS)
    address = opts.text("socket")
    assert address is not None
    target: str | tuple[str, int] = address
    if address.lower().startswith("tcp://"):
        host, _, port = address[6:].rstrip("/").rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise opts.fail("socket", f"must be tcp://HOST:PORT, not {address!r}")
        target = (host.strip("[]"), int(port))
    elif address.lower().startswith("unix://"):
        target = address[7:]
    names = {}
    for key in ("backend", "candidate", "reference"):
        value = opts.text(key, required=key != "reference")
        if value is not None and not _NAME.match(value):
            raise opts.fail(key, f"must be an HAProxy name (letters, digits, . _ : - or #ID), not {value[:60]!r}")
        names[key] = value
    if names["reference"] == names["candidate"]:
        raise opts.fail("reference", "must name another server than `candidate`")
    timeout = opts.number("timeout_s", default=5.0, low=0.1, high=120.0)
    return HaproxySink(target, str(names["backend"]), str(names["candidate"]), names["reference"], timeout)


class HaproxySink(BaseSink):
    name = "haproxy"

    def __init__(self, address: str | tuple[str, int], backend: str, candidate: str, reference: str | None,
                 timeout_s: float) -> None:
        self.address, self.backend, self.timeout_s = address, backend, timeout_s
        self.servers = [candidate] + ([reference] if reference else [])

    def __repr__(self) -> str:
        return f"HaproxySink({self._where()}, backend={self.backend!r}, servers={self.servers!r})"

    def _where(self) -> str:
        return self.address if isinstance(self.address, str) else f"tcp://{self.address[0]}:{self.address[1]}"

    # -- the runtime API -----------------------------------------------------------------------------
    def command(self, line: str) -> str:
        """Send one command, return HAProxy's whole answer (the connection closes after it)."""
        deadline = time.monotonic() + self.timeout_s
        family = socket.AF_UNIX if isinstance(self.address, str) else socket.AF_INET6 \
            if ":" in self.address[0] else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout_s)
                sock.connect(self.address)
                sock.sendall(line.encode("ascii") + b"\n")
                chunks, total = [], 0
                while True:
                    sock.settimeout(max(deadline - time.monotonic(), 0.001))
                    chunk = sock.recv(8192)
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > MAX_ANSWER:
                        raise TargetError(f"HAProxy at {self._where()} answered `{line}` with more than "
                                          f"{MAX_ANSWER} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise TargetError(f"HAProxy at {self._where()} did not answer `{line}` within {self.timeout_s:g} s") \
                from None
        except OSError as exc:
            raise TargetError(f"cannot reach HAProxy's stats socket {self._where()}: {exc.strerror or exc}") from None
        return b"".join(chunks).decode("utf-8", "replace").strip()

    def weight(self, server: str) -> tuple[int, int]:
        answer = self.command(f"get weight {self.backend}/{server}")
        match = _WEIGHT.match(answer)
        if not match:
            raise TargetError(f"HAProxy at {self._where()}: `get weight {self.backend}/{server}` answered "
                              f"{one_line(answer, 120)!r}")
        return int(match.group(1)), int(match.group(2))

    # -- the sink ------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        weights, initial = {}, {}
        for server in self.servers:
            weights[server], initial[server] = self.weight(server)
        return {"socket": self._where(), "backend": self.backend, "weights": weights, "initial": initial}

    def targets(self, want: int) -> dict[str, int]:
        return dict(zip(self.servers, (want, 100 - want), strict=False))  # no reference: one server

    def satisfied(self, state: dict[str, Any], want: int) -> bool:
        return state.get("weights") == self.targets(want)

    def describe(self, state: dict[str, Any], want: int) -> str:
        now = state.get("weights", {})
        return "set " + ", ".join(f"{self.backend}/{server} weight {now.get(server, '?')} -> {weight}"
                                  for server, weight in self.targets(want).items())

    def enact(self, state: dict[str, Any], want: int, decision: object) -> None:
        now = state["weights"]
        changes = [(s, w) for s, w in self.targets(want).items() if now.get(s) != w]
        for server, weight in sorted(changes, key=lambda sw: sw[1] < now.get(sw[0], 0)):  # raises first
            answer = self.command(f"set weight {self.backend}/{server} {weight}")
            if answer:  # success is an empty answer; anything else is HAProxy's refusal
                raise TargetError(f"HAProxy refused `set weight {self.backend}/{server} {weight}`: "
                                  f"{one_line(answer, 200)}")
