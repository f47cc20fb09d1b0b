"""Name -> object registries for spaces, strategies, datasets, builders and block types."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to objects that rejects duplicates and lists names on a miss.

    Example:
        >>> datasets = Registry("dataset")
        >>> @datasets.register("digits")
        ... def load_digits(): ...
        >>> datasets.get("digits") is load_digits
        True
        >>> datasets.get("mnsit")
        Traceback (most recent call last):
        ...
        KeyError: "unknown dataset 'mnsit'; known datasets: digits"
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a second use of a name is an error."""

        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        if name in self._entries:
            raise ValueError(
                f"{self.kind} {name!r} is already registered (by {self._entries[name]!r}); "
                "pick another name")
        self._entries[name] = obj

    def remove(self, name: str) -> T:
        """Unregisters ``name`` (for tests and plugins that register temporarily)."""
        self.get(name)  # raises the helpful KeyError
        return self._entries.pop(name)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; known {self.kind}s: "
                f"{', '.join(sorted(self._entries)) or '(none)'}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
