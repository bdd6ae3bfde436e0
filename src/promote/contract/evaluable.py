"""Values a schema accepts but nothing can evaluate: found here, once, for every key.

Why a module of its own: JSON Schema's ``"type": "number"`` admits whatever the YAML reader makes a
float, and YAML spells NaN and infinity (``.nan``, ``.inf``; ``1e400`` overflows to infinity), so a
contract with ``max: .nan`` used to pass ``validate`` and then crash or silently compare against
nothing in ``check``. A string with a NUL character passes the schema too and then crashes every
file-system call. And the schema cannot relate two keys (``min`` above ``max``, a reversed
``reward_range``). Rather than guard each key where it is used, two walks catch these for all keys at
once, each problem placed at its line and column:

- ``unevaluable_values``: any document promote reads (it runs after every schema check in load.py);
  numbers must be finite and strings NUL-free, whatever the key.
- ``crossed_ranges``: the contract's ranges (every mapping holding both ``min`` and ``max``, and
  ``reward_range``), checked by the typed-model build (model.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from promote.contract.problems import JsonPath, LoadedDocument, Problem
from promote.contract.wording import key_name, shorten

__all__ = ["crossed_ranges", "unevaluable_values"]


def _walk(data: Any, path: JsonPath = ()) -> Iterator[tuple[JsonPath, Any]]:
    yield path, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _walk(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _walk(value, (*path, index))


def _shown(doc: LoadedDocument, path: JsonPath, value: Any) -> str:
    """The value for a message; a value from the environment is named by its reference instead."""
    raw = doc.interpolated.get(path)
    if raw is not None:
        return f"the value from `{shorten(raw)}`"
    if isinstance(value, float) and not math.isfinite(value):
        return "`.nan`" if math.isnan(value) else ("`.inf`" if value > 0 else "`-.inf`")
    return f"`{value!r}`" if isinstance(value, float) else f"`{value}`"


def _source(doc: LoadedDocument, path: JsonPath) -> str:
    """The file's text from the node at ``path`` to the end of its line."""
    line, col = doc.locate(path)
    lines = doc.text.splitlines()
    if line is None or col is None or line > len(lines):
        return ""
    return lines[line - 1][col - 1 :]


def unevaluable_values(doc: LoadedDocument) -> list[Problem]:
    """Every non-finite number and every string holding a NUL character, anywhere in ``doc``."""
    problems = []
    for path, value in _walk(doc.data):
        if isinstance(value, float) and not math.isfinite(value):
            written = _source(doc, path).lstrip("+-")
            spelled = written[:4].lower() in (".inf", ".nan") or path in doc.interpolated
            overflow = "" if spelled else " (a number beyond ±1.8e308 reads as infinity)"
            problems.append(doc.problem(path, f"{key_name(path)} must be a finite number, got "
                                        f"{_shown(doc, path, value)}{overflow}; NaN and infinity cannot be "
                                        "compared with anything: write a finite number, or leave the key out"))
        elif isinstance(value, str) and "\0" in value:
            what = _shown(doc, path, value) if path in doc.interpolated else "the text"
            problems.append(doc.problem(path, f"{key_name(path)}: {what} contains a NUL character (\\0), which no "
                                        "file name or text can hold; remove it"))
    return problems


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def crossed_ranges(doc: LoadedDocument) -> list[Problem]:
    """Ranges no value can satisfy: ``min`` above ``max`` in any mapping (a clause at any stage), and
    a ``reward_range`` [a, b] with a > b."""
    problems = []
    for path, value in _walk(doc.data):
        if isinstance(value, dict) and _is_number(value.get("min")) and _is_number(value.get("max")):
            low, high = value["min"], value["max"]
            if low > high:
                where = f" of clause `{value['id']}`" if isinstance(value.get("id"), str) else ""
                problems.append(doc.problem((*path, "min"), f"`min`{where} ({_shown(doc, (*path, 'min'), low)}) is "
                                            f"above `max` ({_shown(doc, (*path, 'max'), high)}): no value can pass; "
                                            "swap them or fix one"))
        if path and path[-1] == "reward_range" and isinstance(value, list) and len(value) == 2 \
                and all(_is_number(v) for v in value) and value[0] > value[1]:
            problems.append(doc.problem(path, f"`reward_range` must be [lowest, highest], got "
                                        f"[{_shown(doc, (*path, 0), value[0])}, {_shown(doc, (*path, 1), value[1])}]"
                                        "; swap the two values"))
    return problems
