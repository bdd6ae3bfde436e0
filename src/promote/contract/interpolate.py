"""``${NAME}`` / ``${NAME:-default}`` substitution in the string values of a YAML file.

Why a module of its own: the rules are a small language apart from YAML (shell-style ``:-``,
``$${`` for a literal ``${``, and a whole-value reference re-read as the scalar it stands for), and
they work on one string at a time. The YAML reader (load.py) hands each string over and places the
messages that come back at the node, so the expander needs to know nothing about files or positions.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from promote.contract.wording import shorten
from promote.contract.yaml_numbers import ContractResolver
from promote.redact import is_secret_name

__all__ = ["Expansion", "Interpolator", "assignments"]

_TAG = "tag:yaml.org,2002:"
#: Tags a plain whole-value reference may resolve to; anything else stays a string.
_PLAIN_TAGS = frozenset(_TAG + t for t in ("int", "float", "bool", "null"))

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_WHOLE_REFERENCE = re.compile(r"\$\{[^}]*\}")
_REFERENCE_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


@dataclass
class Expansion:
    """What one string became: its value, whether any ``${...}`` was substituted (so the caller can
    record the value as coming from the environment and never quote it), and messages for mistakes."""

    value: Any
    substituted: bool
    problems: list[str] = field(default_factory=list)


class Interpolator:
    """Expands references against one environment; ``env`` is a mapping so tests can pass their own."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        #: Variables whose value from ``env`` was substituted, in first-use order: name -> value.
        #: A reference that fell back to its default is not listed (the environment did not decide it).
        #: Used for the report's reproduce line and to mask those values in messages (promote.redact).
        self.used: dict[str, str] = {}
        self._constructor = yaml.constructor.SafeConstructor()
        self._resolver = ContractResolver()  # the file's own rules: `${X:-1e-3}` is the number `1e-3` is

    def expand(self, text: str, *, plain: bool) -> Expansion:
        """Substitute ``${NAME}`` / ``${NAME:-default}``; ``$${`` is a literal ``${``.

        A plain (unquoted, ``plain=True``) scalar that is exactly one reference is re-read as a YAML
        scalar, so ``max: ${KL_MAX:-0.001}`` is the number it would be if written out; quoting keeps
        a string.
        """
        pieces: list[str] = []
        problems: list[str] = []
        end = 0
        references = 0
        for match in _REFERENCE.finditer(text):
            pieces.append(text[end : match.start()])
            end = match.end()
            if match.group(0) == "$${":
                pieces.append("${")
                continue
            references += 1
            pieces.append(self._substitute(match, problems))
        pieces.append(text[end:])
        value = "".join(pieces)
        if references == 0:
            return Expansion(value, False, problems)
        if plain and value and _WHOLE_REFERENCE.fullmatch(text):
            return Expansion(self._resolve_plain(value), True, problems)
        return Expansion(value, True, problems)

    def _substitute(self, match: re.Match[str], problems: list[str]) -> str:
        body = match.group(1)
        parsed = _REFERENCE_BODY.fullmatch(body) if body is not None else None
        if parsed is None or "${" in (parsed.group(2) or ""):
            shown = "`${`" if body is None else f"`${{{shorten(body)}}}`"
            message = f"{shown} is not a valid reference; write ${{NAME}} or ${{NAME:-default}}"
            message += ", or $${ for a literal ${"
            problems.append(message)
            return ""
        name, default = parsed.group(1), parsed.group(2)
        value = self.env.get(name)
        # Shell semantics: `:-` also replaces a variable that is set but empty.
        if value is not None and (value != "" or default is None):
            self.used.setdefault(name, value)
            return value
        if default is not None:
            return default
        message = f"environment variable `{name}` is not set and has no default; set it or write ${{{name}:-value}}"
        problems.append(message)
        return ""

    def _resolve_plain(self, value: str) -> Any:
        tag = self._resolver.resolve(yaml.ScalarNode, value, (True, False))
        if tag in _PLAIN_TAGS:
            return self._constructor.construct_object(yaml.ScalarNode(tag, value))
        return value


def assignments(used: Mapping[str, str]) -> str:
    """``NAME=value`` words to put before a command so it sees the same environment, shell-quoted,
    with secret-like values shown as ``***`` (empty when nothing was used)."""
    return " ".join(f"{name}={'***' if is_secret_name(name) else shlex.quote(value)}" for name, value in used.items())
