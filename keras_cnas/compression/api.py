"""``compress(model, data, method, target)``: the one-call entry point."""

from __future__ import annotations

from typing import Any

from keras_cnas.compression.methods.base import METHODS, CompressionMethod, CompressionResult
from keras_cnas.compression.target import Target
from keras_cnas.compression.training import TrainingConfig
from keras_cnas.data import Dataset

__all__ = ["compress"]


def compress(model: Any, data: Dataset, method: str | CompressionMethod = "group_lasso",
             target: Target | dict[str, float] | None = None, *,
             training: TrainingConfig | None = None, finetune: TrainingConfig | None = None,
             seed: int = 0) -> CompressionResult:
    """Compresses a trained baseline to a hard cost target and fine-tunes it.

    Args:
        model: the trained baseline, a Sequential or Functional ``tf_keras`` model of
            :data:`~keras_cnas.compression.SUPPORTED_LAYERS` (not modified).
        data: the dataset it was trained on.
        method: a name in :data:`METHODS` (``"group_lasso"``, ``"vardrop"``, ``"morphnet"``,
            ``"synthesis"``; built with ``training`` and ``finetune`` and its default
            strengths), or a configured method such as ``MorphNet(..., strength=0.3)``.
        target: the hard bounds as fractions of the baseline's costs; default a third of
            its FLOPs, ``Target(flops=1/3)``.
        training: the method's sparsity training (per round); default the method's
            ``DEFAULT_TRAINING`` (proximal SGD for group lasso and MorphNet, Adam otherwise).
        finetune: the final fine-tuning; default 2 epochs.
        seed: seeds every training run.

    Returns:
        A :class:`CompressionResult`: ``result.model`` meets every bound
        (``result.costs`` measured on it), with accuracies and timings.

    Example:
        >>> import keras_cnas as cnas
        >>> from keras_cnas._keras import keras
        >>> data = cnas.data.load("digits")
        >>> model = keras.Sequential([keras.Input((8, 8, 1)),
        ...     keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        ...     keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
        >>> quick = TrainingConfig(epochs=1)
        >>> result = compress(model, data, "synthesis", {"flops": 0.33}, training=quick,
        ...                   finetune=quick)
        >>> result.target_met, result.fraction("flops") <= 0.33
        (True, True)
    """
    if target is None:
        target = Target(flops=1 / 3)
    if isinstance(method, str):
        cls = METHODS.get(method)  # KeyError listing the known methods
        method = cls(training or cls.DEFAULT_TRAINING, finetune or TrainingConfig(epochs=2))
    elif not isinstance(method, CompressionMethod):
        raise ValueError(f"method: expected a name ({', '.join(METHODS.names())}) or a "
                         f"CompressionMethod, got {type(method).__name__}")
    elif training is not None or finetune is not None:
        raise ValueError("training / finetune: a configured method carries its own; pass them "
                         "to its constructor (or pass the method by name)")
    return method.compress(model, data, target, seed=seed)
