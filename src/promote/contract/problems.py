"""Problems and where they are: the Problem record, the error that carries them, and the loaded
document that maps a path in the data back to a line and column in the file.

Why a module of its own: the YAML reader (load.py), the ``${VAR}`` expander and the schema-error
wording (schema_messages.py) all produce problems placed at a node. Keeping the shared types here
lets each of them depend on this module alone, with no import cycle back through load.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn

from promote.console import message
from promote.errors import UsageError

__all__ = [
    "KEY",
    "ContractError",
    "JsonPath",
    "LoadedDocument",
    "Problem",
    "fail",
    "format_path",
    "tidy",
]

JsonPath = tuple[str | int, ...]

#: Path element under which a mapping key's own position is recorded: ``marks[("numerical", KEY)]``.
KEY = "<key>"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file, pointing at where to fix it.

    Kept as data rather than a string so callers can sort, filter by severity, or render problems in a
    report; ``str()`` gives the compiler-style line that editors and CI logs turn into links.
    """

    file: str
    line: int | None
    col: int | None
    path: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}" if self.col is None else f":{self.line}:{self.col}"
        text = f"{where}: {self.severity}: {self.message}"
        # "(at $)" says nothing the file name does not: file-level problems omit it.
        return text if self.path == "$" else f"{text} (at {self.path})"


def _order(problem: Problem) -> tuple[int, int, str, str]:
    return (problem.line or 0, problem.col or 0, problem.path, problem.message)


class ContractError(UsageError):
    """A file promote cannot use (exit 2). Carries every problem found, not only the first, so one
    edit fixes them all instead of one edit per run."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=_order)
        super().__init__("\n".join(str(problem) for problem in self.problems))

    def show(self, file: IO[Any] | None = None) -> None:
        """Print one problem per line, each starting with ``file:line:col``; the usual
        ``promote: error:`` prefix would stop editors and CI logs from linking to the spot."""
        message("\n".join(str(problem) for problem in self.problems), file=file)


def format_path(path: Sequence[str | int]) -> str:
    """``("numerical", "clauses", 0, "max")`` -> ``$.numerical.clauses[0].max``: the JSONPath form
    people know from jq and editors, with odd keys quoted so the path stays unambiguous."""
    parts = ["$"]
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif _IDENTIFIER.match(part):
            parts.append(f".{part}")
        else:
            parts.append(f"[{json.dumps(part, ensure_ascii=False)}]")
    return "".join(parts)


def fail(file: str, message: str, line: int | None = None, col: int | None = None) -> NoReturn:
    """Stop at a problem that leaves nothing further to check (no file, no YAML, no mapping)."""
    raise ContractError([Problem(file, line, col, "$", message)])


def tidy(problems: list[Problem]) -> list[Problem]:
    """Drop repeats and sort by position.

    Repeats are real: a value shared through a YAML alias fails at every place it is used but has one
    spot to fix, and a discriminator error can arrive from both a property's `enum` and the `oneOf`.
    A message that another at the same spot extends (``msg`` vs ``msg; hint``) is dropped too.
    """
    unique: dict[tuple[Any, ...], Problem] = {}
    for problem in problems:
        spot = (problem.line, problem.col) if problem.line is not None else (problem.path,)
        unique.setdefault((*spot, problem.severity, problem.message), problem)
    kept = [p for p in unique.values() if not any(_extends(other, p) for other in unique.values())]
    return sorted(kept, key=_order)


def _extends(longer: Problem, shorter: Problem) -> bool:
    same_spot = (longer.line, longer.col, longer.path) == (shorter.line, shorter.col, shorter.path)
    return same_spot and longer.message.startswith(shorter.message + ";")


@dataclass
class LoadedDocument:
    """A parsed file plus what is needed to point back into it: positions of every node, the raw
    hash (so a report can prove which contract it used), and which values came from the environment
    (so messages never quote them)."""

    path: Path
    display_path: str
    text: str
    sha256: str
    data: Any
    marks: dict[JsonPath, tuple[int, int]]
    #: path -> the raw text, e.g. ``"${KL_MAX:-0.001}"``, of values that went through ``${...}``.
    interpolated: dict[JsonPath, str] = field(default_factory=dict)
    #: Environment variables whose values ``${...}`` substituted: name -> value (for the report's
    #: reproduce line and the contract's identity; never quoted in messages).
    variables: dict[str, str] = field(default_factory=dict)

    def locate(self, path: Sequence[str | int], *, key: bool = False) -> tuple[int | None, int | None]:
        """Line and column (1-based) of the node at ``path``, or of its key with ``key=True``.

        Falls back to the nearest ancestor, because a problem about something absent (a missing key)
        still belongs somewhere the user can see.
        """
        path = tuple(path)
        if key and path + (KEY,) in self.marks:
            return self.marks[path + (KEY,)]
        while path not in self.marks:
            if not path:
                return (None, None)
            path = path[:-1]
        return self.marks[path]

    def problem(
        self, path: Sequence[str | int], message: str, *, key: bool = False, severity: str = "error"
    ) -> Problem:
        """A Problem placed at ``path``, so callers with semantic checks report the same way."""
        line, col = self.locate(path, key=key)
        return Problem(self.display_path, line, col, format_path(path), message, severity)
