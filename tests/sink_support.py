"""Shared pieces of the sink tests: decisions as ``promote watch`` makes them."""

from __future__ import annotations

from promote.sinks.api import Decision

WEIGHTS = {"route_back": 0, "restore": 50, "promote": 100, "hold": 50, "stop": 0}


def decision(action: str = "route_back", weight: int | None = None, window: int = 3) -> Decision:
    return Decision(action=action, candidate_weight=WEIGHTS[action] if weight is None else weight,  # type: ignore[arg-type]
                    window=window, verdict="fail" if action == "route_back" else "pass",
                    reason="3 bad windows of 3" if action == "route_back" else "5 clean windows and 300 s",
                    contract_sha256="ab" * 32, candidate_digest="sha256:" + "cd" * 32)
