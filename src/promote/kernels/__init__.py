"""Kernels: programs that turn a batch of the eval set into outputs (DESIGN.md §4).

Kernel kinds come from a registry: ``KERNEL_KINDS`` maps a contract's ``kind:`` to a factory
``(spec, role) -> Kernel``. The built-in factories import lazily, so torch or onnxruntime load only
when a contract uses them; ``register_kind`` plugs in more (an ``openai`` HTTP kernel, fault-injecting
wrappers around another kernel) without touching this module's callers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from promote.kernels.base import Kernel

KernelFactory = Callable[[Any, str], Kernel]
KERNEL_KINDS: dict[str, KernelFactory] = {}


def register_kind(kind: str) -> Callable[[KernelFactory], KernelFactory]:
    """Decorator: register ``factory(spec, role)`` as the builder of kernels of ``kind``."""

    def add(factory: KernelFactory) -> KernelFactory:
        if kind in KERNEL_KINDS:
            raise ValueError(f"kernel kind {kind!r} is already registered")
        KERNEL_KINDS[kind] = factory
        return factory

    return add


@register_kind("torch")
def _torch(spec: Any, role: str) -> Kernel:
    from promote.kernels.torch_kernel import TorchKernel

    return TorchKernel(spec, role=role)


@register_kind("onnx")
def _onnx(spec: Any, role: str) -> Kernel:
    from promote.kernels.onnx_kernel import OnnxKernel

    return OnnxKernel(spec, role=role)


@register_kind("records")
def _records(spec: Any, role: str) -> Kernel:
    from promote.kernels.records import RecordsKernel

    return RecordsKernel(spec, role=role)


@register_kind("openai")
def _openai(spec: Any, role: str) -> Kernel:
    from promote.kernels.openai_kernel import OpenAIKernel

    return OpenAIKernel(spec, role=role)


def build_kernel(spec: Any, *, role: str) -> Kernel:
    """Construct the kernel a contract's `reference`/`candidate` spec describes."""
    factory = KERNEL_KINDS.get(spec.kind)
    if factory is None:
        raise ValueError(f"unknown kernel kind {spec.kind!r}; registered: {', '.join(sorted(KERNEL_KINDS))}")
    kernel = factory(spec, role)
    faults = getattr(spec, "inject", ())
    if faults:  # `inject:` wraps any kind (kernels/inject.py)
        from promote.kernels.inject import InjectedKernel

        return InjectedKernel(kernel, tuple(faults))
    return kernel
