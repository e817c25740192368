"""A small name -> object registry, one per axis (targets, exporters, quantizers, checks, runtimes)."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from edgeport.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects. Registering a name twice raises; an unknown name lists the known ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._items[name] = item
        return item

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of `add`."""
        return lambda item: self.add(name, item)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items))
            raise InputError(f"unknown {self.kind} '{name}' (known: {known})") from None

    def names(self) -> list[str]:
        return list(self._items)

    def __getitem__(self, name) -> T:
        """`registry[name]` is `registry.get(name)`: a registry reads like the table it replaces."""
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items.values())
