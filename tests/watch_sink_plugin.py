"""Registers the test ``file`` sink (watch_sinks.FileSink) when a `promote watch` subprocess imports it
through $PROMOTE_PLUGINS."""

from __future__ import annotations

from watch_sinks import FileSink

from promote.registry import plugin
from promote.sinks.api import SINKS

if "file" not in SINKS:
    SINKS.register("file", FileSink)
plugin(__name__)
