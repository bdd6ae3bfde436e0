"""The ``argo-abort`` sink: abort an Argo Rollouts ``Rollout`` (and retry it on restore).

Argo Rollouts aborts a canary when ``status.abort`` is true: the stable ReplicaSet takes all traffic back and
the Rollout goes Degraded. Its own CLI (``kubectl argo rollouts abort``) sends the JSON merge patch
``{"status":{"abort":true}}`` to the Rollout's ``status`` subresource, and to the object itself only when that
subresource is not found (an older CRD); ``retry`` sends ``{"status":{"abort":false}}`` the same way. This sink
does exactly that: ``route_back`` aborts; ``restore`` and ``promote`` clear the abort (a retry: the Rollout's
own steps then move the weight); ``hold`` and ``stop`` change nothing. The patched object is validated
against the Rollout CRD's schema (Argo Rollouts v1.9.1) before it is written or sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from promote.sinks.api import Decision
from promote.sinks.base import BaseSink
from promote.sinks.kube import TARGET_KEYS, ApiObject, FileObject, build_target
from promote.sinks.options import Options

KEYS = dict(TARGET_KEYS)


def build(options: Mapping[str, Any], where: str) -> ArgoAbortSink:
    """The ``SinkFactory`` of ``argo-abort``."""
    opts = Options("argo-abort", options, where, KEYS)
    return ArgoAbortSink(build_target(opts, "rollout"))


class ArgoAbortSink(BaseSink):
    name = "argo-abort"

    def __init__(self, target: FileObject | ApiObject) -> None:
        self.target = target
        self._object: dict[str, Any] | None = None

    def state(self) -> dict[str, Any]:
        obj = self.target.get()
        self._object = obj
        status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
        return {"target": self.target.describe(), "abort": status.get("abort") is True,
                "phase": status.get("phase") if isinstance(status.get("phase"), str) else None}

    def want(self, decision: Decision) -> bool | None:
        return {"route_back": True, "restore": False, "promote": False}.get(decision.action)

    def satisfied(self, state: dict[str, Any], want: bool) -> bool:
        return "abort" in state and state["abort"] is want

    def describe(self, state: dict[str, Any], want: bool) -> str:
        return f"{'abort' if want else 'retry (clear the abort of)'} the Rollout {self.target.describe()}"

    def enact(self, state: dict[str, Any], want: bool, decision: object) -> None:
        self.target.patch({"status": {"abort": want}}, subresource="status", current=self._object)
