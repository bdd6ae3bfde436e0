"""Kernels: programs that turn a batch of the eval set into outputs (docs/architecture.md; kinds in docs/contract.md).

Kernel kinds come from a registry: ``KERNEL_KINDS`` maps a contract's ``kind:`` to a factory
``(spec, role) -> Kernel``. The built-in factories import lazily, so torch or onnxruntime load only
when a contract uses them; ``register_kind`` plugs in more (an ``openai`` HTTP kernel, fault-injecting
wrappers around another kernel) without touching this module's callers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from promote.heap import loading
from promote.kernels.base import Kernel
from promote.registry import Registry

KernelFactory = Callable[[Any, str], Kernel]
KERNEL_KINDS: Registry[KernelFactory] = Registry("kernel kind")  # a kind's spec and capabilities: contract/kinds.py


def register_kind(kind: str) -> Callable[[KernelFactory], KernelFactory]:
    """Decorator: register ``factory(spec, role)`` as the builder of kernels of ``kind``."""

    def add(factory: KernelFactory) -> KernelFactory:
        KERNEL_KINDS.register(kind, factory)
        return factory

    return add


def _lazy(module: str, name: str) -> KernelFactory:
    """A factory that imports ``module`` only when a contract uses its kind (torch, onnxruntime and
    the HTTP client stay unloaded otherwise)."""

    def factory(spec: Any, role: str) -> Kernel:
        from importlib import import_module

        return getattr(import_module(module), name)(spec, role=role)

    return factory


for _kind, (_module, _name) in {
    "torch": ("promote.kernels.torch_kernel", "TorchKernel"),
    "onnx": ("promote.kernels.onnx_kernel", "OnnxKernel"),
    "records": ("promote.kernels.records", "RecordsKernel"),
    "openai": ("promote.kernels.openai_kernel", "OpenAIKernel"),
    "vllm": ("promote.kernels.vllm_kernel", "VllmKernel"),
}.items():
    register_kind(_kind)(_lazy(_module, _name))


def build_kernel(spec: Any, *, role: str) -> Kernel:
    """Construct the kernel a contract's `reference`/`candidate` spec describes (its kind's framework is
    imported here: under ``heap.loading``, like the weights in ``Kernel.open``)."""
    factory = KERNEL_KINDS.get(spec.kind)  # KeyError naming the registered kinds
    with loading():
        kernel = factory(spec, role)
    faults = getattr(spec, "inject", ())
    if faults:  # `inject:` wraps any kind (kernels/inject.py)
        from promote.kernels.inject import InjectedKernel

        return InjectedKernel(kernel, tuple(faults))
    return kernel
