"""Objects named by an importable ``"module:attribute"`` path, so that worker processes and
Ray rebuild them from JSON (the build function of a ``HyperSpace``, a user's callbacks).

Pure Python. A function of the script run as ``__main__`` is named by the script's file
(``"/abs/train.py:build"``) and imported from it under another module name, so the script's
search code must sit under ``if __name__ == "__main__":``, as for ``multiprocessing``.

Example:
    >>> object_path(object_path)
    'keras_cnas._imports:object_path'
    >>> import_object('keras_cnas._imports:object_path') is object_path
    True
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pathlib
import sys
from typing import Any

__all__ = ["import_object", "module_root_of", "object_path"]

# Objects handed over in this process, by path: a script's functions are never re-imported
# here (which would run the script again), only in worker processes.
_KNOWN: dict[str, Any] = {}


def object_path(obj: Any, argument: str = "build_fn") -> str:
    """The ``"module:attribute"`` path of a top-level function, class or module-level
    instance; a string is checked and returned.

    Raises:
        ValueError: a lambda, a function defined inside another function, an instance no
            module-level name holds, or a malformed string (the message says the fix).
    """
    if isinstance(obj, str):
        module, _, attr = obj.rpartition(":")
        if not module or not attr:
            raise ValueError(f"{argument}: expected 'module:attribute' (e.g. 'my_models:build'), "
                             f"got {obj!r}")
        return obj
    if inspect.isfunction(obj) or inspect.isclass(obj):
        name, module_name = obj.__qualname__, obj.__module__
        if "<lambda>" in name:
            raise ValueError(f"{argument}: a lambda cannot be imported by worker processes (or "
                             "named in a resumable search); define it with def at the top level "
                             "of a module")
        if "<locals>" in name:
            raise ValueError(f"{argument}: {name} is defined inside another function, so worker "
                             "processes cannot import it; move it to the top level of a module")
    else:  # an instance: named by the module-level variable holding it
        module_name = type(obj).__module__
        module = sys.modules.get(module_name)
        name = next((k for k, v in vars(module).items() if v is obj), None) if module else None
        if name is None:
            raise ValueError(f"{argument}: this {type(obj).__name__} instance is not held by a "
                             "module-level variable, so worker processes cannot import it; "
                             "assign it at the top of a module (or pass 'module:attribute')")
    if module_name == "__main__":
        main_file = getattr(sys.modules["__main__"], "__file__", None)
        path = f"{os.path.abspath(main_file)}:{name}" if main_file else f"__main__:{name}"
    else:
        path = f"{module_name}:{name}"
    _KNOWN[path] = obj
    return path


def module_root_of(path: str) -> str | None:
    """The directory to put on ``sys.path`` so that a fresh process (whose working directory
    is its own) imports the module of ``path`` as this one did; None when none is needed
    (a script file, an installed package)."""
    module_name = path.rpartition(":")[0]
    filename = getattr(sys.modules.get(module_name), "__file__", None)
    if module_name.endswith(".py") or not filename:
        return None
    root = pathlib.Path(filename).resolve().parent
    for _ in range(module_name.count(".")):
        root = root.parent
    if "site-packages" in root.parts or "dist-packages" in root.parts:
        return None
    return str(root)


def import_object(path: str, root: str | None = None, argument: str = "build_fn") -> Any:
    """The object ``path`` names; ``root`` goes on ``sys.path`` if the module is not
    importable without it (see :func:`module_root_of`).

    Raises:
        ValueError: the module cannot be imported or has no such attribute.
    """
    if path in _KNOWN:
        return _KNOWN[path]
    module_name, _, attr = object_path(path, argument).rpartition(":")
    if module_name == "__main__":
        raise ValueError(f"{argument}: {path!r} was defined in an interactive session, which a "
                         "worker process cannot import; move it into a module file "
                         "(my_models.py) and pass it from there")
    try:
        if module_name.endswith(".py"):
            module = _import_file(module_name)
        else:
            if root is not None and root not in sys.path \
                    and importlib.util.find_spec(module_name.split(".")[0]) is None:
                sys.path.append(root)
            module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001  any import failure: one clear line
        raise ValueError(f"{argument}: cannot import {module_name!r} for {path!r} "
                         f"({type(e).__name__}: {e}); make it importable (PYTHONPATH) from where "
                         "the search runs") from None
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ValueError(f"{argument}: {module_name!r} has no {attr!r} (from {path!r})")
    _KNOWN[path] = target
    return target


def _import_file(filename: str) -> Any:
    """A script imported as a module (not as ``__main__``: its guarded code does not run)."""
    name = "_keras_cnas_user_" + pathlib.Path(filename).stem + "_" + str(abs(hash(filename)))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, filename)
    if spec is None or spec.loader is None:
        raise ImportError(f"{filename} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    directory = str(pathlib.Path(filename).parent)
    if directory not in sys.path:  # its own imports (helpers next to the script)
        sys.path.append(directory)
    spec.loader.exec_module(module)
    return module
