"""Keras callbacks that carry the search's training rules.

* :class:`TractionCallback`: stop after k epochs or k steps and keep the early validation
  score, the MIT-LL paper's "traction" (§3.4), a cheap proxy of the converged score.
* :class:`NanGuard`: a NaN or infinite loss stops training at once and records why, so the
  trial is FAILED with that reason and the search goes on.
* :class:`TrialTimeLimit`: stop when a wall-clock budget is spent, and record it.

Each records its outcome on itself (``score``, ``reason``, ...) for the evaluator to read
after ``fit`` returns. Convergence at full fidelity uses Keras' own ``EarlyStopping``.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping

import numpy as np

from keras_cnas._checks import is_int, is_real
from keras_cnas._keras import keras

__all__ = ["NanGuard", "TractionCallback", "TrialTimeLimit"]


def _check_count(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if not is_int(value) or value < 1:
        raise ValueError(f"{name}: expected a positive integer or None, got {value!r}")
    return value


def _as_floats(logs: Mapping[str, Any] | None) -> dict[str, float]:
    """Scalar log entries as Python floats (Keras hands callbacks NumPy scalars)."""
    out = {}
    for name, value in (logs or {}).items():
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            continue  # a non-scalar entry (rare: custom metrics) is not a score.
    return out


class TractionCallback(keras.callbacks.Callback):
    """Stops training after ``epochs`` epochs or ``steps`` steps, whichever comes first,
    and records the early ("traction") score.

    Stopping on steps ends the epoch early; Keras still runs that epoch's validation, so
    ``score`` is a validation score either way.

    Args:
        epochs: epochs to train; None for no epoch limit.
        steps: training steps (batches) to train; None for no step limit.
        monitor: the log entry reported as :attr:`score`.

    Attributes:
        logs: the logs of the last epoch (``loss``, ``val_loss``, ``val_accuracy``, ...).
        epochs_run: epochs that ended (a step stop ends one early).
        steps_run: training steps run.
        stopped: whether this callback stopped training.

    Example:
        >>> import numpy as np
        >>> from keras_cnas._keras import keras
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, "softmax")])
        >>> model.compile("adam", "sparse_categorical_crossentropy")
        >>> traction = TractionCallback(epochs=2)
        >>> x, y = np.zeros((8, 2)), np.zeros(8)
        >>> _ = model.fit(x, y, validation_data=(x, y), epochs=50, verbose=0,
        ...               callbacks=[traction])
        >>> traction.epochs_run, traction.score is not None
        (2, True)
    """

    def __init__(self, epochs: int | None = None, steps: int | None = None,
                 monitor: str = "val_loss"):
        super().__init__()
        self.epochs = _check_count("epochs", epochs)
        self.steps = _check_count("steps", steps)
        if self.epochs is None and self.steps is None:
            raise ValueError("TractionCallback: give epochs= or steps= (or both: the first "
                             "reached stops training); got neither")
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor: expected a log name such as 'val_loss', got {monitor!r}")
        self.monitor = monitor
        self._reset()

    def _reset(self) -> None:
        self.logs: dict[str, float] = {}
        self.epochs_run = 0
        self.steps_run = 0
        self.stopped = False

    @property
    def score(self) -> float | None:
        """The monitored value at the end of the last epoch (None if never logged)."""
        return self.logs.get(self.monitor)

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self._reset()

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.steps_run += 1
        if self.steps is not None and self.steps_run >= self.steps:
            self.stopped = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.epochs_run += 1
        self.logs = _as_floats(logs)
        if self.epochs is not None and self.epochs_run >= self.epochs:
            self.stopped = True
            self.model.stop_training = True


class NanGuard(keras.callbacks.Callback):
    """Stops training as soon as the loss (or a weight) is NaN or infinite, and says why.

    The training loss is checked after every batch (so a diverging run stops at once, not
    after wasting the rest of its epochs), ``val_loss`` and the weights after every epoch.
    The weight check matters: a NaN that enters through the data makes the gradients and
    then the weights NaN, yet the reported loss can stay finite (Keras clips probabilities
    before the log), so a loss check alone would let a dead model train on.

    Args:
        check_weights: also check every weight at the end of each epoch (one copy of the
            weights per epoch: negligible next to the epoch itself).

    Attributes:
        reason: None while training is healthy, else e.g. ``"loss became nan at epoch 1,
            step 3"`` or ``"weight conv_0/kernel:0 became non-finite in epoch 2"``.

    Example:
        >>> guard = NanGuard()
        >>> guard.reason is None
        True
    """

    def __init__(self, check_weights: bool = True) -> None:
        super().__init__()
        if not isinstance(check_weights, bool):
            raise ValueError(f"check_weights: expected True or False, got {check_weights!r}")
        self.check_weights = check_weights
        self.reason: str | None = None
        self._epoch = 0
        self._step = 0

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self.reason, self._epoch, self._step = None, 0, 0

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch = epoch

    def _stop(self, reason: str) -> None:
        self.reason = reason
        self.model.stop_training = True

    def _check(self, logs: Mapping[str, Any] | None, names: tuple[str, ...]) -> None:
        for name in names:
            value = (logs or {}).get(name)
            if self.reason is None and value is not None and not math.isfinite(float(value)):
                self._stop(f"{name} became {float(value)} at epoch {self._epoch + 1}, "
                           f"step {self._step}")

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._step += 1
        self._check(logs, ("loss",))

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._check(logs, ("loss", "val_loss"))
        if self.reason is None and self.check_weights:
            for weight in self.model.weights:
                if not np.isfinite(np.asarray(weight)).all():
                    self._stop(f"weight {weight.name} became non-finite in epoch {epoch + 1}")
                    break


class TrialTimeLimit(keras.callbacks.Callback):
    """Stops training once ``seconds`` of wall-clock time have passed since it began.

    Checked after every training batch and every epoch, so a run overshoots by at most one
    batch (or one validation pass).

    Args:
        seconds: the budget for ``fit``.
        clock: a monotonic clock in seconds (injectable for tests).

    Attributes:
        reason: None within budget, else e.g. ``"time limit of 60 s reached after 60.4 s
            (epoch 3, step 241)"``.
        elapsed: seconds since training began, as of the last check.

    Example:
        >>> TrialTimeLimit(600).seconds
        600.0
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        if not is_real(seconds) \
                or not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"seconds: expected a positive number of seconds such as 600, "
                             f"got {seconds!r}")
        self.seconds = float(seconds)
        self._clock = clock
        self._start = clock()
        self.reason: str | None = None
        self.elapsed = 0.0
        self._epoch = 0
        self._step = 0

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self._start = self._clock()
        self.reason, self.elapsed, self._epoch, self._step = None, 0.0, 0, 0

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch = epoch

    def _check(self) -> None:
        self.elapsed = self._clock() - self._start
        if self.reason is None and self.elapsed >= self.seconds:
            self.reason = (f"time limit of {self.seconds:g} s reached after {self.elapsed:.1f} s "
                           f"(epoch {self._epoch + 1}, step {self._step})")
            self.model.stop_training = True

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._step += 1
        self._check()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._check()
