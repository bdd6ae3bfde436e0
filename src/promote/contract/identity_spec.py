"""The contract's `identity:` section (docs/identity.md): what each side's identity files are, and
which facts must be equal on both sides (`same:`).

Every key is optional: without the section the identity check still runs (vocabulary, prompt ids,
the fingerprints promote finds itself); the section names files promote cannot find (a tokenizer
that is not beside the weights) and turns a difference that would only be shown into ``invalid``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promote.contract.kernel_specs import display_path, resolve_path
from promote.contract.load import LoadedDocument, Problem

#: Files an `identity.<side>` (or the shared `identity`) block may name, each fingerprinted by content.
FILE_KEYS: tuple[str, ...] = ("tokenizer", "config", "weights")
#: What `identity.same` may require equal on both sides, and what each means (the schema and docs print it).
SAME_KEYS: dict[str, str] = {
    "tokenizer": "the tokenizer files' content hash (tokenizer.json, tokenizer_config.json, special tokens)",
    "vocabulary": "the tokenizer's vocabulary size and the model's (logits rows): padded rows are then an "
                  "`invalid` finding too, not a note",
    "config": "the model config's content hash (config.json)",
    "weights": "the weights files' content hash (safetensors, ONNX graph): use it for a pure engine change "
               "(same checkpoint, other kernels)",
    "server_model": "the model a server says it serves (`/v1/models`: id and root)",
    "server_version": "the serving engine's version (`/version`)",
}


@dataclass(frozen=True)
class SideFiles:
    """Files that identify one side; a ``None`` is looked for beside the kernel's own files."""

    tokenizer: Path | None = None
    config: Path | None = None
    weights: Path | None = None
    displays: dict[str, str] = field(default_factory=dict)  # key → the path as the contract wrote it

    def get(self, key: str) -> Path | None:
        return getattr(self, key)


@dataclass(frozen=True)
class IdentitySpec:
    same: tuple[str, ...] = ()
    reference: SideFiles = field(default_factory=SideFiles)
    candidate: SideFiles = field(default_factory=SideFiles)
    line: int | None = None

    def side(self, role: str) -> SideFiles:
        return self.reference if role == "reference" else self.candidate


def _files(doc: LoadedDocument, raw: dict[str, Any], shared: dict[str, Any], where: tuple[Any, ...],
           problems: list[Problem]) -> SideFiles:
    values: dict[str, Path | None] = {}
    displays: dict[str, str] = {}
    for key in FILE_KEYS:
        given = raw.get(key, shared.get(key))
        if given is None:
            values[key] = None
            continue
        path = resolve_path(doc, given).resolve()
        at = (*where, key) if key in raw else ("identity", key)
        if not path.exists() and (key in raw or where[-1] == "reference"):  # a shared key: said once
            problems.append(doc.problem(at, f"`{key}: {given}` does not exist (looked for {path}); paths are "
                                        "relative to the contract file"))
        values[key], displays[key] = path, display_path(doc, given)
    return SideFiles(**values, displays=displays)


def parse_identity(doc: LoadedDocument, raw: dict[str, Any] | None, problems: list[Problem]) -> IdentitySpec:
    """The typed `identity:` section (schema-valid already); missing files are problems naming the key."""
    if not raw:
        return IdentitySpec()
    shared = {k: raw[k] for k in FILE_KEYS if k in raw}
    sides = {role: _files(doc, raw.get(role) or {}, shared, ("identity", role), problems)
             for role in ("reference", "candidate")}
    return IdentitySpec(same=tuple(raw.get("same", ())), line=doc.locate(("identity",))[0], **sides)
