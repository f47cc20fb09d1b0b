"""Variational dropout at filter level (Molchanov et al. 2017, extended to filters).

Each channel ``c`` of a signal (a producer's output, or the BatchNorm right after it) is
multiplied during training by ``1 + sqrt(alpha_c) * eps``, ``eps ~ N(0, 1)`` drawn once per
example and channel (shared over positions: noise on the whole filter), and passes
unchanged at inference — Gaussian dropout with a learned rate ``alpha_c`` per filter. The
KL term of the variational bound against the log-uniform prior (Molchanov's approximation,
eq. 14) pushes ``log alpha`` up wherever the data allows; a channel whose ``log alpha``
passes a threshold (3 in the paper: the signal drowned in noise of 4.5 times its size) is
removed. The filter's scale is left to the weights and BatchNorm around it (Molchanov's
``theta``), so removing the wrappers leaves the trained baseline architecture as it is.

:func:`add_channel_noise` clones a model with :class:`ChannelNoise` wrappers on the signal
layers; :func:`remove_channel_noise` copies the trained weights back into a clone of the
plain model.
"""

from __future__ import annotations

from typing import Any

from keras_cnas._keras import keras, tf
from keras_cnas.compression.graph import ChannelGraph

__all__ = ["ChannelNoise", "add_channel_noise", "noise_points", "remove_channel_noise"]

# Molchanov et al. (2017), eq. 14: -KL ~ k1 sigmoid(k2 + k3 log a) - 0.5 log(1 + 1/a) - k1.
K1, K2, K3 = 0.63576, 1.87320, 1.48695
#: log alpha is stored divided by this: Adam moves every variable by about the learning
#: rate per step, and a short training budget must carry a filter from log alpha = -6 to
#: the threshold (9 units) in a hundred steps, not thousands.
LOG_ALPHA_SPEED = 100.0
LOG_ALPHA_RANGE = (-8.0, 8.0)


class ChannelNoise(keras.layers.Wrapper):
    """Wraps a layer and multiplies its output channels by Gaussian noise of a learned
    variance: ``y * (1 + exp(log_alpha / 2) * eps)`` in training, ``y`` at inference.

    Args:
        layer: the wrapped layer.
        init_log_alpha: the initial ``log alpha`` of every channel.

    Example:
        >>> import numpy as np
        >>> from keras_cnas._keras import keras
        >>> noisy = ChannelNoise(keras.layers.Dense(3))
        >>> x = np.ones((2, 4), "float32")
        >>> bool(np.allclose(noisy(x, training=False), noisy.layer(x)))   # no noise at inference
        True
        >>> noisy.log_alpha().numpy().tolist()
        [-6.0, -6.0, -6.0]
    """

    def __init__(self, layer: Any, init_log_alpha: float = -6.0, **kwargs: Any):
        kwargs.setdefault("name", f"noisy_{layer.name}")
        super().__init__(layer, **kwargs)
        self.init_log_alpha = float(init_log_alpha)

    def build(self, input_shape: Any) -> None:
        if not self.layer.built:
            self.layer.build(input_shape)
        channels = int(self.layer.compute_output_shape(input_shape)[-1])
        self.log_alpha_scaled = self.add_weight(
            name="log_alpha", shape=(channels,),
            initializer=keras.initializers.Constant(self.init_log_alpha / LOG_ALPHA_SPEED))
        super().build(input_shape)

    def log_alpha(self) -> Any:
        """``log alpha`` per channel, clipped to [-8, 8]."""
        return tf.clip_by_value(self.log_alpha_scaled * LOG_ALPHA_SPEED, *LOG_ALPHA_RANGE)

    def kl(self) -> Any:
        """Molchanov's approximate KL divergence of each channel's posterior from the
        log-uniform prior (>= 0; falls to 0 as alpha grows)."""
        la = self.log_alpha()
        return -(K1 * tf.sigmoid(K2 + K3 * la) - 0.5 * tf.math.softplus(-la) - K1)

    def call(self, inputs: Any, training: Any = None) -> Any:
        y = self.layer(inputs, training=training)
        shape = [-1] + [1] * (y.shape.rank - 2) + [y.shape[-1]]

        def noisy() -> Any:
            eps = tf.random.normal(tf.stack([tf.shape(y)[0], y.shape[-1]]))
            return y * tf.reshape(1.0 + tf.exp(0.5 * self.log_alpha()) * eps, shape)

        return keras.backend.in_train_phase(noisy, y, training=training)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return self.layer.compute_output_shape(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "init_log_alpha": self.init_log_alpha}


def noise_points(graph: ChannelGraph) -> dict[int, list[tuple[str, str]]]:
    """Per prunable group index: ``(signal layer, its producer)`` for every producer of the
    group (the signal is the BatchNorm right after it, or the producer itself)."""
    return {group.index: list(zip(graph.signal_layers(group), group.producers))
            for group in graph.prunable}


def add_channel_noise(model: Any, points: list[str], init_log_alpha: float = -6.0) -> Any:
    """A clone of ``model`` (same weights) with ``points`` wrapped in :class:`ChannelNoise`."""
    wanted = set(points)

    def clone(layer: Any) -> Any:
        copy = type(layer).from_config(layer.get_config())
        return ChannelNoise(copy, init_log_alpha) if layer.name in wanted else copy

    noisy = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if layer.weights:
            _inner(noisy, layer.name).set_weights(layer.get_weights())
    return noisy


def remove_channel_noise(model: Any, noisy: Any) -> Any:
    """A clone of the plain ``model`` carrying ``noisy``'s trained weights (what ``noisy``
    computes at inference)."""
    plain = keras.models.clone_model(model)
    for layer in model.layers:
        if layer.weights:
            plain.get_layer(layer.name).set_weights(_inner(noisy, layer.name).get_weights())
    return plain


def _inner(noisy: Any, name: str) -> Any:
    """The layer called ``name`` in ``noisy``, inside its wrapper if it has one."""
    for layer in noisy.layers:
        if layer.name == name:
            return layer
        if isinstance(layer, ChannelNoise) and layer.layer.name == name:
            return layer.layer
    raise KeyError(f"layer {name!r} is not in {noisy.name!r}")
