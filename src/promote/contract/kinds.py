"""Kernel kinds a contract may name (`kind:`): each one's spec parser, capabilities and, for a kind
plugged in from outside, its schema variant. One ``Registry`` (``registry.py``); the kernel factories
themselves are ``kernels.KERNEL_KINDS``.

Capabilities are what a feature needs from a kernel, never a kind's name (a second HTTP kind gets
every HTTP behaviour by declaring ``http``):

- ``rerun``: it can be run again on the same inputs (a noise floor re-runs it; recorded outputs cannot);
- ``modules``: it is an ``nn.Module`` promote can hook or alter (``localize``, model faults of ``inject``);
- ``http``: it serves requests over HTTP (a runtime level's concurrency is concurrent requests, not one
  local batch).

``identity`` names the identity checks (``identity/api.py`` ``IDENTITY_CHECKS``, docs/identity.md) that
apply to kernels of the kind; ``None`` (the default, and every built-in kind): every registered check.
A check runs on a pair when it applies to both sides' kinds; the report lists the others as not checked,
with why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from promote.registry import Registry

RERUN, MODULES, HTTP = "rerun", "modules", "http"


@dataclass(frozen=True)
class KernelKind:
    parse: Callable[..., Any] | None  # (doc, role, raw, problems) -> spec; None: the built-in parser
    capabilities: frozenset[str]
    schema: dict[str, Any] | None = None  # a plug-in's `oneOf` variant (built-ins: the generated schema)
    description: str = ""
    identity: frozenset[str] | None = None  # identity checks that apply (None: every registered one)


KINDS: Registry[KernelKind] = Registry("kernel kind")
KINDS.register("torch", KernelKind(None, frozenset({RERUN, MODULES}), description="an nn.Module run in-process"))
KINDS.register("onnx", KernelKind(None, frozenset({RERUN}), description="an ONNX graph through onnxruntime"))
KINDS.register("records", KernelKind(None, frozenset(), description="outputs recorded by another engine"))
KINDS.register("openai", KernelKind(None, frozenset({RERUN, HTTP}),
                                    description="a model behind a serving API over HTTP"))


def capabilities_of(kind: str) -> frozenset[str]:
    """What kernels of ``kind`` can do (none for a kind registered only as a factory)."""
    return KINDS.get(kind).capabilities if kind in KINDS else frozenset()


def identity_checks_of(kind: str) -> frozenset[str] | None:
    """The identity checks that apply to kernels of ``kind`` (None: every registered check)."""
    return KINDS.get(kind).identity if kind in KINDS else None
