"""Validating what a sink is about to write against the published schema of its target, shipped in the repo.

Why: a merge patch that the API server (or flagd, re-reading its file) rejects would leave the canary where it
was while promote believes it routed traffic back; one that it accepts but that means something else is worse.
So every object a sink writes — the HTTPRoute or Rollout after the merge patch, the flagd file after the
rewrite — is checked first against the schema its own project publishes (``schemas/sinks/``, provenance in
``schemas/sinks/SOURCES.md``): the CRDs' ``openAPIV3Schema`` (an OpenAPI v3 structural schema, validated as
JSON Schema draft 7: the keywords a CRD may use mean the same there; ``x-kubernetes-*`` extensions and CEL
rules are not checked here, the API server checks them) and flagd's ``flagd.json`` (draft 7, with
``flags.json`` and ``targeting.json`` it refers to).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from jsonschema import Draft7Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

from promote.resources import data_dir

#: schema → (file, apiVersions accepted, kind) of a Kubernetes object; None for non-Kubernetes documents.
OBJECTS = {
    "httproute": ("httproute.v1.openapi.json", ("gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"),
                  "HTTPRoute"),
    "rollout": ("rollout.v1alpha1.openapi.json", ("argoproj.io/v1alpha1",), "Rollout"),
}
_FLAGD = ("flagd.flagd.json", "flagd.flags.json", "flagd.targeting.json")
MAX_PROBLEMS = 3


def _load(name: str) -> dict[str, Any]:
    return json.loads((data_dir("schemas") / "sinks" / name).read_text(encoding="utf-8"))


@cache
def validator(schema: str) -> Draft7Validator:
    """The validator of ``httproute``, ``rollout`` or ``flagd`` (loaded once)."""
    if schema == "flagd":
        documents = [_load(name) for name in _FLAGD]
        registry: Registry = Registry().with_resources(
            (doc["$id"], Resource.from_contents(doc)) for doc in documents)
        # draft 7 ignores the keywords beside a root ``$ref`` ($id included): start from a reference by URI
        return Draft7Validator({"$ref": documents[0]["$id"]}, registry=registry)
    return Draft7Validator(_load(OBJECTS[schema][0]))


def problems(schema: str, document: Any) -> list[str]:
    """Why ``document`` is not a valid ``schema`` object (at most a few lines; empty when it is)."""
    found: list[str] = []
    if schema in OBJECTS and isinstance(document, dict):
        _, versions, kind = OBJECTS[schema]
        if document.get("apiVersion") not in versions or document.get("kind") != kind:
            found.append(f"it is not a {kind} (apiVersion {document.get('apiVersion')!r}, kind "
                         f"{document.get('kind')!r}; expected {' or '.join(versions)} {kind})")
    try:
        errors = sorted(validator(schema).iter_errors(document), key=lambda e: (len(e.absolute_path), str(e.path)))
    except RecursionError:
        return [*found, "nested too deeply to validate"]
    for error in errors[: MAX_PROBLEMS - len(found)]:
        error = best_match([error])  # inside a oneOf/anyOf: the branch that came closest, not the whole value
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path) or "(top)"
        found.append(f"{where.lstrip('.')}: {error.message[:200]}")
    if len(errors) > MAX_PROBLEMS - len(found) >= 0 and errors:
        found.append(f"... {len(errors)} problems in all")
    return found
