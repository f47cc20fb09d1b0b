"""How a candidate is optimised: the optimizer, weight decay and a step learning-rate decay.

Two recipes matter to the published methods: MIT-LL trains with Adam at 5e-4 (the
default), and RCAS (§4.1) with SGD + Nesterov momentum 0.9 at lr 0.1, decayed x0.1 at
epochs 4, 7 and 9 of 10, weight decay 4e-5 (:data:`RCAS_RECIPE`). :meth:`OptimizerRecipe.scaled`
keeps a recipe's shape on a shorter CPU budget (decay points move with the epoch count).

This module imports TensorFlow only inside :meth:`OptimizerRecipe.make_optimizer` and
:meth:`OptimizerRecipe.callbacks`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from keras_cnas._checks import is_finite_number, is_int

if TYPE_CHECKING:
    from keras_cnas._keras import keras

__all__ = ["OPTIMIZERS", "OptimizerRecipe", "RCAS_RECIPE"]

#: ``optimizer=`` names: Adam, or SGD with Nesterov momentum.
OPTIMIZERS = ("adam", "sgd_nesterov")

# Variables that weight decay leaves alone: decaying BatchNorm's scale/offset and biases
# only fights the normalisation (as in the TF-slim MobileNet training RCAS follows).
_NO_DECAY = ("gamma", "beta", "bias")


def _check_number(name: str, value: Any, *, low: float, high: float = math.inf,
                  inclusive_low: bool = False, inclusive_high: bool = False, example: str) -> None:
    ok = is_finite_number(value)
    if ok:
        ok = (value >= low if inclusive_low else value > low) and (
            value <= high if inclusive_high else value < high)
    if not ok:
        left = "[" if inclusive_low else "("
        right = "]" if inclusive_high else ")"
        raise ValueError(f"{name}: expected a number in {left}{low:g}, {high:g}{right} such as "
                         f"{example}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class OptimizerRecipe:
    """An optimizer and its learning-rate schedule, as JSON-compatible values.

    Args:
        optimizer: ``"adam"`` or ``"sgd_nesterov"`` (SGD with Nesterov momentum).
        learning_rate: the initial step size.
        momentum: SGD's momentum (ignored by Adam).
        weight_decay: decoupled weight decay per step, ``w -= lr * weight_decay * w`` on
            kernels only (not BatchNorm or biases); equivalent for plain SGD to an L2 term
            ``weight_decay / 2 * ||w||^2`` in the loss. 0: none.
        lr_decay_epochs: 0-based epochs at whose start the learning rate is multiplied by
            ``lr_decay_factor`` (RCAS: 4, 7, 9). Empty: a constant learning rate.
        lr_decay_factor: the multiplier at each decay epoch, in (0, 1].

    Example:
        >>> recipe = RCAS_RECIPE
        >>> [recipe.learning_rate_at(epoch) for epoch in (0, 3, 4, 7, 9)]
        [0.1, 0.1, 0.01, 0.001, 0.0001]
        >>> RCAS_RECIPE.scaled(from_epochs=10, to_epochs=5).lr_decay_epochs
        (2, 4)
    """

    optimizer: str = "adam"
    learning_rate: float = 5e-4
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_decay_epochs: tuple[int, ...] = ()
    lr_decay_factor: float = 0.1

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: unknown optimizer {self.optimizer!r}; known: "
                             f"{', '.join(OPTIMIZERS)}")
        _check_number("learning_rate", self.learning_rate, low=0.0, example="5e-4")
        _check_number("momentum", self.momentum, low=0.0, high=1.0, inclusive_low=True,
                      example="0.9")
        _check_number("weight_decay", self.weight_decay, low=0.0, inclusive_low=True,
                      example="4e-5")
        _check_number("lr_decay_factor", self.lr_decay_factor, low=0.0, high=1.0,
                      inclusive_high=True, example="0.1")
        epochs = self.lr_decay_epochs
        if isinstance(epochs, (str, bytes)) or not isinstance(epochs, Sequence) or any(
                not is_int(e) or e < 1 for e in epochs):
            raise ValueError(f"lr_decay_epochs: expected a list of positive epoch numbers such as "
                             f"(4, 7, 9), got {epochs!r}")
        if list(epochs) != sorted(set(epochs)):
            raise ValueError(f"lr_decay_epochs: expected increasing epochs without repeats, got "
                             f"{list(epochs)}; e.g. (4, 7, 9)")
        object.__setattr__(self, "lr_decay_epochs", tuple(epochs))
        object.__setattr__(self, "learning_rate", float(self.learning_rate))

    def learning_rate_at(self, epoch: int) -> float:
        """The learning rate of 0-based ``epoch``."""
        decays = sum(1 for d in self.lr_decay_epochs if epoch >= d)
        # round(): 0.1 * 0.1 is 0.010000000000000002; users read these rates in logs.
        return float(f"{self.learning_rate * self.lr_decay_factor ** decays:.12g}")

    def scaled(self, *, from_epochs: int, to_epochs: int) -> "OptimizerRecipe":
        """The same recipe for ``to_epochs`` instead of ``from_epochs``: decay points move
        proportionally (rounded, kept distinct and within the run)."""
        for name, value in (("from_epochs", from_epochs), ("to_epochs", to_epochs)):
            if not is_int(value) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        moved: list[int] = []
        for epoch in self.lr_decay_epochs:
            at = max(1, round(epoch * to_epochs / from_epochs))
            if at < to_epochs and (not moved or at > moved[-1]):
                moved.append(at)
        return dataclasses.replace(self, lr_decay_epochs=tuple(moved))

    def make_optimizer(self) -> "keras.optimizers.Optimizer":
        """A fresh tf_keras optimizer for this recipe."""
        from keras_cnas._keras import keras

        decay = self.weight_decay or None
        if self.optimizer == "adam":
            optimizer = keras.optimizers.Adam(self.learning_rate, weight_decay=decay)
        else:
            optimizer = keras.optimizers.SGD(self.learning_rate, momentum=self.momentum,
                                             nesterov=True, weight_decay=decay)
        if decay:
            optimizer.exclude_from_weight_decay(var_names=list(_NO_DECAY))
        return optimizer

    def callbacks(self) -> list["keras.callbacks.Callback"]:
        """The learning-rate schedule as a callback ([] for a constant rate)."""
        if not self.lr_decay_epochs:
            return []
        from keras_cnas._keras import keras

        return [keras.callbacks.LearningRateScheduler(lambda epoch, lr: self.learning_rate_at(epoch))]

    def get_config(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer, "learning_rate": self.learning_rate,
                "momentum": self.momentum, "weight_decay": self.weight_decay,
                "lr_decay_epochs": list(self.lr_decay_epochs),
                "lr_decay_factor": self.lr_decay_factor}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "OptimizerRecipe":
        return cls(**{**config, "lr_decay_epochs": tuple(config.get("lr_decay_epochs", ()))})


#: RCAS §4.1: SGD Nesterov 0.9, lr 0.1 decayed x0.1 at epochs 4, 7, 9 (of 10), wd 4e-5.
RCAS_RECIPE = OptimizerRecipe("sgd_nesterov", 0.1, momentum=0.9, weight_decay=4e-5,
                              lr_decay_epochs=(4, 7, 9), lr_decay_factor=0.1)
#: The epochs RCAS_RECIPE was written for.
RCAS_EPOCHS = 10

