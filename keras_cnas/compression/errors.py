"""Errors of the compression package; each message names the argument, what was received
and the fix."""

from __future__ import annotations

from typing import Any

from keras_cnas.errors import KerasCnasError


class UnsupportedModelError(KerasCnasError, ValueError):
    """The model holds a layer (or a construct) that channel surgery cannot rewrite.

    Example message: ``model: layer 'lambda_3' (Lambda) is not supported by channel
    surgery; supported layers: ...; rewrite it with supported layers``.
    """


class ToleranceExceededError(KerasCnasError, RuntimeError):
    """Iterative synthesis lost more validation accuracy than allowed before the target.

    Attributes:
        model: the last model still within the tolerance (it does *not* meet the target),
            or None if the first step already exceeded it.
        history: one record per step taken.
    """

    def __init__(self, message: str, model: Any = None, history: list | None = None):
        super().__init__(message)
        self.model = model
        self.history = list(history or [])
