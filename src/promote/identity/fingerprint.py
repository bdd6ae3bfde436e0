"""Identity check ``fingerprint``: each side's config, tokenizer and weights by content hash, and a
server's own account (``/v1/models``, ``/version``), in the report; `identity.same` turns a difference
into ``invalid``.

Files come from the contract (`identity.<side>.tokenizer|config|weights`, or the shared key) or from
the kernel (``Kernel.identity_facts()["files"]``: a torch kernel's ``weights``, an ONNX graph, a launched
vLLM's model folder); a tokenizer or config not named is looked for beside the weights. A folder is
hashed file by file (the known names only), so a 15 GB checkpoint is read once per run and a cache keyed
by path, size and mtime spares the reruns of ``calibrate`` and ``watch``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from promote.contract.identity_spec import SAME_KEYS, SideFiles
from promote.findings import Finding
from promote.identity.api import IdentityCheck, IdentityInputs
from promote.scale.split import file_digest

PATTERNS: dict[str, tuple[str, ...]] = {
    "tokenizer": ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                  "vocab.json", "merges.txt", "added_tokens.json"),
    "config": ("config.json", "generation_config.json"),
    "weights": ("*.safetensors", "*.bin", "*.onnx", "*.gguf", "*.pt"),
}
_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """The file's digest as shards name it (``scale.split.file_digest``: sha256 of the bytes up to 1 GiB,
    beyond it the size and evenly spaced chunks, so a 140 GB checkpoint is not read whole on every check),
    cached by (path, size, mtime)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _CACHE:
        _CACHE[key] = file_digest(path)
    return _CACHE[key]


def _members(path: Path, what: str) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    found = {p for pattern in PATTERNS[what] for p in path.glob(pattern) if p.is_file()}
    return sorted(found)


def tokenizer_size(files: list[Path]) -> int | None:
    """Ids a ``tokenizer.json`` produces (added tokens included); None without one or when unreadable."""
    path = next((f for f in files if f.name == "tokenizer.json" or f.suffix == ".json" and "tokenizer" in f.name
                 and f.name != "tokenizer_config.json"), None)
    if path is None:
        return None
    try:
        from tokenizers import Tokenizer

        return int(Tokenizer.from_file(str(path)).get_vocab_size(with_added_tokens=True))
    except Exception:  # noqa: BLE001 - an unreadable tokenizer is reported as unknown, not a crash
        return None


def describe_files(path: Path, what: str) -> dict[str, Any] | None:
    """``{sha256, files, bytes}`` (a folder: sha256 over each member's name and hash), None when absent."""
    members = _members(path, what)
    if not members:
        return None
    hashes = {m.name: file_sha256(m) for m in members}
    combined = hashes[members[0].name] if len(members) == 1 else hashlib.sha256(
        "".join(f"{name}:{digest}\n" for name, digest in sorted(hashes.items())).encode()).hexdigest()
    out: dict[str, Any] = {"sha256": combined, "files": sorted(hashes), "bytes": sum(m.stat().st_size for m in members)}
    if what == "tokenizer":
        out["vocab"] = tokenizer_size(members)
    return out


def side_fingerprint(declared: dict[str, Any], files: SideFiles) -> dict[str, Any]:
    """One side's identity fingerprint: contract files first, then the kernel's, then beside the weights."""
    found = {key: Path(value) for key, value in (declared.get("files") or {}).items() if value}
    found.update({key: files.get(key) for key in PATTERNS if files.get(key) is not None})
    weights = found.get("weights")
    beside = (weights if weights.is_dir() else weights.parent) if weights is not None else None
    out: dict[str, Any] = {}
    for key in PATTERNS:
        where = found.get(key) or beside
        described = describe_files(where, key) if where is not None else None
        if described is not None:
            out[key] = described
    server = declared.get("server")
    if server:
        out["server"] = dict(server)
    return out


def _value(fingerprint: dict[str, Any], key: str) -> Any:
    """The fact `same: [key]` compares (None when the side does not have it)."""
    if key in ("tokenizer", "config", "weights"):
        return (fingerprint.get(key) or {}).get("sha256")
    server = fingerprint.get("server") or {}
    return server.get({"server_model": "model", "server_version": "version"}[key])


def check(inputs: IdentityInputs) -> list[Finding]:
    """`identity.same`: each named fact equal (and known) on both sides; other differences in the
    tokenizer or config are notes (a checkpoint change may be the point of the comparison)."""
    out = []
    ref, cand = (s.fingerprint for s in inputs.sides())
    for key in inputs.spec.same:
        if key == "vocabulary":
            continue  # the vocabulary check reads it
        a, b = _value(dict(ref), key), _value(dict(cand), key)
        if a is None or b is None or a != b:
            missing = [s.role for s, v in zip(inputs.sides(), (a, b), strict=True) if v is None]
            what = (f"{' and '.join(missing)} has no {key} promote can fingerprint" if missing else
                    f"the {key} differs: reference {json.dumps(a)[:80]}, candidate {json.dumps(b)[:80]}")
            fix = (f"name it in `identity.{missing[0]}.{key}`" if missing and key in ("tokenizer", "config", "weights")
                   else f"give both sides the same {SAME_KEYS[key]}, or drop `{key}` from `identity.same`")
            out.append(Finding("fingerprint", "invalid", missing[0] if len(missing) == 1 else "both",
                               f"contract `identity.same` requires {key} to be equal, but {what}", fix,
                               {"key": key, "reference": a, "candidate": b}))
    for key in ("tokenizer", "config"):
        a, b = _value(dict(ref), key), _value(dict(cand), key)
        if key not in inputs.spec.same and a is not None and b is not None and a != b:
            out.append(Finding("fingerprint", "note", "both", f"the {key} files differ between the sides "
                               f"(sha256 {a[:12]}… vs {b[:12]}…)", f"if both sides must use one {key}, add "
                               f"`{key}` to `identity.same`", {"key": key, "reference": a, "candidate": b}))
    return out


CHECK = IdentityCheck("fingerprint", check, doc=__doc__ or "", tasks=frozenset({"causal-lm", "tensor"}))
