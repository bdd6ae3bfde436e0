"""Durations (`5m`, `1h30m`) and metric selectors (`name{label="v", other!~"re"}`) of stage 4.

A leaf of the contract layer because both the contract (to place a typo at its line) and the
observability sources (to query Prometheus, or to filter a snapshot file the same way) need them:
one parser means a selector means the same on a live Prometheus and on a snapshot file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_DURATION = re.compile(r"^(?:[0-9]+(?:ms|s|m|h|d|w|y))+$")
_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d|w|y))+$"


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration (``90s``, ``1h30m``); ValueError names the accepted form."""
    if not isinstance(text, str) or not _DURATION.match(text):
        raise ValueError(f"`{text}` is not a duration; write e.g. `30s`, `5m`, `1h30m` (units ms s m h d w y)")
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration for whole seconds (``3600`` → ``1h``); ms below a second."""
    if seconds < 1 or seconds != int(seconds):
        return f"{max(1, round(seconds * 1000))}ms"
    rest, out = int(seconds), ""
    for unit in ("d", "h", "m", "s"):
        size = int(_UNIT_SECONDS[unit])
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out or "0s"


def parse_time(text: str) -> float:
    """Unix seconds from ``1700000000``/``1700000000.5`` or RFC 3339 (``2026-01-02T03:04:05Z``), as
    Prometheus's ``time`` parameter accepts them."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"`{text}` is not a time; write unix seconds or RFC 3339, e.g. "
                         "`2026-01-02T03:04:05Z`") from None
    if moment.tzinfo is None:
        raise ValueError(f"`{text}` has no time zone; end it with `Z` or an offset such as `+00:00`")
    return moment.timestamp()


_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*\"((?:[^\"\\]|\\.)*)\"\s*")


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str  # = != =~ !~
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        """Prometheus semantics: an absent label is the empty string; regexes are fully anchored."""
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = re.fullmatch(self.value, actual) is not None
        return hit if self.op == "=~" else not hit

    def promql(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.label}{self.op}"{escaped}"'


@dataclass(frozen=True)
class Selector:
    """A metric name with label matchers: the part of PromQL a snapshot file can answer too."""

    name: str
    matchers: tuple[Matcher, ...] = ()

    def promql(self, suffix: str = "", extra: tuple[Matcher, ...] = ()) -> str:
        """``name_suffix{matchers}`` (``suffix`` picks ``_bucket``/``_sum``/``_count`` of a histogram)."""
        inner = ",".join(m.promql() for m in (*self.matchers, *extra))
        return f"{self.name}{suffix}{{{inner}}}" if inner else f"{self.name}{suffix}"

    def matches(self, name: str, labels: dict[str, str], suffix: str = "") -> bool:
        return name == self.name + suffix and all(m.matches(labels) for m in self.matchers)


def parse_selector(text: str) -> Selector:
    """``name{a="x", b!~"y.*"}`` → Selector; ValueError says what is wrong and how it must look."""
    text = text.strip() if isinstance(text, str) else ""
    head = _NAME.match(text)
    if not head:
        raise ValueError(f"`{text}` is not a metric selector; write `name` or `name{{label=\"value\"}}`")
    rest = text[head.end():].strip()
    matchers: list[Matcher] = []
    if rest:
        if not (rest.startswith("{") and rest.endswith("}")):
            raise ValueError(f"`{text}`: after the metric name only `{{label=\"value\", ...}}` may follow (for "
                             "functions or ranges use `query:` with a Prometheus source)")
        body, pos = rest[1:-1], 0
        while body[pos:].strip():
            found = _LABEL.match(body, pos)
            if not found:
                raise ValueError(f"`{text}`: cannot read a label matcher at `{body[pos:].strip()}`; write "
                                 "label=\"value\" (operators = != =~ !~), separated by commas")
            label, op, value = found.groups()
            value = value.replace('\\"', '"').replace("\\\\", "\\")
            if op in ("=~", "!~"):
                try:
                    re.compile(value)
                except re.error as exc:
                    raise ValueError(f"`{text}`: the regex of `{label}` does not compile: {exc}") from None
            matchers.append(Matcher(label, op, value))
            pos = found.end()
            if body[pos:pos + 1] == ",":
                pos += 1
            elif body[pos:].strip():
                raise ValueError(f"`{text}`: expected `,` between label matchers at `{body[pos:].strip()}`")
    return Selector(head.group(0), tuple(matchers))
