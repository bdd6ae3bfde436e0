"""The loop of `promote watch`: window after window, evaluate → decide → enact → record.

Kernels are opened once and kept open (a watch must not restart a server every minute); the state
resumes from the audit log's last record, so a restarted watch keeps its streaks, its route-back time
and the digests it promoted. Every decision is recorded *after* the sinks ran, with what each read back.
A signal (SIGTERM, Ctrl-C) ends the loop between two whole records (``audit.py`` blocks signals while
one is written); kernels it built are closed on the way out.

Exit code: 0 the candidate still takes traffic (canary or promoted), 1 it was routed back, 3 the loop
stopped on an ``invalid`` verdict (or a stopped log with the same candidate).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from promote import console
from promote.errors import EXIT_COULD_NOT_EVALUATE, EXIT_GATE_FAILED, EXIT_PASS
from promote.redact import redact_data
from promote.sinks.api import Decision, Sink
from promote.watch.audit import AuditLog
from promote.watch.rules import State, initial, step
from promote.watch.sinks import apply_all, for_sinks, unconfirmed_after
from promote.watch.spec import WatchSpec
from promote.watch.window import WindowResult, evaluate_window

Evaluate = Callable[[int, float], WindowResult]


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Watch:
    """One watch: the contract, its spec, the sinks, the log; ``evaluate`` is injectable (tests plant outcomes)."""

    contract: Any
    spec: WatchSpec
    sinks: list[Sink]
    log: AuditLog
    digest: str
    dry_run: bool = False
    evaluate: Evaluate | None = None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    emit: Callable[[str], None] = field(default=lambda line: console.message(line, err=False))

    def resume(self) -> State:
        """The state of the log's last record (a restarted watch carries on), else the initial one."""
        latest = self.log.latest
        if latest is None:
            return initial(self.spec.rules, self.digest)
        names = [str(getattr(sink, "name", "")) for sink in self.sinks]
        self.unconfirmed = {i: r["action"] for i, r in enumerate(latest.get("sinks") or [])
                            if i < len(names) and isinstance(r, dict) and r.get("sink") == names[i]
                            and r.get("ok") is False and r.get("action") in ("route_back", "restore", "promote")}
        try:
            return State.from_json(latest.get("state"))
        except ValueError as exc:
            from promote.errors import UsageError

            raise UsageError(f"{self.log.path}: the last record's {exc}; start a new audit log with --log") from None

    def record(self, index: int, started: float, result: WindowResult, state: State, action: str,
               reason: str) -> tuple[Decision, dict[str, Any]]:
        verdict = "invalid" if result.outcome == "invalid" else result.verdict
        decision = Decision(action=action, candidate_weight=state.weight, window=index, verdict=verdict,  # type: ignore[arg-type]
                            reason=f"{result.reason}; {reason}", contract_sha256=self.contract.sha256,
                            candidate_digest=self.digest)
        sink_results = apply_all(self.sinks, for_sinks(decision, len(self.sinks), self.unconfirmed),
                                 dry_run=self.dry_run)
        self.unconfirmed = unconfirmed_after(self.unconfirmed, sink_results)
        ended = self.clock()
        record = {"time": _iso(ended), "contract_sha256": self.contract.sha256, "candidate_digest": self.digest,
                  "window": {"index": index, "started": _iso(started), "ended": _iso(ended),
                             "seconds": round(ended - started, 3), "length_s": self.spec.window_s},
                  "outcome": result.outcome, "evidence": result.evidence, "decision": decision.to_json(),
                  "state": state.to_json(), "sinks": sink_results, "dry_run": self.dry_run}
        return decision, self.log.append(redact_data(record))

    def run(self) -> int:
        state = self.resume()
        if state.phase == "stopped" and state.digest == self.digest:
            self.emit(f"promote watch: {self.log.path}: stopped on an `invalid` verdict for candidate {self.digest}; "
                      "a new candidate digest is needed to watch again")
            return EXIT_COULD_NOT_EVALUATE
        index = 0
        while self.spec.windows is None or index < self.spec.windows:
            index += 1
            started = self.clock()
            result = self.evaluate(index, started) if self.evaluate else self._evaluate(index, started)
            decided = step(self.spec.rules, state, result.outcome, self.digest, self.clock())
            state = decided.state
            decision, written = self.record(index, started, result, state, decided.action, decided.reason)
            sinks = ", ".join(f"{s['sink']}:{'ok' if s['ok'] else 'FAILED'}" for s in written["sinks"]) or "none"
            self.emit(f"window {index}: {result.outcome} ({result.verdict}) → {decision.action}, candidate weight "
                      f"{decision.candidate_weight}; sinks: {sinks}; record {written['seq']} {written['hash'][:16]}")
            if decision.action == "stop":
                return EXIT_COULD_NOT_EVALUATE
            if self.spec.windows is not None and index >= self.spec.windows:
                break
            self.sleep(max(0.0, started + self.spec.window_s - self.clock()))
        return EXIT_GATE_FAILED if state.weight == 0 else EXIT_PASS

    def _evaluate(self, index: int, now: float) -> WindowResult:
        kernels = self.kernels()
        if isinstance(kernels, WindowResult):
            return kernels
        return evaluate_window(self.contract, self.spec, index, kernels=kernels, base_evalset=self.base_evalset,
                               now=now)

    def kernels(self) -> dict[str, Any] | WindowResult | None:
        """Reference and candidate, opened on first use and kept open for the whole watch (None without
        kernels). One that cannot be opened (the canary is down) makes this window bad — missing data —
        and is tried again next window."""
        if self._kernels is not None or self.contract.reference is None or self.contract.candidate is None:
            return self._kernels
        from promote.errors import PromoteError

        attempt = contextlib.ExitStack()
        try:
            self._kernels = open_kernels(self.contract, attempt)
        except PromoteError as exc:
            attempt.close()
            message = exc.format_message()[:300]
            return WindowResult("bad", "error", f"the kernels could not be opened: {message} (missing data fails)",
                                {"error": message})
        self.stack.push(attempt.pop_all())
        return self._kernels

    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    unconfirmed: dict[int, str] = field(default_factory=dict)  # sink index → weight-changing action to retry
    base_evalset: Callable[[], Any] = field(default=lambda: None)
    _kernels: dict[str, Any] | None = None


def open_kernels(contract: Any, stack: contextlib.ExitStack) -> dict[str, Any]:
    """Reference and candidate built and opened, their closing pushed on ``stack``."""
    from promote.kernels import build_kernel

    kernels = {}
    for role in ("reference", "candidate"):
        kernel = build_kernel(getattr(contract, role), role=role)
        stack.enter_context(kernel)
        kernels[role] = kernel
    return kernels
