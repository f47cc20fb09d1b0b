"""Lazy attributes for packages whose parts import TensorFlow (PEP 562)."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_attributes(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``table[name]`` on first access.

    An entry that names the submodule itself (``"data": "keras_cnas.data"``) returns the
    module; any other entry returns the attribute of that name from the module.

    Example:
        >>> getattr_ = lazy_attributes("keras_cnas", {"estimate": "keras_cnas.costs"})
        >>> getattr_("estimate").__name__
        'estimate'
    """

    def __getattr__(name: str) -> Any:
        if name in table:
            module = importlib.import_module(table[name])
            return module if module.__name__ == f"{package}.{name}" else getattr(module, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
