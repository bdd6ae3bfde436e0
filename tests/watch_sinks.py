"""A small real sink for the watch tests: it keeps the candidate weight in a JSON file (its "traffic
system"), idempotently, reads it back, and logs every call. In-process tests plug ``FileSink`` in with
``SINKS.registered``; subprocesses import ``watch_sink_plugin`` through $PROMOTE_PLUGINS."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promote.errors import UsageError
from promote.sinks.api import Decision, SinkResult


class FileSink:
    def __init__(self, options: Mapping[str, Any], where: str) -> None:
        unknown = set(options) - {"path", "delay"}
        if "path" not in options or unknown:
            raise UsageError(f"{where}: the file sink needs `path` (and optionally `delay`); unknown: "
                             f"{sorted(unknown)}")
        self.path = Path(str(options["path"]))
        self.delay = float(options.get("delay", 0))
        self.name = "file"

    def read_back(self) -> dict[str, Any]:
        try:
            return {"weight": json.loads(self.path.read_text())["weight"]}
        except (OSError, ValueError, KeyError):
            return {"weight": None}

    def apply(self, decision: Decision, *, dry_run: bool = False) -> SinkResult:
        with self.path.with_suffix(".calls").open("a") as calls:
            calls.write(json.dumps({"window": decision.window, "action": decision.action, "dry_run": dry_run,
                                    "weight": decision.candidate_weight}) + "\n")
        time.sleep(self.delay)  # a slow traffic system: a signal may land while a sink acts
        before = self.read_back()
        if dry_run:
            return SinkResult(sink=self.name, ok=True, dry_run=True, changed=False, read_back=before,
                              message=f"would set weight {decision.candidate_weight}")
        changed = before.get("weight") != decision.candidate_weight
        if changed:
            self.path.write_text(json.dumps({"weight": decision.candidate_weight}))
        after = self.read_back()
        return SinkResult(sink=self.name, ok=after.get("weight") == decision.candidate_weight, dry_run=False,
                          changed=changed, read_back=after)


class ExplodingSink:
    name = "exploding"

    def __init__(self, options: Mapping[str, Any], where: str) -> None:
        pass

    def read_back(self) -> dict[str, Any]:
        return {}

    def apply(self, decision: Decision, *, dry_run: bool = False) -> SinkResult:
        raise ConnectionError("the traffic system is down")
