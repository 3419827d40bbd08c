"""The one name -> object registry behind every plug-in kind (quantizers, chunk tokenizers,
policy kinds, experts, STE pairs, environments), and the JSON form of fitted numbers. One
mechanism, so every registry resolves, refuses and lists names the same way.

A kind registers itself in its own module (``@REGISTRY.register("name", **meta)`` on the class
or factory, or ``REGISTRY.add("name", value, **meta)``), so a registry never imports what it
holds and low layers never import high ones. ``meta`` is the entry's description for its users
(a policy kind's config class, whether it reads tokens, ...): :meth:`Registry.meta`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from qbc.errors import UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered name: the object (class, factory or spec) and its metadata."""

    name: str
    value: T
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def description(self) -> str:
        """The first line of the object's docstring ("" without one)."""
        doc = getattr(self.value, "__doc__", None) or ""
        return doc.strip().split("\n", 1)[0]


class Registry(Generic[T]):
    """Objects registered under names; ``kind`` names them in messages ("quantizer").

    ``name_attr``: the attribute of a registered object set to its name (``cls.name = name``
    for quantizers, ``cls.kind`` for policy kinds; None: left alone)."""

    def __init__(self, kind: str, name_attr: str | None = "name"):
        self.kind = kind
        self.name_attr = name_attr
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator: register the decorated class or function under ``name`` (see :meth:`add`)."""

        def wrap(value: T) -> T:
            return self.add(name, value, **meta)

        return wrap

    def add(self, name: str, value: T, **meta: Any) -> T:
        """Register ``value`` under ``name`` with ``meta``; returns ``value``. A name taken by
        another (unequal) object is refused (ValueError: a plug-in must not replace a built-in
        silently); registering an equal one again, as a reloaded module does, is allowed."""
        old = self._entries.get(name)
        if old is not None and old.value is not value and old.value != value:
            raise ValueError(f"{self.kind} name {name!r} is already registered")
        if self.name_attr is not None:
            setattr(value, self.name_attr, name)
        self._entries[name] = Entry(name, value, dict(meta))
        return value

    def remove(self, name: str) -> T:
        """Unregister ``name`` (a plug-in registered for a while, e.g. by a test)."""
        return self._entries.pop(name).value

    def names(self, **meta: Any) -> list[str]:
        """Registered names, sorted; with ``meta`` given, those whose metadata has these values
        (``names(chunk=True)``)."""
        return sorted(n for n, e in self._entries.items()
                      if all(e.meta.get(k) == v for k, v in meta.items()))

    def entry(self, name: str) -> Entry[T]:
        """The entry of ``name``; an unknown name lists the valid ones (UnknownNameError)."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries) from None

    def get(self, name: str) -> T:
        """The object registered under ``name``; an unknown name lists the valid ones."""
        return self.entry(name).value

    def meta(self, name: str) -> Mapping[str, Any]:
        """The metadata ``name`` was registered with; an unknown name lists the valid ones."""
        return self.entry(name).meta

    def __getitem__(self, name: str) -> T:
        return self._entries[name].value

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        """Names in the order they were registered."""
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"


def json_value(value: Any) -> Any:
    """A numpy array or scalar as plain JSON (lists, Python numbers); anything else as is."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
