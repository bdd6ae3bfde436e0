"""One generic ``Registry[T]``: stages, kernel kinds and fault kinds are registered the same way.

Shaped after lm-evaluation-harness's registry: an entry is an object or ``Lazy("module:attribute")``
(so torch, onnxruntime or a stage's maths load only when a contract uses them), names are
unique, iteration is in registration order, and an optional ``check`` rejects an object of the wrong
shape when it is first resolved. Built-ins are registered like third-party plug-ins: a test plugs a
toy stage or kernel kind in with ``register`` and takes it out with ``unregister`` (or ``registered``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from importlib import import_module
from typing import Generic, TypeVar

T = TypeVar("T")
PLUGINS: list[str] = []  # modules that registered plug-ins (``plugin``); Ray actors import them again


def plugin(module: str) -> None:
    """Record that module ``module`` registers plug-ins when imported (call it from that module), so
    another process running this one's work (a Ray actor) imports it too (``load_plugins``)."""
    if module not in PLUGINS:
        PLUGINS.append(module)


def load_plugins(modules: Iterable[str]) -> None:
    """Import each plug-in module named (empty names skipped); importing registers its entries."""
    for module in modules:
        if module.strip():
            import_module(module.strip())
            plugin(module.strip())


class Lazy:
    """An entry imported on first use: ``Lazy("package.module:attribute")``."""

    __slots__ = ("target",)

    def __init__(self, target: str) -> None:
        self.target = target

    def resolve(self) -> object:
        module, _, attribute = self.target.partition(":")
        return getattr(import_module(module), attribute)

    def __repr__(self) -> str:
        return f"Lazy({self.target!r})"


class Registry(Generic[T]):
    """Named entries of one kind, in registration order; lazy entries resolve on first ``get``."""

    def __init__(self, what: str, check: Callable[[object], bool] | None = None) -> None:
        self.what = what
        self._check = check
        self._entries: dict[str, T | Lazy] = {}

    def register(self, name: str, entry: T | Lazy, *, replace: bool = False) -> T | Lazy:
        """Add ``entry`` (an object or ``Lazy``) under ``name``; a second entry under one name is a
        programming error unless ``replace``."""
        if name in self._entries and not replace:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    @contextlib.contextmanager
    def registered(self, name: str, entry: T | Lazy) -> Iterator[T | Lazy]:
        """``register`` for the duration of a ``with`` block (tests plugging a toy entry in)."""
        self.register(name, entry)
        try:
            yield entry
        finally:
            self.unregister(name)

    def get(self, name: str) -> T:
        """The entry ``name``, resolved; KeyError naming what is registered when it is not."""
        try:
            entry = self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.what} {name!r}; registered: {', '.join(self._entries)}") from None
        if isinstance(entry, Lazy):
            entry = entry.resolve()  # type: ignore[assignment]
            if self._check is not None and not self._check(entry):
                raise TypeError(f"{self.what} {name!r} ({self._entries[name]}) has the wrong type")
            self._entries[name] = entry
        return entry  # type: ignore[return-value]

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return [(name, self.get(name)) for name in self._entries]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __delitem__(self, name: str) -> None:
        self.unregister(name)
