"""How promote prints a message: secrets masked, and in GitHub Actions fenced against workflow commands.

Why a module of its own: a message can quote user text (a contract name, a YAML key, a sample id, a
kernel's exception) and in a GitHub Actions log any line that starts with ``::`` (or carries
``##[``) is a workflow command — a contract name ``x\\n::warning::forged`` would add an annotation,
``::add-mask::`` or ``::stop-commands::`` would change the log. Escaping each message where it is
written would miss the next one, so every message goes through :func:`message` (errors, ``validate``
problems, notices and info lines) and every report through :func:`guard`.

GitHub mode is on inside Actions (``GITHUB_ACTIONS=true``) or when ``check --github`` says so
(:func:`set_github`). In that mode a text that could carry a command is wrapped in
``::stop-commands::<random token>`` … ``::<token>::`` (the runner ignores every command between the
two); other text is printed as is, so ordinary output does not change.
"""

from __future__ import annotations

import os
import secrets
from typing import IO, Any

import click

from promote.redact import redact_message

__all__ = ["could_be_command", "fence", "github_mode", "guard", "message", "set_github"]

_forced: bool | None = None


def set_github(on: bool | None) -> None:
    """``check --github/--no-github``: override the environment for this process (None: follow it)."""
    global _forced
    _forced = on


def github_mode() -> bool:
    """True when output lands in a GitHub Actions log (the flag, else ``GITHUB_ACTIONS=true``)."""
    return _forced if _forced is not None else os.environ.get("GITHUB_ACTIONS") == "true"


def could_be_command(text: str) -> bool:
    """Whether the runner could read any line of ``text`` as a command: ``::name::`` at the start of
    a line (after spaces) or the legacy ``##[name]`` anywhere. Without ``::`` or ``##[`` it cannot."""
    return "::" in text or "##[" in text


def fence(text: str) -> str:
    """``text`` between ``::stop-commands::TOKEN`` and ``::TOKEN::``, with a random token that does
    not occur in the text (so the text cannot end the fence early)."""
    token = secrets.token_hex(16)
    while token in text:  # astronomically unlikely
        token = secrets.token_hex(16)
    body = text if text.endswith("\n") else text + "\n"
    return f"::stop-commands::{token}\n{body}::{token}::\n"


def guard(text: str, *, github: bool | None = None) -> str:
    """``text`` fenced when it goes to a GitHub Actions log and could carry a command; else unchanged."""
    on = github_mode() if github is None else github
    if not on or not could_be_command(text):
        return text
    fenced = fence(text)
    return fenced if text.endswith("\n") else fenced[:-1]  # keep the caller's newline convention


def message(text: str, *, err: bool = True, file: IO[Any] | None = None) -> None:
    """Print a message line (or lines): interpolated values and secrets masked, guarded for GitHub."""
    click.echo(guard(redact_message(text)), err=err, file=file)
