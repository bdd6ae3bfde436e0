"""Mergeable state: each field declared with its merge rule, serialised to versioned bytes.

torchmetrics' lesson (STYLE.md §1): an accumulator declares every piece of state together with how
two copies combine, and ``reset``, ``merge`` and serialisation walk that declaration, so no
consumer writes its own merge code and shards computed in other processes (``promote merge``, Ray)
combine exactly. Rules:

- ``sum`` integer counts; ``min`` / ``max``; ``exact_sum`` an ``ExactSum`` (float sums kept as
  non-overlapping partials, so the merged total is the exactly rounded sum whatever the order);
- ``cat`` lists of arrays (concatenated; consumers that need an order sort on read);
- ``union`` sets; ``ordered_union`` lists of first-seen items; ``custom`` the class merges it.

Bytes are ``MAGIC`` + a JSON document ``{"kind", "version", "state"}``: floats as ``float.hex``
(bit-exact), arrays as dtype + shape + base64, sketches as their own serialised bytes. Never
pickle: a state file from an untrusted shard can only yield data, never run code.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

MAGIC = b"PROMOTE-STATE\n"


class StateError(ValueError):
    """Bytes that are not a state of the expected kind and version."""


class ExactSum:
    """A float sum kept exactly (Shewchuk's non-overlapping partials, as ``math.fsum`` uses).

    Adding values or merging another ExactSum never rounds, so any order of updates and merges gives
    the same partials' exact sum, and ``value`` rounds it once. Infinities and NaN are kept apart
    (IEEE addition of those is order-independent already).
    """

    __slots__ = ("partials", "special")

    def __init__(self, partials: Iterable[float] = (), special: float = 0.0) -> None:
        self.partials: list[float] = []
        self.special = special
        for x in partials:
            self.add(x)

    def add(self, x: float) -> None:
        x = float(x)
        if not math.isfinite(x):
            self.special += x
            return
        i = 0
        for y in self.partials:
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo:
                self.partials[i] = lo
                i += 1
            x = hi
        self.partials[i:] = [x]

    def merge(self, other: ExactSum) -> ExactSum:
        for x in other.partials:
            self.add(x)
        self.special += other.special
        return self

    @property
    def value(self) -> float:
        return math.fsum(self.partials) + self.special if self.special else math.fsum(self.partials)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExactSum) and self.value == other.value


@dataclass(frozen=True)
class Field:
    """One declared piece of state: its name, a factory for its empty value, and its merge rule."""

    name: str
    default: Callable[[], Any]
    merge: str


def _merge_value(rule: str, a: Any, b: Any) -> Any:
    if rule == "sum":
        return a + b
    if rule == "min":
        return min(a, b)
    if rule == "max":
        return max(a, b)
    if rule == "exact_sum":
        return a.merge(b)
    if rule == "cat":
        return [*a, *b]
    if rule == "union":
        return a | b
    if rule == "ordered_union":
        return [*a, *(x for x in b if x not in a)]
    raise ValueError(f"unknown merge rule {rule!r}")


class Mergeable:
    """Base of every pass consumer: declared ``STATE``, ``reset``, ``merge``, ``to_bytes``/``from_bytes``.

    Subclasses list their fields in ``STATE``, name themselves in ``KIND`` and bump ``VERSION`` when
    the layout changes; configuration (which metrics, limits) stays in ``__init__`` and must match
    between merged copies. Fields with rule ``custom`` are merged by ``_merge_custom``.
    """

    KIND: ClassVar[str] = "abstract"
    VERSION: ClassVar[int] = 1
    STATE: ClassVar[tuple[Field, ...]] = ()

    def reset(self) -> None:
        """Every declared field back to its empty value."""
        for f in self.STATE:
            setattr(self, f.name, f.default())

    def merge(self, other: Mergeable) -> Mergeable:
        """Fold ``other`` (same kind and configuration) into this state; returns self."""
        if type(other) is not type(self):
            raise StateError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        for f in self.STATE:
            if f.merge == "custom":
                continue
            setattr(self, f.name, _merge_value(f.merge, getattr(self, f.name), getattr(other, f.name)))
        self._merge_custom(other)
        return self

    def _merge_custom(self, other: Any) -> None:  # noqa: B027 - optional hook
        """Merge the fields declared ``custom``."""

    def state_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in self.STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for f in self.STATE:
            if f.name not in state:
                raise StateError(f"{self.KIND} state lacks field `{f.name}`")
            setattr(self, f.name, state[f.name])

    def to_bytes(self) -> bytes:
        doc = {"kind": self.KIND, "version": self.VERSION, "state": encode(self.state_dict())}
        # Not sort_keys: dict order is state (tensor outputs in first-seen order).
        return MAGIC + json.dumps(doc, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, *args: Any, **config: Any) -> Mergeable:
        """A new state of this kind built with ``config`` (which metrics, limits…) and loaded from ``data``."""
        return cls(*args, **config).load_bytes(data)

    def load_bytes(self, data: bytes) -> Mergeable:
        """Replace this object's state by the one serialised in ``data`` (configuration stays)."""
        if not data.startswith(MAGIC):
            raise StateError("not a promote state (bad magic)")
        try:
            doc = json.loads(data[len(MAGIC):].decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise StateError(f"corrupt promote state: {exc}") from None
        if doc.get("kind") != self.KIND:
            raise StateError(f"state is a `{doc.get('kind')}`, expected `{self.KIND}`")
        if doc.get("version") != self.VERSION:
            raise StateError(f"`{self.KIND}` state version {doc.get('version')} is not {self.VERSION} (written by "
                             "another promote version); recompute the shard")
        self.load_state_dict(decode(doc["state"]))
        return self


def encode(value: Any) -> Any:
    """A JSON-able, bit-exact form of state values (see the module docstring)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return {"f": float(value).hex()}
    if isinstance(value, ExactSum):
        return {"exact_sum": [x.hex() for x in value.partials], "special": float(value.special).hex()}
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        return {"nd": array.dtype.str, "shape": list(array.shape), "b64": base64.b64encode(array.tobytes()).decode()}
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, (set, frozenset)):
        return {"set": [encode(v) for v in sorted(value, key=repr)]}
    if isinstance(value, tuple):
        return {"tuple": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            return {"items": [[encode(k), encode(v)] for k, v in value.items()]}
        return {"dict": {k: encode(v) for k, v in value.items()}}
    if hasattr(value, "state_dict") and hasattr(value, "KIND"):
        return {"nested": value.KIND, "state": encode(value.state_dict())}
    raise TypeError(f"cannot serialise state value of type {type(value).__name__}")


def decode(value: Any) -> Any:
    """Inverse of ``encode`` (nested Mergeables come back as their state dicts)."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "f" in value:
        return float.fromhex(value["f"])
    if "exact_sum" in value:
        out = ExactSum()
        out.partials = [float.fromhex(x) for x in value["exact_sum"]]
        out.special = float.fromhex(value["special"])
        return out
    if "nd" in value:
        raw = base64.b64decode(value["b64"])
        return np.frombuffer(raw, dtype=np.dtype(value["nd"])).reshape(value["shape"]).copy()
    if "bytes" in value:
        return base64.b64decode(value["bytes"])
    if "set" in value:
        return {decode(v) for v in value["set"]}
    if "tuple" in value:
        return tuple(decode(v) for v in value["tuple"])
    if "items" in value:
        return {_hashable(decode(k)): decode(v) for k, v in value["items"]}
    if "dict" in value:
        return {k: decode(v) for k, v in value["dict"].items()}
    if "nested" in value:
        return decode(value["state"])
    raise StateError(f"unknown state encoding {sorted(value)}")


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value
