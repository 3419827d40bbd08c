"""Name -> class registries (quantizers, chunk tokenizers) and the JSON form of their fitted
numbers. One mechanism, so every registry resolves, refuses and lists names the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import numpy as np

from qbc.errors import UnknownNameError

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Classes registered under names; ``kind`` names them in messages ("quantizer")."""

    def __init__(self, kind: str):
        self.kind = kind
        self._classes: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: register ``cls`` under ``name`` and set ``cls.name``."""

        def wrap(cls: T) -> T:
            if name in self._classes and self._classes[name] is not cls:
                raise ValueError(f"{self.kind} name {name!r} is already registered")
            cls.name = name
            self._classes[name] = cls
            return cls

        return wrap

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._classes)

    def get(self, name: str) -> T:
        """The class registered under ``name``; an unknown name lists the valid ones."""
        try:
            return self._classes[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._classes) from None

    def __getitem__(self, name: str) -> T:
        return self._classes[name]

    def __contains__(self, name: object) -> bool:
        return name in self._classes


def json_value(value: Any) -> Any:
    """A numpy array or scalar as plain JSON (lists, Python numbers); anything else as is."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
