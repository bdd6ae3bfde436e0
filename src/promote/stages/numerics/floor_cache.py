"""Reuse measured noise floors across runs of the same kernels on the same eval set.

The floor is the kernels against themselves: it does not depend on the other kernel or on the
contract's bounds, yet it costs one extra pass per perturbation. A floor is stored under a key made
of everything that can change it — each floored kernel's spec (with the size and mtime of every file
it references), its fingerprint (library versions, device, flags, threads), the eval set's ids and
tokens, the perturbations and the odd batch size — in memory for the process (so `promote
calibrate` measures it once for all its rows) and, when ``noise_floor.cache`` (or
$PROMOTE_FLOOR_CACHE) names a directory, on disk as the accumulators' versioned bytes (never pickle).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promote.atomic import write_text_atomic
from promote.contract.numerical import NoiseFloorSpec
from promote.data import EvalSet
from promote.stages.numerics.noise_floor import NoiseFloor

_MEMORY: dict[str, dict[str, bytes]] = {}


def _files(value: Any, out: list) -> None:
    if isinstance(value, Path):
        try:
            st = value.stat()
            out.append([str(value), st.st_size, st.st_mtime_ns])
        except OSError:
            out.append([str(value), None, None])
    elif isinstance(value, dict):
        for v in value.values():
            _files(v, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _files(v, out)


def _spec_facts(spec: Any) -> dict[str, Any]:
    raw = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)} if dataclasses.is_dataclass(spec) else {}
    files: list = []
    _files(raw, files)
    return {"spec": json.loads(json.dumps(raw, default=str, sort_keys=True)), "files": files}


def floor_key(spec: NoiseFloorSpec, kernels: Mapping[str, Any], fingerprints: Mapping[str, Any],
              evalset: EvalSet) -> str:
    """sha256 of everything a floor depends on (module docstring): ``kernels`` are the roles' kernel
    specs, ``fingerprints`` their fingerprints (from the open kernels, or a shard's partial)."""
    data = hashlib.sha256()
    for sample in evalset.samples:
        data.update(f"{sample.id}\0{','.join(map(str, sample.input_ids))}\n".encode())
    facts = {"perturb": list(spec.perturb), "odd_batch_size": spec.odd_batch_size,
             "data": data.hexdigest(),
             "kernels": {role: {**_spec_facts(kernels[role]), "fingerprint": fingerprints[role],
                                "batch_size": kernels[role].batch_size}
                         for role in spec.kernels}}
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()


def load(floor: NoiseFloor, key: str) -> bool:
    """Fill ``floor`` from memory or the cache directory; True on a hit."""
    blobs = _MEMORY.get(key)
    if blobs is None and floor.spec.cache is not None:
        path = floor.spec.cache / f"{key}.json"
        if path.is_file():
            try:
                blobs = {k: base64.b64decode(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
            except (ValueError, OSError):
                blobs = None  # a damaged entry is measured again, never trusted
    if blobs is None or set(blobs) != set(floor.accumulators):
        return False
    for name, acc in floor.accumulators.items():
        acc.load_bytes(blobs[name])
    floor.cached = True
    return True


def store(floor: NoiseFloor, key: str) -> None:
    """Keep a freshly measured floor in memory and (if configured) on disk."""
    blobs = {name: acc.to_bytes() for name, acc in floor.accumulators.items()}
    _MEMORY[key] = blobs
    if floor.spec.cache is not None:
        floor.spec.cache.mkdir(parents=True, exist_ok=True)
        text = json.dumps({k: base64.b64encode(v).decode("ascii") for k, v in blobs.items()})
        write_text_atomic(floor.spec.cache / f"{key}.json", text)
