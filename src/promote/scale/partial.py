"""The partial file of one shard (``promote check --shard I/N --partial OUT``), read by ``promote merge``.

Versioned and self-describing, never pickled (a partial from an untrusted machine can only yield
data): ``MAGIC`` + a JSON document holding the contract's interpolated sha256 (and its path, to find
it again), both kernels' fingerprints, the digests of their model and weights files, the shard
(index, count, batch size), the eval set's size, id digest and content digest, the shard's sample
ids, and each offline stage's consumer states as their own versioned bytes (``state.py``, base64), keyed
stage → the stage's own key (``stages/api.py``), with the stage's JSON extras and the states it loaded
rather than computed (a cached noise floor). No variable values
are stored: ``${VAR}`` values may be secrets, the sha256 covers them. Reading checks every field's
type and range before anything uses it, and reads at most ``MAX_BYTES`` of a regular file.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from promote import __version__
from promote.bounded import MIB, read_regular
from promote.errors import UsageError
from promote.scale.split import MAX_SHARDS

MAGIC = b"PROMOTE-PARTIAL\n"
FORMAT = "promote-partial"
VERSION = 2  # 2: states per stage, extras and loaded per stage (issue 21)
MAX_BYTES = 2048 * MIB  # read no more of a partial file: a few MB each in practice (docs/scale-out.md)


@dataclass
class Partial:
    """One shard's consumer states and the facts ``promote merge`` checks before folding them."""

    contract: dict[str, Any]  # path (absolute), display, sha256, raw_sha256, name
    kernels: dict[str, Any]  # role -> fingerprint
    shard: dict[str, int]  # index, count, batch_size
    evalset: dict[str, Any]  # samples, ids_sha256, content_sha256 (ids, tokens, tags)
    sample_ids: list[str]
    stages: list[str]  # the offline stages computed, in run order
    states: dict[str, dict[str, bytes]] = field(default_factory=dict)  # stage -> its key -> state bytes
    kernel_seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # the kernels' notes (precision fallbacks...)
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> its JSON extras
    loaded: dict[str, list[str]] = field(default_factory=dict)  # stage -> keys loaded, not computed
    error: str | None = None  # a kernel crashed: the merged offline stages are `error` (exit 3)
    files: dict[str, str] = field(default_factory=dict)  # role.field -> sha256 of model/weights files
    tool_version: str = __version__
    # The shard's identity check (the report's `identity`, identity/result.py); with an `invalid` finding the
    # shard also carries `error` and the merged offline stages are `invalid` (docs/identity.md).
    identity: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return f"{self.shard['index']}/{self.shard['count']}"

    def to_bytes(self) -> bytes:
        doc = {"format": FORMAT, "version": VERSION, **asdict(self)}
        doc["states"] = {stage: {k: base64.b64encode(v).decode() for k, v in states.items()}
                         for stage, states in self.states.items()}
        return MAGIC + json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Partial:
        """Parse a partial; a usage error naming ``where`` for anything else (wrong file, other version,
        a field of the wrong type or out of range: a partial may come from an untrusted machine)."""
        if not data.startswith(MAGIC):
            raise UsageError(f"{where}: not a promote partial file (write one with `promote check CONTRACT "
                             "--shard I/N --partial OUT`)")
        try:
            doc = json.loads(data[len(MAGIC):].decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise UsageError(f"{where}: corrupt promote partial file ({type(exc).__name__}: {str(exc)[:200]}); "
                             "recompute the shard") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise UsageError(f"{where}: not a promote partial file")
        if doc.get("version") != VERSION:
            raise UsageError(f"{where}: partial format version {repr(doc.get('version'))[:40]} is not {VERSION} "
                             f"(written by promote {str(doc.get('tool_version'))[:40]}); recompute the shard with "
                             f"promote {__version__}")
        doc.pop("format"), doc.pop("version")
        try:
            _check_fields(doc)
            doc["states"] = {stage: {k: base64.b64decode(v, validate=True) for k, v in states.items()}
                             for stage, states in doc["states"].items()}
            return cls(**doc)
        except (binascii.Error, KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{where}: malformed promote partial file ({str(exc)[:300]}); recompute the "
                             "shard") from None

    @classmethod
    def read(cls, path: Path) -> Partial:
        try:
            data = read_regular(path, MAX_BYTES)
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the partial file: {exc.strerror or exc}") from None
        return cls.from_bytes(data, str(path))


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _strings(value: Any, what: str) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"`{what}` must be a list of strings")


def _check_fields(doc: dict[str, Any]) -> None:
    """Every field's type and range, before any of it is used (``promote merge`` sizes lists by
    ``shard.count`` and indexes states by name). Unknown fields fail in ``Partial(**doc)``."""
    for key, kind in (("contract", dict), ("kernels", dict), ("shard", dict), ("evalset", dict),
                      ("states", dict), ("kernel_seconds", dict)):
        if not isinstance(doc.get(key), kind):
            raise TypeError(f"`{key}` must be an object")
    shard = doc["shard"]
    if set(shard) != {"index", "count", "batch_size"} or not all(_is_int(v) for v in shard.values()):
        raise TypeError("`shard` must be {index, count, batch_size}, all integers")
    if not 1 <= shard["count"] <= MAX_SHARDS or not 0 <= shard["index"] < shard["count"]:
        raise ValueError(f"`shard` {shard['index']}/{shard['count']} is not I/N with 0 <= I < N <= {MAX_SHARDS}")
    if not 1 <= shard["batch_size"] <= 2**31:
        raise ValueError(f"`shard.batch_size` {shard['batch_size']} is not a positive batch size")
    contract = doc["contract"]
    if not all(isinstance(contract.get(k), str) for k in ("path", "display", "sha256", "raw_sha256")):
        raise TypeError("`contract` must hold the strings path, display, sha256 and raw_sha256")
    if not all(isinstance(v, dict) for v in doc["kernels"].values()):
        raise TypeError("`kernels` must map each role to its fingerprint object")
    _strings(doc.get("sample_ids"), "sample_ids")
    _strings(doc.get("stages"), "stages")
    _strings(doc.get("notes", []), "notes")
    if len(set(doc["stages"])) != len(doc["stages"]):
        raise ValueError("`stages` must be distinct")
    if not all(isinstance(states, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in states.items())
               for states in doc["states"].values()):
        raise TypeError("`states` must map each stage to its states' names and base64 texts")
    extras, loaded = doc.get("extras", {}), doc.get("loaded", {})
    if not isinstance(extras, dict) or not all(isinstance(v, dict) for v in extras.values()):
        raise TypeError("`extras` must map each stage to an object")
    if not isinstance(loaded, dict) or not all(isinstance(v, list) and all(isinstance(k, str) for k in v)
                                               for v in loaded.values()):
        raise TypeError("`loaded` must map each stage to a list of state names")
    if doc.get("error") is None:
        lacking = [s for s in doc["stages"] if s not in doc["states"]]
        if lacking:
            raise KeyError(f"`states.{lacking[0]}` is missing")
    elif not isinstance(doc["error"], str):
        raise TypeError("`error` must be a string or null")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in doc["kernel_seconds"].values()):
        raise TypeError("`kernel_seconds` must map names to numbers")
    files = doc.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise TypeError("`files` must map kernel files to their sha256")
    if not isinstance(doc.get("tool_version", ""), str):
        raise TypeError("`tool_version` must be a string")
    if doc.get("identity") is not None:
        import jsonschema

        from promote.resources import load_schema

        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(
            load_schema("report")["properties"]["identity"]).iter_errors(doc["identity"]))
        if error is not None:
            raise TypeError(f"`identity` is not an identity result: {error.message[:200]}")
