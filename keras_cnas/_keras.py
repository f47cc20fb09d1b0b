"""The one module that imports Keras.

keras_cnas uses the Keras 2 API from the ``tf_keras`` package, never ``tf.keras``:
tensorflow-model-optimization 0.8.x only works with Keras 2, and importing it flips
``TF_USE_LEGACY_KERAS`` so that a process touching ``tf.keras`` could end up with two
Kerases whose layers do not mix. Every other module does ``from keras_cnas._keras import
keras``.
"""

import os

# Quiet TensorFlow's C++ start-up chatter unless the user asked for it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402



class _DropRetracingWarnings:
    """A search builds a new model per trial, so TF's "triggered tf.function retracing"
    warning fires by design; it would bury the progress lines. Other warnings pass."""

    def filter(self, record) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(_DropRetracingWarnings())

_tfmot = None


def tfmot():
    """``tensorflow_model_optimization``, imported on first call (it takes ~0.4 s and most
    runs never prune or quantize).

    Importing tfmot sets ``TF_USE_LEGACY_KERAS=1`` in ``os.environ`` (its Keras shim reads
    it to pick Keras 2); by then our Keras is already ``tf_keras``, so the previous value is
    restored to keep the flip out of this process's environment and its child processes.

    Example:
        >>> tfmot().sparsity.keras.strip_pruning  # doctest: +ELLIPSIS
        <function strip_pruning at ...>
    """
    global _tfmot
    if _tfmot is None:
        previous = os.environ.get("TF_USE_LEGACY_KERAS")
        import tensorflow_model_optimization as module

        if previous is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = previous
        _tfmot = module
    return _tfmot


__all__ = ["keras", "tf", "tfmot"]
