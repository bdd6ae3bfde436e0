"""One time series as both sources return it: its labels and its samples, oldest first."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Series:
    labels: dict[str, str]
    samples: list[tuple[float, float]] = field(default_factory=list)  # (unix seconds, value)

    @property
    def name(self) -> str:
        return self.labels.get("__name__", "")

    @property
    def last(self) -> tuple[float, float]:
        return self.samples[-1]

    def label_text(self) -> str:
        """``{a="x", b="y"}`` without the metric name (empty when unlabelled): how messages name it."""
        body = ", ".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()) if k != "__name__")
        return "{" + body + "}" if body else ""

    def key(self, drop: tuple[str, ...] = ()) -> tuple[tuple[str, str], ...]:
        """The label set (minus ``__name__`` and ``drop``), for pairing candidate with baseline series."""
        return tuple(sorted((k, v) for k, v in self.labels.items() if k != "__name__" and k not in drop))
