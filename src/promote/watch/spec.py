"""The contract's `watch:` section and the flags of `promote watch` / `promote serve`, as one ``WatchSpec``.

The schema (``watch/schema.py``) has already checked the section's shape; this adds what it cannot say
(stage names against the registry, sink option parsing) with messages naming the contract line or the
flag, and applies the flags, which override the section.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promote.contract.kernel_specs import display_path, resolve_path
from promote.contract.problems import ContractError
from promote.contract.promql import parse_duration
from promote.errors import UsageError
from promote.watch.requestlog import RequestLogSpec
from promote.watch.rules import Rules
from promote.watch.schema import SINK_KIND_PATTERN, SINK_OPTION_PATTERN

DEFAULT_WINDOW_S = 60.0


@dataclass(frozen=True)
class SinkSpec:
    kind: str
    options: dict[str, Any]
    where: str  # for messages: "--sink haproxy" or "contract.yaml: watch.sinks[0]"


@dataclass(frozen=True)
class WatchSpec:
    window_s: float = DEFAULT_WINDOW_S
    windows: int | None = None
    stages: tuple[str, ...] = ()  # empty: every stage the contract has
    sample: int = 32
    seed: int = 0
    requests: RequestLogSpec | None = None
    rules: Rules = field(default_factory=Rules)
    candidate_digest: str | None = None
    log: Path = Path("promote-watch.jsonl")
    stale_after_s: float | None = None
    sinks: tuple[SinkSpec, ...] = ()

    @property
    def stale_s(self) -> float:
        return self.stale_after_s if self.stale_after_s is not None else 3 * self.window_s


_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$")


def flag_value(text: str) -> str | int | float | bool:
    """A ``--sink`` option value as the contract's YAML would type it, for the plain cases: ``true``/``false``
    a boolean, a decimal number a number (``timeout_s=5``), anything else the string as written."""
    if text in ("true", "false"):
        return text == "true"
    if _NUMBER.match(text):
        number = float(text)
        if number == number and abs(number) != float("inf"):
            return int(text) if text.lstrip("-").isdigit() else number
    return text


def parse_sink_flag(text: str) -> SinkSpec:
    """``KIND:key=value,key=value`` (``KIND`` alone when the sink needs no option); values typed by
    ``flag_value`` (a numeric-looking name must then go in the contract's ``watch.sinks``, quoted)."""
    where = f"--sink {text.partition(':')[0] or text}"
    kind, _, rest = text.partition(":")
    if not re.fullmatch(SINK_KIND_PATTERN, kind):
        raise UsageError(f"--sink {text!r}: write KIND:key=value,... (e.g. --sink haproxy:socket=/run/haproxy.sock,"
                         "backend=llm,server=canary)")
    options: dict[str, Any] = {}
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        if not eq or not re.fullmatch(SINK_OPTION_PATTERN, key):
            raise UsageError(f"{where}: option {part!r} is not key=value with a lower-case key (a-z, 0-9, _ and -)")
        if key in options or key == "kind":
            raise UsageError(f"{where}: option `{key}` given twice (or named `kind`)")
        options[key] = flag_value(value)
    return SinkSpec(kind=kind, options=options, where=where)


def default_digest(contract: Any) -> str:
    """sha256 of the candidate kernel's spec: changes when the contract points at another candidate."""
    spec = contract.candidate.summary() if contract.candidate is not None else {}
    return "spec-sha256:" + hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def _duration(doc: Any, key: tuple, raw: Any, problems: list) -> float | None:
    if raw is None:
        return None
    try:
        return parse_duration(raw)
    except ValueError as exc:
        problems.append(doc.problem(key, str(exc)))
        return None


def _requests(doc: Any, raw: dict[str, Any] | None, sample: int, seed: int, problems: list) -> RequestLogSpec | None:
    if not raw:
        return None
    return RequestLogSpec(path=resolve_path(doc, raw["path"]), display_path=display_path(doc, raw["path"]),
                          sample=sample, seed=seed, tail_bytes=raw.get("tail_bytes", 4 * 1024 * 1024),
                          max_age_s=_duration(doc, ("watch", "requests", "max_age"), raw.get("max_age"), problems),
                          max_prompt_tokens=raw.get("max_prompt_tokens", 4096))


def from_contract(contract: Any) -> WatchSpec:
    """The contract's `watch:` section (absent: every default); ContractError naming the line."""
    doc = contract.source
    raw = doc.data.get("watch") or {}
    problems: list = []
    sample, seed = raw.get("sample", 32), raw.get("seed", 0)
    window = _duration(doc, ("watch", "window"), raw.get("window"), problems)
    if window is not None and window <= 0:
        problems.append(doc.problem(("watch", "window"), "a window must last longer than 0"))
    from promote.sections import section_of, stage_names

    for i, name in enumerate(raw.get("stages", [])):
        if name not in stage_names():
            problems.append(doc.problem(("watch", "stages", i), f"unknown stage `{name}`; valid: "
                                        + ", ".join(stage_names())))
        elif section_of(name) not in contract.sections:
            problems.append(doc.problem(("watch", "stages", i), f"stage `{name}` has no `{section_of(name)}:` "
                                        "section in this contract: add it or drop the stage from `watch.stages`"))
    rules = Rules(trip_after=raw.get("trip_after", 1), restore_after=raw.get("restore_after", 3),
                  min_wait_s=_duration(doc, ("watch", "min_wait"), raw.get("min_wait", "5m"), problems) or 0.0,
                  promote_after=raw.get("promote_after"), canary_weight=raw.get("canary_weight", 10))
    sinks = tuple(SinkSpec(kind=s["kind"], options={k: v for k, v in s.items() if k != "kind"},
                           where=f"{doc.display_path}: watch.sinks[{i}]") for i, s in enumerate(raw.get("sinks", [])))
    log = resolve_path(doc, raw["log"]) if "log" in raw else contract.path.parent / f"{contract.path.name}.watch.jsonl"
    spec = WatchSpec(window_s=window or DEFAULT_WINDOW_S, windows=raw.get("windows"),
                     stages=tuple(raw.get("stages", ())),
                     sample=sample, seed=seed, requests=_requests(doc, raw.get("requests"), sample, seed, problems),
                     rules=rules, candidate_digest=raw.get("candidate_digest"), log=log,
                     stale_after_s=_duration(doc, ("watch", "stale_after"), raw.get("stale_after"), problems),
                     sinks=sinks)
    if problems:
        raise ContractError(problems)
    return spec


def window_flag(text: str | None, flag: str = "--window") -> float | None:
    """``--window 60s`` (a Prometheus duration) in seconds; UsageError naming the flag."""
    if text is None:
        return None
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None
    if seconds <= 0:
        raise UsageError(f"{flag}: a duration longer than 0 is needed")
    return seconds
