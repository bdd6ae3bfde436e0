"""How a problem message names a key and quotes a user's value.

Why a module of its own: every message the loader writes, whether about YAML, ``${VARS}`` or the
schema, should name things the same way (the key, not the whole path), quote values briefly, and
describe a value by its kind; one set of helpers keeps that wording consistent.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from typing import Any

from promote.contract.problems import JsonPath

__all__ = [
    "SHOW_CHARS",
    "count_of",
    "describe",
    "did_you_mean",
    "first_sentence",
    "join_words",
    "key_name",
    "kind_of",
    "literal",
    "shorten",
]

#: How much of a user's value to quote back in a message.
SHOW_CHARS = 40


def key_name(path: JsonPath) -> str:
    """How a message names the thing at ``path``: its key (with any list indices), not the whole path."""
    if not path:
        return "the top level"
    index = len(path) - 1
    while index >= 0 and isinstance(path[index], int):
        index -= 1
    base = str(path[index]) if index >= 0 else "item"
    return f"`{base}{''.join(f'[{i}]' for i in path[index + 1 :])}`"


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`? " if close else ""


def literal(value: Any) -> str:
    return shorten(value) if isinstance(value, str) else json.dumps(value)


def shorten(text: str, limit: int = SHOW_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(value: Any) -> str:
    if value is None:
        return "an empty value (null)"
    if isinstance(value, bool):
        return f"boolean {json.dumps(value)}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {json.dumps(shorten(value), ensure_ascii=False)}"
    return kind_of(value)


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    for python_type, word in ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string")):
        if isinstance(value, python_type):
            return word
    return "a mapping" if isinstance(value, dict) else "a list" if isinstance(value, list) else "a value"


def join_words(words: Sequence[str], conjunction: str) -> str:
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


def count_of(amount: int, unit: str) -> str:
    return f"{amount} {unit}" if amount == 1 else f"{amount} {unit}s"


def first_sentence(text: str, limit: int = 120) -> str:
    sentence = re.split(r"(?<=\.)\s", text.strip(), maxsplit=1)[0]
    return shorten(sentence, limit)
