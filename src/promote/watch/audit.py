"""The audit log of `promote watch`: one JSON line per decision, hash-chained, only ever appended.

Each record carries ``prev`` (the previous record's ``hash``; 64 zeros for the first) and ``hash``
(sha256 of the record's canonical JSON without ``hash``), so editing a record breaks its own hash and
removing one breaks the next record's ``prev``: ``verify`` names the first line that does not hold.
Records are written with one ``write`` on an ``O_APPEND`` descriptor and ``fsync``ed, with SIGINT and
SIGTERM blocked for that moment, so a signal lands before or after a whole record, never inside one
(``signals.py`` raises its exception once they are unblocked). Nothing here rewrites the file.

The chain cannot detect the *last* records being cut off by someone with write access: the last
record's ``hash`` (printed by ``watch`` and answered by ``serve``) is what to anchor elsewhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promote.bounded import open_regular

GENESIS = "0" * 64
FORMAT = 1  # the record layout's version (``v``)
MAX_RECORD_BYTES = 1024 * 1024  # one record; an evidence summary is a few KiB
MAX_LOG_BYTES = 1024 * 1024 * 1024  # a year of one-minute windows is ~2 GiB at 4 KiB each: rotate by contract


class AuditError(Exception):
    """The log does not verify (or cannot be read): the message names the file and line."""


def canonical(record: dict[str, Any]) -> bytes:
    """The bytes a record is hashed and written as: sorted keys, no spaces, ASCII, finite numbers only."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


@dataclass
class Verified:
    """What ``verify`` found: the records (in order), the last hash, the next sequence number."""

    records: list[dict[str, Any]] = field(default_factory=list)
    last_hash: str = GENESIS

    @property
    def next_seq(self) -> int:
        return len(self.records)

    @property
    def latest(self) -> dict[str, Any] | None:
        return self.records[-1] if self.records else None


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    fd = open_regular(path, MAX_LOG_BYTES)
    with os.fdopen(fd, "rb") as handle:
        yield from enumerate(iter(lambda: handle.readline(MAX_RECORD_BYTES + 1), b""), start=1)


def _check(number: int, raw: bytes, expected_prev: str, seq: int) -> dict[str, Any]:
    """One line against the chain; AuditError (without the file name) saying what is wrong."""
    if len(raw) > MAX_RECORD_BYTES:
        raise AuditError(f"line {number}: longer than {MAX_RECORD_BYTES} bytes; not a record promote wrote")
    if not raw.endswith(b"\n"):
        raise AuditError(f"line {number}: incomplete (no newline at the end): the record was cut off")
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):
        raise AuditError(f"line {number}: not a JSON record") from None
    if not isinstance(record, dict) or not isinstance(record.get("hash"), str):
        raise AuditError(f"line {number}: not an audit record (no `hash`)")
    if raw != canonical(record) + b"\n":
        raise AuditError(f"line {number}: not in canonical form: the line was edited")
    if record.get("hash") != record_hash(record):
        raise AuditError(f"line {number}: its hash does not match its content: the record was edited")
    if record.get("prev") != expected_prev:
        raise AuditError(f"line {number}: `prev` does not match the previous record's hash: a record before it "
                         "was removed, reordered or edited")
    if record.get("seq") != seq:
        raise AuditError(f"line {number}: `seq` is {record.get('seq')!r}, expected {seq}: records are missing")
    return record


def verify(path: str | os.PathLike[str]) -> Verified:
    """Every record of the log at ``path``, checked against the chain; a missing file is an empty log.
    Raises AuditError naming the file and the first line that does not hold."""
    path = Path(path)
    out = Verified()
    try:
        for number, raw in _lines(path):
            record = _check(number, raw, out.last_hash, len(out.records))
            out.records.append(record)
            out.last_hash = record["hash"]
    except FileNotFoundError:
        return out
    except AuditError as exc:
        raise AuditError(f"{path}: {exc}") from None
    except OSError as exc:
        raise AuditError(f"{path}: cannot read the audit log: {exc.strerror or exc}") from None
    return out


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """SIGINT/SIGTERM held back for the block (delivered right after it), where the platform can."""
    mask = {signal.SIGINT, signal.SIGTERM}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, mask)
    except (AttributeError, OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class AuditLog:
    """An open audit log: verified once when opened, then appended to. ``exclusive`` holds an advisory
    lock (``flock``) on ``PATH.lock`` for the object's life, so a second watch cannot fork the chain."""

    def __init__(self, path: str | os.PathLike[str], *, exclusive: bool = False) -> None:
        self.path = Path(path)
        self._lock_fd = self._lock() if exclusive else None
        verified = verify(self.path)
        self.records = verified.records
        self.last_hash = verified.last_hash

    @property
    def latest(self) -> dict[str, Any] | None:
        return self.records[-1] if self.records else None

    def _lock(self) -> int:
        import fcntl

        lock = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise AuditError(f"{lock}: cannot create the audit log's lock file: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise AuditError(f"{self.path}: another `promote watch` is appending to this audit log (it holds "
                             f"{lock.name}); two writers would fork the hash chain") from None
        return fd

    def close(self) -> None:
        """Release the lock (the process ending releases it too)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Chain ``record`` (adds ``v``, ``seq``, ``prev``, ``hash``), write it whole and fsync; returns it."""
        full = {**record, "v": FORMAT, "seq": len(self.records), "prev": self.last_hash}
        full["hash"] = record_hash(full)
        line = canonical(full) + b"\n"
        if len(line) > MAX_RECORD_BYTES:
            raise AuditError(f"{self.path}: a record of {len(line)} bytes is over the {MAX_RECORD_BYTES}-byte limit")
        created = not self.path.exists()
        with signals_blocked():
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            try:
                written = os.write(fd, line)
                if written != len(line):
                    raise AuditError(f"{self.path}: short write ({written} of {len(line)} bytes); disk full?")
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                _fsync_dir(self.path.parent)
        self.records.append(full)
        self.last_hash = full["hash"]
        return full


def _fsync_dir(directory: Path) -> None:
    """A new file's directory entry reaches the disk too (else a crash could lose the whole log)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
