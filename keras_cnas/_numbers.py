"""Two rules about non-finite numbers, one name each (pure Python).

* :func:`is_finite_number`: is this a real, finite int or float (not a bool, not None)? What
  a plot or a TensorBoard scalar can show.
* :func:`finite_or_none`: the value with every non-finite float replaced by None, through
  dicts and lists (NumPy scalars become Python numbers): strict JSON has no NaN or inf.

Example:
    >>> is_finite_number(1.5), is_finite_number(float("nan")), is_finite_number(True)
    (True, False, False)
    >>> finite_or_none({"loss": float("inf"), "acc": [0.5, float("nan")]})
    {'loss': None, 'acc': [0.5, None]}
"""

from __future__ import annotations

import math
from typing import Any, Mapping

__all__ = ["finite_or_none", "is_finite_number"]


def is_finite_number(value: Any) -> bool:
    """True for a finite int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (strict JSON has no inf)."""
    if isinstance(value, Mapping):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # NumPy scalars
        return finite_or_none(value.item())
    return value
