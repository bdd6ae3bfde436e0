"""Bidirectional-text controls in report strings are shown, never obeyed.

A clause message, slice value or contract name holding U+202E (RIGHT-TO-LEFT OVERRIDE) reverses the
text after it: in the HTML page ``4 pass · 2 fail`` read ``liaf 2 · ssap 4``, and in a PR comment a
crafted id can make a failing line read as another. Every renderer therefore gets the report with
each bidi control (the embeddings, overrides, isolates and marks of Unicode's Bidi_Control class)
replaced by a visible ``[U+XXXX]``; the HTML page also isolates user strings (``unicode-bidi:
isolate``) so right-to-left text cannot reorder the neutral characters around it.
"""

from __future__ import annotations

import re
from typing import Any

from promote.redact import map_strings

BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def neutralise(text: str) -> str:
    return BIDI_CONTROLS.sub(lambda m: f"[U+{ord(m.group()):04X}]", text)


def neutralise_data(data: Any) -> Any:
    """``neutralise`` on every string (keys too) in dicts, lists, tuples and dataclasses; ``data`` itself
    when nothing changed (the common case costs one regex search per string)."""
    return map_strings(data, lambda text: neutralise(text) if BIDI_CONTROLS.search(text) else text)
