"""Non-finite numbers made JSON-safe (pure Python): :func:`finite_or_none` replaces every
non-finite float by None, through dicts and lists (NumPy scalars become Python numbers):
strict JSON has no NaN or inf. "Is it a finite number?" is ``keras_cnas._checks.is_finite_number``.

Example:
    >>> finite_or_none({"loss": float("inf"), "acc": [0.5, float("nan")]})
    {'loss': None, 'acc': [0.5, None]}
"""

from __future__ import annotations

import math
from typing import Any, Mapping

__all__ = ["finite_or_none"]


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
