"""The training recipe the compression methods share: Adam on a seeded ``tf.data``
pipeline, sparse labels, and top-1 accuracy.

A model whose output is a softmax is trained on probabilities; any other output is taken
as logits (``from_logits=True``), so user models with a linear head work as they are.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Sequence

import numpy as np

from keras_cnas._checks import is_int, is_real
from keras_cnas._keras import keras
from keras_cnas.data import Dataset
from keras_cnas.optimizer import OPTIMIZERS, OptimizerRecipe

__all__ = ["OPTIMIZERS", "TrainingConfig", "accuracy", "fit", "outputs_probabilities",
           "recalibrate_batch_norm"]


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """How one training phase runs.

    Attributes:
        epochs: passes over the training split (0: skip the phase).
        batch_size: mini-batch size.
        learning_rate: the optimizer's step size.
        augment: apply the dataset's training augmentation.
        steps_per_epoch: cap on the steps of an epoch (None: the whole split), for quick
            runs on large data.
        optimizer: ``"adam"``, or ``"sgd_nesterov"`` (momentum 0.9, Nesterov), the names of
            :class:`~keras_cnas.optimizer.OptimizerRecipe`, which builds it
            (:attr:`recipe`): proximal methods (group lasso, MorphNet) need plain gradient
            steps, whose size compares with the proximal step; Adam rescales every coordinate
            to about the learning rate.

    Example:
        >>> TrainingConfig(epochs=2, batch_size=64).steps(1000)   # 2 x ceil(1000 / 64)
        32
    """

    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 1e-3
    augment: bool = True
    steps_per_epoch: int | None = None
    optimizer: str = "adam"

    def __post_init__(self) -> None:
        if not is_int(self.epochs) or self.epochs < 0:
            raise ValueError(f"epochs: expected a non-negative integer, got {self.epochs!r}")
        if not is_int(self.batch_size) \
                or self.batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {self.batch_size!r}")
        if not is_real(self.learning_rate) \
                or not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate: expected a positive number such as 1e-3, got "
                             f"{self.learning_rate!r}")
        if not isinstance(self.augment, bool):
            raise ValueError(f"augment: expected True or False, got {self.augment!r}")
        if self.steps_per_epoch is not None and (
                not is_int(self.steps_per_epoch)
                or self.steps_per_epoch < 1):
            raise ValueError(f"steps_per_epoch: expected a positive integer or None, got "
                             f"{self.steps_per_epoch!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {self.optimizer!r}")

    @property
    def recipe(self) -> OptimizerRecipe:
        """The optimizer as the search's evaluators build theirs (momentum 0.9, no decay)."""
        return OptimizerRecipe(self.optimizer, self.learning_rate)

    def steps(self, num_examples: int) -> int:
        """Optimizer steps of the whole phase on ``num_examples`` training examples."""
        per_epoch = math.ceil(num_examples / self.batch_size)
        if self.steps_per_epoch is not None:
            per_epoch = min(per_epoch, self.steps_per_epoch)
        return self.epochs * per_epoch

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def outputs_probabilities(model: Any) -> bool:
    """Whether ``model`` ends in a softmax (else its outputs are treated as logits)."""
    layer = model.layers[-1]
    if type(layer) is keras.layers.Softmax:
        return True
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "") == "softmax"


def compile_model(model: Any, config: TrainingConfig, from_logits: bool | None = None) -> None:
    """The configured optimizer + sparse cross-entropy (on logits unless the model ends in
    a softmax)."""
    if from_logits is None:
        from_logits = not outputs_probabilities(model)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    model.compile(optimizer=config.recipe.make_optimizer(), loss=loss, metrics=["accuracy"])


def fit(model: Any, data: Dataset, config: TrainingConfig, *, seed: int = 0,
        callbacks: Sequence[Any] = (),
        from_logits: bool | None = None) -> tuple[dict[str, list[float]], float]:
    """Trains ``model`` in place on the training split; returns (history, seconds).

    Extra losses the model holds (``model.add_loss``, layer regularisers) are part of
    the objective. ``from_logits`` defaults to whether the model ends in a softmax.
    """
    if config.epochs == 0:
        return {}, 0.0
    keras.utils.set_random_seed(seed)
    compile_model(model, config, from_logits)
    dataset = data.tf_dataset("train", batch_size=config.batch_size, augment=config.augment,
                              seed=seed)
    if config.steps_per_epoch is not None:
        # Repeat so that capped epochs keep drawing fresh batches rather than restarting.
        dataset = dataset.repeat()
        steps = min(config.steps_per_epoch, math.ceil(len(data.y_train) / config.batch_size))
    else:
        steps = None
    started = time.perf_counter()
    history = model.fit(dataset, epochs=config.epochs, steps_per_epoch=steps,
                        callbacks=list(callbacks), verbose=0)
    return {k: [float(v) for v in vs] for k, vs in history.history.items()}, \
        time.perf_counter() - started


def accuracy(model: Any, data: Dataset, split: str = "test", batch_size: int = 256) -> float | None:
    """Top-1 accuracy on a split (None if the split is empty)."""
    x, y = data.arrays(split)
    if len(y) == 0:
        return None
    predictions = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(predictions, axis=-1) == y))


def recalibrate_batch_norm(model: Any, data: Dataset, *, batches: int = 8, batch_size: int = 128,
                           seed: int = 0) -> int:
    """Re-estimates every BatchNorm's moving mean and variance on training batches (no
    augmentation), as the average over ``batches`` batches; no weight changes. Returns the
    number of BatchNorm layers updated.

    Sparsity training moves weights (and, with dropout noise, activation variances) faster
    than the moving averages follow, and surgery changes what a BatchNorm sees; an
    inference-mode evaluation with stale statistics measures the lag, not the model.
    """
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers:
        return 0
    saved = [layer.momentum for layer in layers]
    dataset = data.tf_dataset("train", batch_size=batch_size, augment=False, shuffle=True, seed=seed)
    try:
        for i, (x, _) in enumerate(dataset.take(batches)):
            for layer in layers:  # running average over batches: new = (i m + b) / (i + 1)
                layer.momentum = i / (i + 1)
            model(x, training=True)
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum
    return len(layers)
