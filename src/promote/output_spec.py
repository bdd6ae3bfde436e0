"""``FMT=PATH``, the value of every `--output` flag (`check`, `merge`, `calibrate`): one parser, so the
flag reads and fails the same way on each command; each command names the formats it can write."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click


class OutputSpec(click.ParamType):
    """``FMT=PATH`` for ``--output``; FMT is one of ``formats``."""

    name = "FMT=PATH"

    def __init__(self, formats: Sequence[str], example: str = "json=report.json") -> None:
        self.formats = tuple(formats)
        self.example = example

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        fmt, sep, path = str(value).partition("=")
        if not sep or not path:
            self.fail(f"{value!r} is not FMT=PATH (e.g. {self.example})", param, ctx)
        if fmt not in self.formats:
            self.fail(f"unknown format {fmt!r} in {value!r}; choose from {', '.join(self.formats)}", param, ctx)
        return fmt, Path(path)
