"""Argument validation: what counts as an int or a real number (pure Python).

Python's ``bool`` is an ``int`` (``True + True == 2``), so ``isinstance(x, int)`` lets
``epochs=True`` through; every check of keras_cnas uses these predicates instead, and keeps
its own message (which names the argument, the value and the fix).

Example:
    >>> is_int(3), is_int(True), is_int(3.0)
    (True, False, False)
    >>> import numpy as np
    >>> is_int(np.int64(3)), is_int(np.int64(3), numpy=True)
    (False, True)
    >>> is_real(0.5), is_real(False), is_finite_number(float("inf"))
    (True, False, False)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["is_finite_number", "is_int", "is_real"]


def is_int(value: Any, *, numpy: bool = False) -> bool:
    """An ``int`` that is not a ``bool`` (with ``numpy=True``, a NumPy integer too)."""
    types = (int, np.integer) if numpy else int
    return isinstance(value, types) and not isinstance(value, (bool, np.bool_))


def is_real(value: Any, *, numpy: bool = False) -> bool:
    """An ``int`` or ``float`` that is not a ``bool`` (with ``numpy=True``, NumPy numbers too);
    NaN and inf included: combine with ``math.isfinite`` or use :func:`is_finite_number`."""
    types = (int, float, np.integer, np.floating) if numpy else (int, float)
    return isinstance(value, types) and not isinstance(value, (bool, np.bool_))


def is_finite_number(value: Any) -> bool:
    """A finite ``int`` or ``float`` that is not a ``bool``: what a plot or a TensorBoard
    scalar can show."""
    return is_real(value) and math.isfinite(value)
