"""Reading one sink's options: every mistake is a ``UsageError`` (exit 2) naming where, the key and the fix.

Why one helper for every sink: the options come from a contract's ``watch.sinks`` list or a ``--sink`` flag,
and a typo must stop ``promote watch`` before any window runs, with the same wording whichever sink it is.
Secrets are never option values: an option names the environment variable that holds one (``token_env``,
``secret_env``), so a contract or a shell history never carries a token; the value is registered with the
redactor the moment it is read.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any

from promote.errors import UsageError
from promote.redact import register_secret

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Keys that would put a secret in a contract or on a command line, and the key to use instead.
SECRET_KEYS = {"token": "token_env", "secret": "secret_env", "password": "token_env", "bearer": "token_env"}


class Options:
    """One sink's options: ``take`` each known key once; unknown keys are refused up front."""

    def __init__(self, kind: str, options: Mapping[str, Any], where: str, keys: Mapping[str, str]) -> None:
        self.kind, self.where, self.keys = kind, where, keys
        if not isinstance(options, Mapping):
            raise UsageError(f"{where}: the options of a `{kind}` sink must be a mapping of key: value")
        self.values = dict(options)
        for key in self.values:
            if key in SECRET_KEYS:
                raise UsageError(f"{where}: `{key}` would put a secret in the contract or the command line; put it "
                                 f"in an environment variable and name that variable with `{SECRET_KEYS[key]}`")
            if key not in keys:
                known = ", ".join(f"`{k}`" for k in keys)
                raise UsageError(f"{where}: `{key}` is not an option of the `{kind}` sink; its options are {known}")

    def fail(self, key: str, problem: str) -> UsageError:
        return UsageError(f"{self.where}: `{key}` {problem}")

    def has(self, key: str) -> bool:
        return self.values.get(key) not in (None, "")

    def text(self, key: str, *, default: str | None = None, required: bool = True) -> str | None:
        """A non-empty one-line string (``default`` when absent; ``required`` without a default)."""
        value = self.values.get(key)
        if value is None or value == "":
            if default is None and required:
                raise self.fail(key, f"is required: {self.keys[key]}")
            return default
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string ({self.keys[key]}), not {type(value).__name__}")
        if any(ch in value for ch in "\r\n\0"):
            raise self.fail(key, "must be one line (no newline or NUL characters)")
        return value

    def number(self, key: str, *, default: float, low: float, high: float) -> float:
        value = self.values.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not low <= value <= high:
            raise self.fail(key, f"must be a number from {low:g} to {high:g} ({self.keys[key]}), not {value!r}")
        return float(value)

    def integer(self, key: str, *, default: int | None, low: int, high: int) -> int | None:
        value = self.values.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"must be a whole number from {low} to {high} ({self.keys[key]}), not {value!r}")
        return value

    def flag(self, key: str, *, default: bool) -> bool:
        value = self.values.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false ({self.keys[key]}), not {value!r}")
        return value

    def secret(self, key: str, *, required: bool = True) -> str | None:
        """The secret held by the environment variable that option ``key`` names (registered with the
        redactor); a missing or empty variable is a usage error naming the variable, never its value."""
        name = self.text(key, required=required)
        if name is None:
            return None
        if not _ENV_NAME.match(name):
            raise self.fail(key, f"must name an environment variable (letters, digits, _), not {name[:40]!r}; "
                                 "the secret itself goes in that variable")
        value = os.environ.get(name, "")
        if not value:
            raise self.fail(key, f"names ${name}, which is not set or empty: export {name} before running")
        register_secret(value)
        return value

    def existing_file(self, key: str) -> str | None:
        """An optional path that must name a file now (a CA bundle): a typo is found before the first window."""
        path = self.text(key, required=False)
        if path is not None and not os.path.isfile(path):
            raise self.fail(key, f"names {path!r}, which is not a file: give the path of {self.keys[key]}")
        return path

    def http_url(self, key: str, *, required: bool = True) -> str | None:
        url = self.text(key, required=required)
        if url is not None and not re.match(r"^https?://[^/\s]+", url, re.IGNORECASE):
            raise self.fail(key, f"must be an http:// or https:// URL, not {url[:80]!r}")
        return url


def one_line(text: object, limit: int = 300) -> str:
    """Untrusted text (an HAProxy answer, a server's body) made safe for one message line: control
    characters shown as ``?``, cut at ``limit`` characters."""
    flat = "".join(ch if ch.isprintable() else "?" for ch in str(text).strip())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
