"""A small key -> object registry, one per axis (targets, exporters, planners, checks, runtimes).

Keys are names, or config types (a scheme's planner is registered for its config class, and
shown by the class's `name`)."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from edgeport.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects. Registering a name twice raises; an unknown name lists the known ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} '{_label(name)}' is already registered")
        self._items[name] = item
        return item

    def register(self, name) -> Callable[[T], T]:
        """Decorator form of `add`."""
        return lambda item: self.add(name, item)

    def get(self, name) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(_label(k) for k in self._items))
            raise InputError(f"unknown {self.kind} '{_label(name)}' (known: {known})") from None

    def names(self) -> list:
        return list(self._items)

    def __getitem__(self, name) -> T:
        """`registry[name]` is `registry.get(name)`: a registry reads like the table it replaces."""
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items.values())


def _label(key) -> str:
    """How a key is named in messages: a config type by its `name`, anything else as a string."""
    return str(getattr(key, "name", key)) if isinstance(key, type) else str(key)
