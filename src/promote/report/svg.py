"""The plot model: figures as lists of marks in SVG user units, computed here so templates only lay
them out (``templates/_svg.html.j2``) and escape their text.

Why hand-built SVG rather than matplotlib: the report must be one small, self-contained file that
follows the reader's light or dark theme and prints well. Marks drawn with CSS classes take their
colours from CSS variables (``currentColor`` for ink), so one SVG serves both themes and print;
a figure is a few kilobytes; and every mark is an element with class ``mark``, so a test (or a
browser) can count exactly what was drawn. matplotlib would bake colours into each file, add tens
of kilobytes of path data per figure, and pull a heavy dependency into every CI install.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from promote.results import format_value

WIDTH = 720


@dataclass
class Mark:
    """One drawn element. ``kind``: ``point`` (x1, y1, r), ``segment`` (x1, y1 → x2, y2), ``path``
    (``points``), ``rect`` (x1, y1, width x2, height y2). ``cls`` picks its colour in CSS; ``title``
    is the tooltip (and what a screen reader says)."""

    kind: str
    cls: str
    title: str
    x1: float = 0.0
    y1: float = 0.0
    x2: float = 0.0
    y2: float = 0.0
    r: float = 3.5
    points: str = ""


@dataclass
class Label:
    """Text on the figure that is not data: ticks, row names, axis titles."""

    x: float
    y: float
    text: str
    anchor: str = "middle"
    cls: str = "tick"
    full: str = ""  # the untruncated text, as a tooltip


@dataclass
class Figure:
    """One SVG figure with its caption (how to read it) and legend."""

    id: str
    title: str
    caption: str
    height: float
    marks: list[Mark] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    grid: list[Mark] = field(default_factory=list)  # axes and gridlines: drawn, not counted as data
    legend: list[tuple[str, str]] = field(default_factory=list)  # (css class, text)
    width: float = WIDTH
    note: str = ""

    @property
    def mark_count(self) -> int:
        return len(self.marks)


@dataclass
class Section:
    """A group of figures under one heading (slices, drift along the sequence, distribution…)."""

    id: str
    title: str
    figures: list[Figure]


class Linear:
    """value → pixel on [lo, hi] → [p0, p1] (p1 < p0 for a y axis)."""

    def __init__(self, lo: float, hi: float, p0: float, p1: float) -> None:
        if hi <= lo:
            lo, hi = (lo - 1, hi + 1) if lo == 0 else (lo - abs(lo) * 0.5, hi + abs(hi) * 0.5)
        self.lo, self.hi, self.p0, self.p1 = lo, hi, p0, p1

    def __call__(self, value: float) -> float:
        return round(self.p0 + (value - self.lo) / (self.hi - self.lo) * (self.p1 - self.p0), 2)

    def ticks(self, count: int = 5) -> list[float]:
        step = _nice_step((self.hi - self.lo) / count)
        first = math.ceil(self.lo / step) * step
        return [round(first + i * step, 12) for i in range(int((self.hi - first) / step) + 1)]


class Log:
    """Log10 scale for positive values; ticks at powers of ten."""

    def __init__(self, lo: float, hi: float, p0: float, p1: float) -> None:
        self.scale = Linear(math.floor(math.log10(lo)), math.ceil(math.log10(hi)), p0, p1)

    def __call__(self, value: float) -> float:
        return self.scale(math.log10(value))

    def ticks(self) -> list[float]:
        lo, hi = int(self.scale.lo), int(self.scale.hi)
        step = max(1, (hi - lo) // 6)
        return [10.0 ** e for e in range(lo, hi + 1, step)]


def _nice_step(raw: float) -> float:
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def padded(values: list[float], share: float = 0.06) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    pad = (hi - lo) * share or abs(hi) * share or 1.0
    return lo - pad, hi + pad


def tick(value: float) -> str:
    """Short axis numbers: ``0.0005``, ``1e-12``, ``2.5``."""
    text = f"{value:.3g}"
    mantissa, sep, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}" if sep else text


def shorten(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters (the full text stays in the tooltip)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def x_axis(fig: Figure, scale: Linear | Log, values: list[float], *, y: float, top: float, title: str) -> None:
    """Vertical gridlines with tick labels under ``y`` and an axis title."""
    for value in values:
        x = scale(value)
        fig.grid.append(Mark("segment", "grid", "", x, top, x, y))
        fig.labels.append(Label(x, y + 14, tick(value)))
    fig.labels.append(Label((scale(values[0]) + scale(values[-1])) / 2 if values else fig.width / 2, y + 30, title,
                            cls="axis"))


def y_axis(fig: Figure, scale: Linear | Log, values: list[float], *, x0: float, x1: float, title: str) -> None:
    for value in values:
        y = scale(value)
        fig.grid.append(Mark("segment", "grid", "", x0, y, x1, y))
        fig.labels.append(Label(x0 - 6, y + 4, tick(value), anchor="end"))
    fig.labels.append(Label(4, 11, title, anchor="start", cls="axis"))


FAILING = ("fail", "error")  # statuses drawn on a red band


def estimate_row(fig: Figure, x: Any, y: float, row: float, *, status: str, observed: float | None,
                 interval: Any, cls: str, where: str) -> None:
    """One row of an interval figure (slice forest plot, runtime ratios): a red band under a failing
    row, the interval as a segment when it is finite, and the estimate as a point."""
    if status in FAILING:
        fig.grid.insert(0, Mark("rect", "fail-band", "", 0, y - row / 2, 720, row))  # under the gridlines
    if interval and all(v is not None and math.isfinite(v) for v in interval):
        low, high = interval
        text = f"{where}, interval [{format_value(low)}, {format_value(high)}] ({status})"
        fig.marks.append(Mark("segment", f"ci {cls}", text, x(low), y, x(high), y))
    fig.marks.append(Mark("point", f"est {cls}", f"{where} ({status})", x(observed), y))
