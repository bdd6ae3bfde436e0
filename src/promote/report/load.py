"""Reading a JSON report back (``promote render``, ``promote comment --report``, ``check --merge``): it
may be an untrusted artifact, so it is read as a bounded regular file, parsed strictly (no
``NaN``/``Infinity``, no number beyond float or int64 range, no nesting deeper than ``MAX_DEPTH``),
validated against the report schema before any field is used, and its verdict is re-derived from its
clauses (``report/verify.py``) so a report cannot claim a pass its clauses do not give."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from promote.bounded import MIB, read_regular
from promote.errors import PromoteError
from promote.report.model import Report

MAX_BYTES = 64 * MIB  # a report of thousands of clauses is a few MB; a bigger file is not one of ours
MAX_DEPTH = 64  # the report schema nests ~10 deep; details objects a few more
_INT_LIMIT = 2**63


def read_bytes(path: Path, limit: int = MAX_BYTES) -> bytes:
    try:
        return read_regular(path, limit)
    except OSError as exc:
        raise PromoteError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_text(path: Path, limit: int = MAX_BYTES) -> str:
    try:
        return read_bytes(path, limit).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PromoteError(f"cannot read {path}: not UTF-8 text ({exc})") from None


def _constant(name: str) -> None:
    raise ValueError(f"`{name}` is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is beyond the float range")
    return value


def _int(text: str) -> int:
    if len(text) > 20 or not -_INT_LIMIT <= int(text) < _INT_LIMIT:
        raise ValueError(f"integer {text[:40]}{'…' if len(text) > 40 else ''} is beyond the int64 range")
    return int(text)


def _depth(data: Any) -> int:
    """The nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return deepest


def parse_json(text: str, where: str) -> Any:
    """Strict JSON: a PromoteError (exit 2) naming ``where`` for non-standard numbers or deep nesting."""
    try:
        data = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except (ValueError, RecursionError) as exc:
        raise PromoteError(f"{where} is not JSON promote reads: {str(exc)[:200] or type(exc).__name__}") from None
    if _depth(data) > MAX_DEPTH:
        raise PromoteError(f"{where} nests JSON more than {MAX_DEPTH} levels deep; not a promote report")
    return data


def validate_report(data: Any, where: str) -> None:
    import jsonschema

    from promote.resources import load_schema

    errors = sorted(jsonschema.Draft202012Validator(load_schema("report")).iter_errors(data), key=lambda e: e.path)
    if errors:
        path = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in errors[0].absolute_path)
        raise PromoteError(f"{where} is not a promote report: {path}: {errors[0].message[:300]}")
    check_stage_names(data, where)


def check_stage_names(data: dict[str, Any], where: str) -> None:
    """The schema allows any stage name of the right shape (``sections.STAGE_NAME_PATTERN``), so a
    plug-in's stage needs no schema of its own; a name no registered stage has is refused here,
    after loading ``$PROMOTE_PLUGINS``, with the fix."""
    from promote.contract.plugins import load_env_plugins
    from promote.sections import stage_names

    load_env_plugins()
    known = stage_names()
    stages = data.get("stages", [])
    named = [("$.stages", s.get("name")) for s in stages]
    named += [("$.stages[].clauses", c.get("stage")) for s in stages for c in s.get("clauses", [])]
    named += [("$.actions", a.get("stage")) for a in data.get("actions", [])]
    for path, name in named:
        if name is not None and name not in known:
            raise PromoteError(f"{where}: {path} names stage {name!r}, which is not registered (known: "
                               f"{', '.join(known)}); a plug-in stage needs its module named in $PROMOTE_PLUGINS")


def load_report(path: Path) -> Report:
    """A schema-valid, self-consistent JSON report as a Report; a PromoteError (exit 2) naming the
    first problem's path."""
    from promote.report.verify import check_verdict

    data = parse_json(read_text(path), str(path))
    validate_report(data, str(path))
    try:
        report = Report.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise PromoteError(f"{path} is not a promote report: {type(exc).__name__}: {str(exc)[:200]}") from None
    check_verdict(report, str(path))
    return report
