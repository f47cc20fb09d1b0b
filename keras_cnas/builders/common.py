"""Layer factories shared by the builders."""

from __future__ import annotations

import numpy as np

from keras_cnas._keras import keras

#: BatchNorm momentum of every built model. Keras' default 0.99 lets the moving statistics
#: lag far behind the weights during the few epochs of a traction run: measured on digits
#: (3 epochs, batch 32, 3 seeds), validation accuracy was 0.10-0.35 with 0.99 and
#: 0.54-0.78 with 0.9, for the same model. 0.9 is PyTorch's default (its momentum 0.1).
BN_MOMENTUM = 0.9


def batch_norm(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=name)


def redraw_kernels(model: keras.Model, rng: np.random.Generator) -> keras.Model:
    """Re-draws every kernel from ``rng`` (He-normal scale), leaving BatchNorm and biases.

    Keras initialises from global state; this gives weights fixed by a passed-in generator,
    so that int8 calibration (and hence quantization scales and arena sizes) is the same on
    every run without seeding anything global.

    Example:
        >>> import keras_cnas as cnas
        >>> spec = cnas.spaces.Descriptor((8, 8, 1), 3, [cnas.spaces.ConvLayer(4)])
        >>> a = redraw_kernels(cnas.build_model(spec), np.random.default_rng(0))
        >>> b = redraw_kernels(cnas.build_model(spec), np.random.default_rng(0))
        >>> all((x == y).all() for x, y in zip(a.get_weights(), b.get_weights()))
        True
    """
    weights = []
    for w in model.weights:
        value = w.numpy()
        if "kernel" in w.name:
            fan_in = int(np.prod(value.shape[:-1])) or 1
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), value.shape).astype(value.dtype)
        weights.append(value)
    model.set_weights(weights)
    return model


def redraw_weights(model: keras.Model, rng: np.random.Generator) -> keras.Model:
    """Re-draws every weight from ``rng`` as training leaves them: He-normal kernels, and
    non-zero biases and BatchNorm statistics.

    What the TFLite converter emits depends on weights in one degenerate case: a bias that
    is exactly zero (as at initialisation) is dropped. A trained network never shows it,
    and ``keras_cnas.costs.deployment`` prices specs as trained networks, so measuring a
    model with these weights checks those prices.

    Example:
        >>> import keras_cnas as cnas
        >>> spec = cnas.spaces.Descriptor((8, 8, 1), 3, [cnas.spaces.ConvLayer(4)])
        >>> model = redraw_weights(cnas.build_model(spec), np.random.default_rng(0))
        >>> all(w.numpy().any() for w in model.weights)
        True
    """
    weights = []
    for w in model.weights:
        shape, name = tuple(w.shape), w.name
        if "kernel" in name:
            fan_in = int(np.prod(shape[:-1])) or 1
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        elif "variance" in name or "gamma" in name:
            value = rng.uniform(0.5, 1.5, shape)
        else:  # biases, BatchNorm's beta and moving mean
            value = rng.normal(0.0, 0.1, shape)
        weights.append(value.astype(np.float32))
    model.set_weights(weights)
    return model

