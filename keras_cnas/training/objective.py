"""What a Keras search maximises or minimises: one home for the objective's names and rules.

``Objective.resolve(objective, direction)`` accepts

* ``"J"`` (the default): MIT-LL's ``J = val_loss + beta * R(A)``, minimised; it is logged
  as the metric ``"objective"``;
* ``"val_accuracy"`` (maximised), ``"val_loss"`` (minimised);
* any metric the model logs (``"val_auc"``, a compiled metric's name, ``"accuracy"``),
  with its ``direction``; it is inferred for names KerasTuner infers (``*loss``/``*error``:
  min; ``*acc*``, ``*auc``, ``*precision``, ``*recall``: max);
* a ``(name, direction)`` pair or an object with ``name`` and ``direction`` attributes
  (``keras_tuner.Objective``).

Pure Python.

Example:
    >>> Objective.resolve("val_accuracy")
    Objective(name='val_accuracy', direction='max')
    >>> Objective.resolve("J").metric, Objective.resolve("J").monitor
    ('objective', 'val_loss')
    >>> Objective.resolve("val_auc").direction
    'max'
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["J", "Objective"]

#: The MIT-LL objective's name (``objective="J"``) and the metric it is logged as.
J = "J"
J_METRIC = "objective"
DIRECTIONS = ("min", "max")
_MAX_HINTS = ("acc", "auc", "precision", "recall", "f1", "iou")
_MIN_HINTS = ("loss", "error")


@dataclasses.dataclass(frozen=True)
class Objective:
    """A metric name and whether it is minimised or maximised."""

    name: str
    direction: str

    @property
    def metric(self) -> str:
        """The key of ``EvaluationResult.metrics`` that holds it (``"objective"`` for J)."""
        return J_METRIC if self.name == J else self.name

    @property
    def monitor(self) -> str:
        """The Keras log the best epoch is chosen on (J's epoch: the lowest val_loss)."""
        return "val_loss" if self.name == J else self.name

    @property
    def is_validation(self) -> bool:
        return self.name == J or self.name.startswith("val_")

    @classmethod
    def resolve(cls, objective: Any = J, direction: str | None = None) -> "Objective":
        """The objective ``objective`` names (see the module docstring).

        Raises:
            ValueError: not a name, a direction other than min / max, or a metric whose
                direction cannot be inferred and is not given.
        """
        if isinstance(objective, Objective):
            return objective
        if isinstance(objective, (tuple, list)) and len(objective) == 2:
            objective, direction = objective
        elif hasattr(objective, "name") and hasattr(objective, "direction"):
            objective, direction = objective.name, objective.direction
        if not isinstance(objective, str) or not objective:
            raise ValueError(f"objective: expected 'J', 'val_accuracy', 'val_loss' or a metric "
                             f"name with direction='min'|'max', got {objective!r}")
        if objective in (J, J_METRIC):
            if direction not in (None, "min"):
                raise ValueError(f"direction: J = val_loss + beta * R(A) is minimised; got "
                                 f"direction={direction!r}")
            return cls(J, "min")
        if direction is None:
            lower = objective.lower()
            if lower.endswith(_MIN_HINTS):
                direction = "min"
            elif any(h in lower for h in _MAX_HINTS):
                direction = "max"
            else:
                raise ValueError(f"direction: cannot tell whether {objective!r} is to be "
                                 "minimised or maximised; pass direction='min' or 'max' "
                                 "(--objective=NAME:min on the command line)")
        if direction not in DIRECTIONS:
            raise ValueError(f"direction: expected 'min' or 'max', got {direction!r}")
        return cls(objective, direction)

    @classmethod
    def parse(cls, text: str) -> "Objective":
        """``"val_accuracy"``, ``"J"`` or ``"val_auc:max"`` (the ``--objective`` flag)."""
        name, _, direction = str(text).partition(":")
        return cls.resolve(name, direction or None)

    def to_config(self) -> str:
        return self.name if self.name in (J, "val_accuracy", "val_loss") \
            else f"{self.name}:{self.direction}"
