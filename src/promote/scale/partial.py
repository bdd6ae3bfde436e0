"""The partial file of one shard (``promote check --shard I/N --partial OUT``), read by ``promote merge``.

Versioned and self-describing, never pickled (a partial from an untrusted machine can only yield
data): ``MAGIC`` + a JSON document holding the contract's interpolated sha256 (and its path, to find
it again), both kernels' fingerprints, the shard (index, count, batch size), the eval set's size and
id digest, the shard's sample ids, and each consumer's state as its own versioned bytes (``state.py``,
base64). No variable values are stored: ``${VAR}`` values may be secrets, the sha256 covers them.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from promote import __version__
from promote.errors import UsageError

MAGIC = b"PROMOTE-PARTIAL\n"
FORMAT = "promote-partial"
VERSION = 1


@dataclass
class Partial:
    """One shard's consumer states and the facts ``promote merge`` checks before folding them."""

    contract: dict[str, Any]  # path (absolute), display, sha256, raw_sha256, name
    kernels: dict[str, Any]  # role -> fingerprint
    shard: dict[str, int]  # index, count, batch_size
    evalset: dict[str, Any]  # samples, ids_sha256
    sample_ids: list[str]
    stages: list[str]  # the offline stages computed (numerics, slices)
    states: dict[str, bytes] = field(default_factory=dict)  # numerics | floor:KIND | slices -> state bytes
    kernel_seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # the kernels' notes (precision fallbacks...)
    localize: dict[str, Any] | None = None  # shard 0 only: it covers the eval set's first samples
    error: str | None = None  # a kernel crashed: the merged offline stages are `error` (exit 3)
    tool_version: str = __version__

    @property
    def label(self) -> str:
        return f"{self.shard['index']}/{self.shard['count']}"

    def to_bytes(self) -> bytes:
        doc = {"format": FORMAT, "version": VERSION, **asdict(self)}
        doc["states"] = {k: base64.b64encode(v).decode() for k, v in self.states.items()}
        return MAGIC + json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Partial:
        """Parse a partial; a usage error naming ``where`` for anything else (wrong file, other version)."""
        if not data.startswith(MAGIC):
            raise UsageError(f"{where}: not a promote partial file (write one with `promote check CONTRACT "
                             "--shard I/N --partial OUT`)")
        try:
            doc = json.loads(data[len(MAGIC):].decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise UsageError(f"{where}: corrupt promote partial file ({exc}); recompute the shard") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise UsageError(f"{where}: not a promote partial file")
        if doc.get("version") != VERSION:
            raise UsageError(f"{where}: partial format version {doc.get('version')!r} is not {VERSION} (written by "
                             f"promote {doc.get('tool_version')}); recompute the shard with promote {__version__}")
        doc.pop("format"), doc.pop("version")
        try:
            doc["states"] = {k: base64.b64decode(v) for k, v in doc["states"].items()}
            partial = cls(**doc)
            int(partial.shard["index"]), int(partial.shard["count"]), str(partial.contract["sha256"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UsageError(f"{where}: malformed promote partial file ({type(exc).__name__}: {exc}); "
                             "recompute the shard") from None
        return partial

    @classmethod
    def read(cls, path: Path) -> Partial:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the partial file: {exc.strerror or exc}") from None
        return cls.from_bytes(data, str(path))
