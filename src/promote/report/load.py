"""Reading a JSON report back (``promote render``, ``promote comment --report``): it may be an
untrusted artifact, so it is validated against the report schema before any field is used."""

from __future__ import annotations

import json
from pathlib import Path

from promote.errors import PromoteError
from promote.report.model import Report


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PromoteError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def load_report(path: Path) -> Report:
    """A schema-valid JSON report as a Report; a PromoteError (exit 2) naming the first problem's path."""
    import jsonschema

    from promote.resources import load_schema

    try:
        data = json.loads(read_text(path))
    except ValueError as exc:
        raise PromoteError(f"{path} is not JSON: {exc}") from None
    errors = sorted(jsonschema.Draft202012Validator(load_schema("report")).iter_errors(data), key=lambda e: e.path)
    if errors:
        where = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in errors[0].absolute_path)
        raise PromoteError(f"{path} is not a promote report: {where}: {errors[0].message}")
    return Report.from_dict(data)
