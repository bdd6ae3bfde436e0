"""Key paths of nested model outputs: how two kernels' outputs are paired by name.

A model may return a tensor, a dict, a list/tuple, a namedtuple, a dataclass or an HF
``ModelOutput``-like object, nested arbitrarily. ``flatten_outputs`` walks it into ``(key path,
leaf)`` pairs — ``logits``, ``hidden_states[3]``, ``out.a.b`` — so outputs are compared by name,
never by position in a flattened list (which silently pairs the wrong tensors when one side grows
an output). A leaf module (no numpy, no torch): kernels flatten, metrics compare.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

ROOT = "output"  # key path of a bare tensor output, and prefix of top-level sequence items

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")



def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path or ROOT}[{key}]"
    key = str(key)
    if _PLAIN_KEY.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def _children(node: Any) -> list[tuple[Any, Any]] | None:
    """The (key, child) pairs of a container, or None for a leaf."""
    if hasattr(node, "shape") and hasattr(node, "dtype"):  # torch.Tensor, np.ndarray, …
        return None
    if isinstance(node, (str, bytes, int, float, complex, bool)):
        return None
    if isinstance(node, Mapping):  # dict, OrderedDict, HF ModelOutput (an OrderedDict subclass)
        return list(node.items())
    if isinstance(node, tuple) and hasattr(node, "_fields"):  # namedtuple
        return list(zip(node._fields, node, strict=True))
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return [(f.name, getattr(node, f.name)) for f in dataclasses.fields(node)]
    if callable(getattr(node, "to_tuple", None)) and callable(getattr(node, "keys", None)):  # ModelOutput-like
        return [(k, getattr(node, k) if hasattr(node, k) else node[k]) for k in node.keys()]  # noqa: SIM118 - duck-typed
    if isinstance(node, (list, tuple)):
        return list(enumerate(node))
    return None


def flatten_outputs(output: Any, *, max_depth: int = 32) -> list[tuple[str, Any]]:
    """Walk a (nested) model output into ``(key path, leaf)`` pairs, in the output's own order.

    Key paths: a top-level dict key is used bare (``scores``), nested keys join with dots
    (``out.a.b``), sequence items are indexed (``hidden_states[3]``; a top-level tuple's items are
    ``output[0]``, ``output[1]``), keys that are not identifier-like are quoted (``["a.b"]``), and
    a bare tensor is ``output``. ``None`` leaves (absent optional outputs, as in HF) are skipped.

    Raises:
        ValueError: nesting deeper than ``max_depth`` (a cycle, most likely).
    """
    pairs: list[tuple[str, Any]] = []

    def walk(node: Any, path: str, depth: int) -> None:
        if node is None:
            return
        if depth > max_depth:
            raise ValueError(f"output nesting deeper than {max_depth} levels at `{path}` (a reference cycle?)")
        children = _children(node)
        if children is None:
            pairs.append((path or ROOT, node))
            return
        for key, child in children:
            walk(child, _join(path, key), depth + 1)

    walk(output, "", 0)
    return pairs
