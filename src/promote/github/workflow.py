"""GitHub Actions runner interface: step outputs, the job summary, annotations, log commands.

Everything here receives plain strings and dicts. Untrusted text (clause messages, contract names,
slice values) is escaped per the workflow-command rules, so a message containing ``::error::`` or a
newline cannot forge a command; multi-line outputs use random heredoc delimiters so a value cannot
end its own block early. Every message, output and summary is masked first (promote.redact): the
token and secret-like values never reach the log or the runner's files.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

from promote.redact import redact, redact_message

SUMMARY_LIMIT = 1024 * 1024  # bytes per step; over it the runner drops the summary with an error
LEVELS = ("error", "warning", "notice")
PER_LEVEL = 10  # annotations the UI shows per level and step


def in_actions(env: Mapping[str, str] | None = None) -> bool:
    """True inside a GitHub Actions job."""
    return (os.environ if env is None else env).get("GITHUB_ACTIONS") == "true"


def escape_data(value: object) -> str:
    """A command's message: ``%``, CR and LF encoded, so it stays on one line."""
    return str(value).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: object) -> str:
    """A command property (file, title): like data, plus ``:`` and ``,`` which delimit properties."""
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: object = "", **properties: Any) -> str:
    """``::name k=v,k=v::message`` with every part escaped; properties that are None are left out."""
    props = ",".join(f"{k}={escape_property(redact_message(str(v)))}" for k, v in properties.items()
                     if v is not None)
    return f"::{name}{' ' + props if props else ''}::{escape_data(redact_message(str(message)))}"


def annotations(items: Iterable[Mapping[str, Any]], *, file: str | None = None) -> list[str]:
    """Annotation commands, worst level first, at most PER_LEVEL per level, then one notice with the count.

    ``items`` carry ``level``, ``title``, ``message`` and optionally ``line`` (of the clause in the
    contract ``file``, so the annotation lands on the contract in the PR diff). They must already be
    sorted worst first within a level.
    """
    by_level: dict[str, list[Mapping[str, Any]]] = {level: [] for level in LEVELS}
    for item in items:
        by_level[item["level"] if item["level"] in LEVELS else "notice"].append(item)
    lines, hidden = [], 0
    for level in LEVELS:
        for item in by_level[level][:PER_LEVEL]:
            line = item.get("line")
            lines.append(command(level, item["message"], file=file if line else None, line=line,
                                 title=item.get("title")))
        hidden += max(0, len(by_level[level]) - PER_LEVEL)
    if hidden:
        lines.append(command("notice", f"{hidden} more promote findings are not annotated; see the job summary",
                             title="promote: more findings"))
    return lines


def stop_commands() -> tuple[str, str]:
    """Wrap text printed to the log so the runner ignores any command inside it (defence in depth)."""
    token = secrets.token_hex(16)
    return f"::stop-commands::{token}\n", f"::{token}::\n"


def set_outputs(outputs: Mapping[str, object], path: str | os.PathLike[str] | None = None) -> None:
    """Append step outputs to ``$GITHUB_OUTPUT``, each as ``name<<DELIM`` with a random delimiter."""
    target = path or os.environ.get("GITHUB_OUTPUT")
    if not target:
        return
    with open(target, "a", encoding="utf-8") as fh:
        for name, value in outputs.items():
            text = redact(str(value))
            delimiter = f"promote_{secrets.token_hex(16)}"
            while delimiter in text:  # astronomically unlikely; never let a value close its block
                delimiter = f"promote_{secrets.token_hex(16)}"
            fh.write(f"{name}<<{delimiter}\n{text}\n{delimiter}\n")


def read_outputs(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse a GITHUB_OUTPUT file (``k=v`` and heredoc forms), as the runner does; used by tests and
    the action's self-check."""
    out: dict[str, str] = {}
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            out[name] = "\n".join(lines[i + 1:end])
            i = end + 1
            continue
        if "=" in line:
            name, value = line.split("=", 1)
            out[name] = value
        i += 1
    return out


def write_summary(markdown: str, path: str | os.PathLike[str] | None = None) -> bool:
    """Append to ``$GITHUB_STEP_SUMMARY`` if the result stays within the step's 1 MiB; False if not written.

    The caller renders ``markdown`` to fit :func:`summary_budget` (by dropping sections), so this
    never cuts it; a summary that would still overflow is refused whole rather than truncated.
    """
    target = path or os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return False
    markdown = redact(markdown)
    if len(markdown.encode("utf-8")) > summary_budget(target):
        return False
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(markdown if markdown.endswith("\n") else markdown + "\n")
    return True


def summary_budget(path: str | os.PathLike[str] | None = None) -> int:
    """Bytes still free in this step's summary (earlier contracts in the same step used some)."""
    target = path or os.environ.get("GITHUB_STEP_SUMMARY")
    try:
        used = Path(target).stat().st_size if target else 0
    except OSError:
        used = 0
    return max(0, SUMMARY_LIMIT - used - 1)


def emit(lines: Iterable[str], stream: TextIO) -> None:
    """Print workflow commands, one per line."""
    for line in lines:
        stream.write(line + "\n")
    stream.flush()
