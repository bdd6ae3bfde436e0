"""Masking secrets in everything promote prints or writes: one redactor, applied where text leaves.

Why a module of its own (and a leaf, importing nothing of promote): a secret can reach output by
many roads — a GitHub error body that echoes the ``Authorization`` header, a ``${DATA_TOKEN}`` in a
path quoted by a "file not found" error, a model factory's exception text — and a per-message fix
would miss the next road. Instead the few places where text leaves the process (the CLI's message
printer, the report renderers, the GitHub outputs, summary and comment) pass it through here.

Two masks, because a report and an error message need different things:

* :func:`redact` — for everything (reports, comments, summaries, outputs, messages). Replaces with
  ``***`` the value of every environment variable whose name looks secret (:func:`is_secret_name`:
  it contains TOKEN, KEY, SECRET, PASSWORD, PASSWD, PASSPHRASE or CREDENTIAL, or the word PAT) and
  every value registered with :func:`register_secret` (the GitHub token the client was given). Values shorter than
  :data:`MIN_SECRET_CHARS` are left alone: masking a 2-character value would blank every occurrence
  of those characters and make the output unreadable without protecting anything.
* :func:`redact_message` — for messages (errors, warnings, ``validate`` problems). First replaces
  every value that ``${NAME}`` interpolation substituted from a *secret-named* variable with its
  reference ``${NAME}`` (so a message says which variable it was), then applies :func:`redact`. A
  non-secret variable's value is shown as it is: ``cannot connect to http://127.0.0.1:8000/v1``
  helps, ``cannot connect to ${PROMOTE_VLLM_URL}`` does not. The credentials a URL may carry are
  masked in every URL instead (both masks): the ``user:password@`` part and the values of query
  parameters named like credentials (``?api_key=***``, ``token``, ``X-Amz-Signature``).

The registry is process-wide state: promote is a CLI, one contract per process; :func:`reset` is
for tests.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["MASK", "MIN_SECRET_CHARS", "SECRET_WORDS", "is_secret_name", "map_strings", "redact", "redact_data",
           "redact_message", "register_interpolated", "register_secret", "reset", "strip_url_credentials"]

MASK = "***"
#: Shortest secret-like value that is masked (env vars named like secrets, registered tokens).
MIN_SECRET_CHARS = 6

# The one rule (docs/cli.md "Secrets"): a name *containing* one of these words, in any case
# (`API_KEYS`, `SECRETS`, `MYTOKEN`, `HfToken`), or the word PAT on its own (`GH_PAT`; not `PATH`).
# Wide on purpose: masking a harmless `KEYBOARD` costs a `***`; missing `TOKEN2` leaks a token.
SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL")
_SECRET_NAME = re.compile(r"(?:" + "|".join(SECRET_WORDS) + r")|(?:^|_)PAT(?:$|_)", re.IGNORECASE)

_secrets: set[str] = set()
_interpolated: dict[str, str] = {}  # value -> "${NAME}"


def is_secret_name(name: str) -> bool:
    """True for environment variable names that may hold secrets: containing one of
    :data:`SECRET_WORDS` in any case (``GITHUB_TOKEN``, ``OPENAI_API_KEY``, ``API_KEYS``, ``HfToken``),
    or ``PAT`` as a word (``GH_PAT``)."""
    return bool(_SECRET_NAME.search(name))


def register_secret(value: str | None) -> None:
    """Mask ``value`` everywhere from now on (e.g. a token handed to the GitHub client in code)."""
    if value and len(value) >= MIN_SECRET_CHARS:
        _secrets.add(value)


def register_interpolated(substituted: Mapping[str, str]) -> None:
    """Record values that ``${NAME}`` interpolation took from the environment (name → value).

    A secret-like name makes its value a secret (``***`` in reports, ``${NAME}`` in messages), and
    the parts of a ``file:factory`` value too, since a "not found" message may quote only the file.
    Other values are not hidden: a message that names the URL or file it could not reach is the
    useful one (credentials inside a URL are masked by :func:`redact` whatever their source).
    """
    for name, value in substituted.items():
        if not is_secret_name(name):
            continue
        for piece in {value, *value.split(":")}:
            if len(piece) >= MIN_SECRET_CHARS:
                _interpolated.setdefault(piece, f"${{{name}}}")
                register_secret(piece)


def reset() -> None:
    """Forget registered values (tests run many contracts in one process)."""
    _secrets.clear()
    _interpolated.clear()


def _secret_values(env: Mapping[str, str] | None) -> list[str]:
    env = os.environ if env is None else env
    found = set(_secrets)
    found.update(v for k, v in env.items() if is_secret_name(k) and len(v) >= MIN_SECRET_CHARS)
    return sorted(found, key=len, reverse=True)  # longest first: a secret containing another is masked whole


def _replace(text: str, pairs: Iterable[tuple[str, str]]) -> str:
    for value, shown in pairs:
        if value in text:
            text = text.replace(value, shown)
    return text


# scheme://[userinfo@]host...[?query]: userinfo and query are what a URL may carry credentials in.
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?:(?P<userinfo>[^\s/@?#]*)@)?(?P<rest>[^\s?#]*)"
                  r"(?:\?(?P<query>[^\s#`'\")\]]*))?")


# Query parameters that carry credentials: secret-like names (as for variables) and signed-URL parts.
_SECRET_PARAM = re.compile(r"token|secret|passw|key|credential|signature|sig$|auth|session|code$", re.IGNORECASE)


def _mask_query(query: str) -> str:
    parts = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        parts.append(f"{name}={MASK}" if eq and value and _SECRET_PARAM.search(name) else part)
    return "&".join(parts)


def strip_url_credentials(text: str) -> str:
    """Every URL in ``text`` with its ``user:password@`` part masked, and the values of query
    parameters that carry credentials (``?api_key=``, ``token``, ``X-Amz-Signature``, …); other
    parameters (``?per_page=100``) stay readable."""
    def one(match: re.Match[str]) -> str:
        userinfo = f"{MASK}@" if match.group("userinfo") is not None else ""
        query = match.group("query")
        query = "" if query is None else "?" + _mask_query(query)
        return f"{match.group('scheme')}{userinfo}{match.group('rest')}{query}"

    return _URL.sub(one, text) if "://" in text else text


def redact(text: str, *, env: Mapping[str, str] | None = None) -> str:
    """``text`` with every secret value replaced by ``***`` (see the module docstring for which) and
    URL credentials and queries masked."""
    return strip_url_credentials(_replace(text, ((value, MASK) for value in _secret_values(env))))


def redact_message(text: str, *, env: Mapping[str, str] | None = None) -> str:
    """A message for the user: interpolated values shown as their ``${NAME}``, then :func:`redact`."""
    pairs = sorted(_interpolated.items(), key=lambda item: len(item[0]), reverse=True)
    return redact(_replace(text, pairs), env=env)


def redact_data(data: Any, *, env: Mapping[str, str] | None = None) -> Any:
    """:func:`redact` applied to every string (keys too) inside ``data``: dicts, lists, tuples and
    dataclasses (copied with the masked fields), anything else as is. Returns ``data`` itself when
    nothing changed.

    Why on data and not on the finished text: a JSON document stays valid whatever the secret's
    characters are, and a renderer that escapes (markdown turns ``_`` into ``\\_``) would otherwise
    hide the secret from a text search while still showing it to every reader.
    """
    secrets = _secret_values(env)
    return map_strings(data, lambda text: strip_url_credentials(_replace(text, ((s, MASK) for s in secrets))))


def map_strings(data: Any, change: Callable[[str], str]) -> Any:
    """``change`` applied to every string (keys too) inside ``data``: dicts, lists, tuples and
    dataclasses (copied with the changed fields), anything else as is. Returns ``data`` itself when
    nothing changed, so the common case copies nothing."""

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return change(value)
        if isinstance(value, dict):
            items = [(walk(k), walk(v)) for k, v in value.items()]
            same = all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items(), strict=True))
            return value if same else dict(items)
        if isinstance(value, (list, tuple)):
            walked = [walk(v) for v in value]
            return value if all(a is b for a, b in zip(walked, value, strict=True)) else type(value)(walked)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes = {f.name: new for f in dataclasses.fields(value) if f.init
                       for old in [getattr(value, f.name)] for new in [walk(old)] if new is not old}
            return dataclasses.replace(value, **changes) if changes else value
        return value

    return walk(data)
