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

    def log_call(self, decision: Decision, dry_run: bool) -> None:
        with self.path.with_suffix(".calls").open("a") as calls:
            calls.write(json.dumps({"window": decision.window, "action": decision.action, "dry_run": dry_run,
                                    "weight": decision.candidate_weight}) + "\n")

    def apply(self, decision: Decision, *, dry_run: bool = False) -> SinkResult:
        self.log_call(decision, dry_run)
        time.sleep(self.delay)  # a slow traffic system: a signal may land while a sink acts
        before = self.read_back()
        if decision.action not in ("route_back", "restore", "promote"):  # as the built-in routing sinks
            return SinkResult(sink=self.name, ok=True, dry_run=dry_run, changed=False, read_back=before,
                              message=f"{decision.action}: nothing to change")
        if dry_run:
            return SinkResult(sink=self.name, ok=True, dry_run=True, changed=False, read_back=before,
                              message=f"would set weight {decision.candidate_weight}")
        changed = before.get("weight") != decision.candidate_weight
        if changed:
            self.path.write_text(json.dumps({"weight": decision.candidate_weight}))
        after = self.read_back()
        return SinkResult(sink=self.name, ok=after.get("weight") == decision.candidate_weight, dry_run=False,
                          changed=changed, read_back=after)


class FlakySink(FileSink):
    """Its traffic system refuses the first ``failures`` weight-changing calls."""

    def __init__(self, options: Mapping[str, Any], where: str) -> None:
        super().__init__({k: v for k, v in options.items() if k != "failures"}, where)
        self.failures = int(options.get("failures", 1))

    def apply(self, decision: Decision, *, dry_run: bool = False) -> SinkResult:
        if decision.action in ("route_back", "restore", "promote") and self.failures > 0:
            self.failures -= 1
            self.log_call(decision, dry_run)
            return SinkResult(sink=self.name, ok=False, dry_run=dry_run, changed=False, read_back=self.read_back(),
                              message="the traffic system refused the change")
        return super().apply(decision, dry_run=dry_run)


class ExplodingSink:
    name = "exploding"

    def __init__(self, options: Mapping[str, Any], where: str) -> None:
        pass

    def read_back(self) -> dict[str, Any]:
        return {}

    def apply(self, decision: Decision, *, dry_run: bool = False) -> SinkResult:
        raise ConnectionError("the traffic system is down")
