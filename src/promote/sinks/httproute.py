"""The ``httproute`` sink: the weights of a Gateway API ``HTTPRoute``'s ``spec.rules[].backendRefs[]``.

Gateway API splits a rule's traffic between its backendRefs in proportion to their ``weight`` (default 1;
0 sends nothing). The candidate's share ``w`` becomes weight ``w`` on the backendRef named ``candidate`` and,
when ``reference`` is named, ``100 - w`` on that one, in every rule that routes to the candidate (or the one
rule ``rule`` names). A JSON merge patch replaces arrays whole, so the patch carries the complete
``spec.rules`` with only those weights changed, plus the ``metadata.resourceVersion`` it was computed from
(a concurrent edit is a 409, never overwritten). The patched object is validated against the HTTPRoute CRD's
schema (Gateway API v1.6.1, standard channel) before it is written or sent.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from promote.sinks.base import BaseSink, TargetError
from promote.sinks.kube import TARGET_KEYS, ApiObject, FileObject, build_target
from promote.sinks.options import Options

KEYS = {
    **TARGET_KEYS,
    "candidate": "the `name` of the candidate's backendRef",
    "reference": "the `name` of the reference's backendRef (optional): it gets 100 minus the candidate's weight",
    "rule": "the index of the one rule in spec.rules to change (optional; default: every rule routing to the "
            "candidate)",
}
DEFAULT_WEIGHT = 1  # Gateway API: a backendRef without a weight has weight 1


def build(options: Mapping[str, Any], where: str) -> HttpRouteSink:
    """The ``SinkFactory`` of ``httproute``."""
    opts = Options("httproute", options, where, KEYS)
    candidate = str(opts.text("candidate"))
    reference = opts.text("reference", required=False)
    if reference == candidate:
        raise opts.fail("reference", "must name another backendRef than `candidate`")
    rule = opts.integer("rule", default=None, low=0, high=63)
    return HttpRouteSink(build_target(opts, "httproute"), candidate, reference, rule)


class HttpRouteSink(BaseSink):
    name = "httproute"

    def __init__(self, target: FileObject | ApiObject, candidate: str, reference: str | None, rule: int | None) -> None:
        self.target, self.rule = target, rule
        self.names = [candidate] + ([reference] if reference else [])
        self._object: dict[str, Any] | None = None

    def _rules(self, obj: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
        """(index, rule) of the rules this sink changes; TargetError when there is none."""
        rules = (obj.get("spec") or {}).get("rules")
        if not isinstance(rules, list):
            raise TargetError(f"{self.target.describe()} has no spec.rules list")
        chosen = [(i, r) for i, r in enumerate(rules) if isinstance(r, dict) and (self.rule is None or i == self.rule)
                  and any(isinstance(b, dict) and b.get("name") == self.names[0] for b in r.get("backendRefs") or [])]
        if not chosen:
            where = f"spec.rules[{self.rule}]" if self.rule is not None else "any of spec.rules"
            raise TargetError(f"{self.target.describe()}: no backendRef named {self.names[0]!r} in {where}")
        return chosen

    def state(self) -> dict[str, Any]:
        obj = self.target.get()
        self._object = obj
        weights = {}
        for index, rule in self._rules(obj):
            refs = [b for b in rule.get("backendRefs") or [] if isinstance(b, dict)]
            if len(self.names) > 1 and not any(b.get("name") == self.names[1] for b in refs):
                raise TargetError(f"{self.target.describe()}: spec.rules[{index}] routes to {self.names[0]!r} but has "
                                  f"no backendRef named {self.names[1]!r} (the `reference`)")
            weights[str(index)] = {name: next((b.get("weight", DEFAULT_WEIGHT) for b in refs if b.get("name") == name),
                                              None) for name in self.names}
        return {"target": self.target.describe(), "resourceVersion": (obj.get("metadata") or {}).get("resourceVersion"),
                "weights": weights}

    def targets(self, want: int) -> dict[str, int]:
        return dict(zip(self.names, (want, 100 - want), strict=False))  # no reference: the candidate only

    def satisfied(self, state: dict[str, Any], want: int) -> bool:
        return bool(state.get("weights")) and all(w == self.targets(want) for w in state["weights"].values())

    def describe(self, state: dict[str, Any], want: int) -> str:
        rules = ", ".join(f"spec.rules[{i}]" for i in state.get("weights", {}))
        return (f"patch {self.target.describe()} {rules}: "
                + ", ".join(f"backendRef {name} weight -> {w}" for name, w in self.targets(want).items()))

    def enact(self, state: dict[str, Any], want: int, decision: object) -> None:
        obj = self._object if self._object is not None else self.target.get()
        rules = copy.deepcopy(obj["spec"]["rules"])
        wanted = self.targets(want)
        for index, _ in self._rules(obj):
            for ref in rules[index].get("backendRefs") or []:
                if isinstance(ref, dict) and ref.get("name") in wanted:
                    ref["weight"] = wanted[ref["name"]]
        patch: dict[str, Any] = {"spec": {"rules": rules}}
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version is not None:
            patch["metadata"] = {"resourceVersion": version}
        self.target.patch(patch, current=obj)
