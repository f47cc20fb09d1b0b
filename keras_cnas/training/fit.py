"""``fit_and_evaluate``: the MIT-LL training recipe (Adam 5e-4, batch 128) on tf.data."""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

from keras_cnas._keras import keras
from keras_cnas.data import Dataset


def fit_and_evaluate(model: keras.Model, dataset: Dataset, *, epochs: int = 5,
                     batch_size: int = 128, learning_rate: float = 5e-4, augment: bool = True,
                     seed: int = 0, callbacks: Sequence[keras.callbacks.Callback] = (),
                     verbose: int = 0) -> dict[str, Any]:
    """Compiles ``model``, trains it on the training split and evaluates every split.

    Args:
        model: a model with a softmax output over ``dataset.num_classes``.
        dataset: the data; its validation split (if any) is monitored during training.
        epochs: passes over the training split.
        batch_size: mini-batch size (paper: 128).
        learning_rate: Adam's step size (paper: 5e-4).
        augment: apply the dataset's augmentation to training batches.
        seed: seeds weight initialisation, shuffling and augmentation.
        callbacks: extra Keras callbacks.
        verbose: Keras verbosity.

    Returns:
        ``train_loss``, ``train_accuracy`` (last epoch), ``val_loss``, ``val_accuracy`` (if
        the dataset has a validation split), ``test_loss``, ``test_accuracy`` (if it has a
        test split), ``epochs`` run and ``train_seconds``.

    Example:
        >>> import keras_cnas as cnas
        >>> data = cnas.data.load("digits")
        >>> spec = cnas.spaces.Descriptor((8, 8, 1), 10, [cnas.spaces.ConvLayer(8)])
        >>> metrics = fit_and_evaluate(cnas.build_model(spec), data, epochs=1)
        >>> 0.0 <= metrics["test_accuracy"] <= 1.0
        True
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs: expected a positive integer, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate: expected a positive number such as 5e-4, got {learning_rate!r}")
    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    has_val = len(dataset.y_val) > 0
    has_test = dataset.y_test is not None and len(dataset.y_test) > 0
    started = time.perf_counter()
    history = model.fit(
        dataset.tf_dataset("train", batch_size=batch_size, augment=augment, seed=seed),
        validation_data=dataset.tf_dataset("validation", batch_size=batch_size) if has_val else None,
        epochs=epochs, callbacks=list(callbacks), verbose=verbose)
    metrics: dict[str, Any] = {"train_seconds": time.perf_counter() - started,
                               "epochs": len(history.history.get("loss", []))}
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if history.history.get(name):
            key = name if name.startswith("val_") else f"train_{name}"
            metrics[key] = float(history.history[name][-1])
    if has_test:
        loss, accuracy = model.evaluate(dataset.tf_dataset("test", batch_size=batch_size), verbose=0)
        metrics.update(test_loss=float(loss), test_accuracy=float(accuracy))
    return metrics
