"""``RewardPenalty``: the B-ENAS penalised reward as a Keras callback.

B-ENAS scores an architecture by ``accuracy - alpha * penalty(costs)`` (eqs. 2-3), where
some costs are known only once training ends: the training time. This callback times the
``fit`` it is passed to, and when training ends reads the validation accuracy and the costs
(the measured ``train_seconds`` included) and writes ``reward`` and ``penalty`` into the
logs, so that ``model.fit`` users, and any evaluator, get the penalised reward directly.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping

from keras_cnas._keras import keras
from keras_cnas.costs.penalty import CostPenalty

__all__ = ["RewardPenalty"]

CostsFn = Callable[["keras.Model"], Mapping[str, float]]


class RewardPenalty(keras.callbacks.Callback):
    """Writes ``reward = accuracy - alpha * penalty(costs)`` into the training logs.

    Each epoch's logs get the running figures (``train_seconds`` so far), so ``History``
    shows them per epoch; the final ones, with the whole training time, are written into
    the logs passed to ``on_train_end`` and kept on the callback.

    Args:
        bounds: ``{cost: upper bound}``, e.g. ``{"params": 50_000, "train_seconds": 60}``.
        alpha: the penalty's weight (B-ENAS: 0.1).
        beta: eq. 3's slope (B-ENAS: 1).
        costs: the model's costs other than the training time: a mapping, or a function of
            the model (default: ``{"params": model.count_params()}``). ``train_seconds`` is
            measured by this callback.
        monitor: the accuracy log entry (``val_accuracy``; ``accuracy`` without validation).
        clock: a monotonic clock in seconds (injectable for tests).

    Attributes:
        reward, penalty, accuracy, train_seconds: the final figures (None until training ends,
            reward and accuracy also when ``monitor`` was never logged).
        costs: every cost the penalty saw.

    Example:
        >>> import numpy as np
        >>> from keras_cnas._keras import keras
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, "softmax")])
        >>> model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        >>> callback = RewardPenalty({"params": 3}, alpha=0.1)   # 6 params: penalty 2
        >>> x, y = np.zeros((8, 2)), np.zeros(8)
        >>> history = model.fit(x, y, validation_data=(x, y), epochs=2, verbose=0,
        ...                     callbacks=[callback])
        >>> callback.penalty, round(callback.reward - callback.accuracy, 6)
        (2.0, -0.2)
        >>> len(history.history["reward"])
        2
    """

    def __init__(self, bounds: Mapping[str, float], *, alpha: float = 0.1, beta: float = 1.0,
                 costs: Mapping[str, float] | CostsFn | None = None,
                 monitor: str = "val_accuracy", clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.rule = CostPenalty(bounds, alpha=alpha, beta=beta)
        if costs is not None and not callable(costs) and not isinstance(costs, Mapping):
            raise ValueError(f"costs: expected a mapping of cost name to value or a function of "
                             f"the model, got {type(costs).__name__}")
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor: expected a log name such as 'val_accuracy', got {monitor!r}")
        self._costs = costs
        self.monitor = monitor
        self._clock = clock
        self._start = clock()
        self._reset()

    def _reset(self) -> None:
        self.reward: float | None = None
        self.penalty: float | None = None
        self.accuracy: float | None = None
        self.train_seconds: float | None = None
        self.costs: dict[str, float] = {}

    def _model_costs(self) -> dict[str, float]:
        if self._costs is None:
            return {"params": float(self.model.count_params())}
        costs = self._costs(self.model) if callable(self._costs) else self._costs
        return {k: float(v) for k, v in costs.items()}

    def _write(self, logs: dict[str, Any] | None) -> None:
        self.train_seconds = self._clock() - self._start
        self.costs = {**self._model_costs(), "train_seconds": self.train_seconds}
        self.penalty = self.rule.penalty(self.costs)
        value = (logs or {}).get(self.monitor)
        self.accuracy = None if value is None else float(value)
        valid = self.accuracy is not None and math.isfinite(self.accuracy)
        self.reward = self.rule.reward(self.accuracy, self.costs) if valid else None
        if logs is not None:
            logs["penalty"] = self.penalty
            logs["train_seconds"] = self.train_seconds
            if self.reward is not None:
                logs["reward"] = self.reward

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self._reset()
        self._start = self._clock()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._write(logs)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._write(logs)
