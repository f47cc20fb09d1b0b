"""Keras model -> TFLite flatbuffer: float, float16, dynamic-range and full-integer int8.

``to_tflite`` strips tfmot pruning wrappers first, optionally fine-tunes with quantization-
aware training (tfmot ``quantize_model``), and never turns on the converter's
``EXPERIMENTAL_SPARSITY`` optimization: it inserts DENSIFY ops that XNNPACK and TFLite Micro
reject (DESIGN.md), so a 2:4-pruned model is exported as a dense one.

TensorFlow is imported on first conversion, so ``import keras_cnas.export`` stays light.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from keras_cnas._checks import is_int, is_real
from keras_cnas.costs.quantization import QUANTIZATIONS
from keras_cnas.data import Dataset

if TYPE_CHECKING:
    from keras_cnas._keras import keras

__all__ = ["QUANTIZATIONS", "REPRESENTATIVE_SAMPLES", "quiet_conversion", "strip_wrappers",
           "to_tflite"]

logger = logging.getLogger(__name__)

#: Training examples the int8 calibration sees by default ("a few hundred").
REPRESENTATIVE_SAMPLES = 300

# tfmot's wrapper class for pruned layers; matched by name so that checking a model for
# pruning does not import tfmot (~0.4 s) for every conversion.
_PRUNE_WRAPPER = "PruneLowMagnitude"


def to_tflite(model: "keras.Model", quantize: str = "none",
              representative_data: Dataset | np.ndarray | Sequence[Any] | None = None,
              int8_io: bool = False, *, qat: bool = False,
              qat_data: Dataset | tuple[np.ndarray, np.ndarray] | None = None,
              qat_epochs: int = 2, qat_learning_rate: float = 1e-4, qat_batch_size: int = 32,
              num_samples: int = REPRESENTATIVE_SAMPLES, seed: int = 0) -> bytes:
    """Converts a Keras model to a TFLite flatbuffer.

    Args:
        model: a ``tf_keras`` model with one input and one output. Pruning wrappers
            (``prune_low_magnitude``) are stripped first; the model is not modified.
        quantize: ``"none"`` (float32), ``"float16"`` (float16 weights), ``"dynamic"``
            (int8 weights, float activations) or ``"int8"`` (full-integer: weights and
            activations, calibrated on ``representative_data``).
        representative_data: inputs that calibrate the int8 activation ranges: a
            :class:`~keras_cnas.data.Dataset` (its training split), an array of inputs, or
            an ``(x, y)`` pair. ``num_samples`` examples are drawn from it at random.
            Required for ``"int8"``, unused otherwise.
        int8_io: with ``"int8"``, make the model's input and output int8 too (read their
            scale and zero point from the interpreter); otherwise they stay float32.
        qat: fine-tune with quantization-aware training (tfmot ``quantize_model``) for
            ``qat_epochs`` before converting; needs ``quantize="int8"`` and labelled data.
        qat_data: the QAT training data: a Dataset (its training split) or ``(x, y)``;
            defaults to ``representative_data`` when that is a Dataset.
        qat_epochs: epochs of QAT fine-tuning.
        qat_learning_rate: Adam's step size for QAT (small: the weights are trained).
        qat_batch_size: mini-batch size for QAT.
        num_samples: most calibration examples for ``"int8"``.
        seed: seeds the choice of calibration examples and QAT's shuffling.

    Returns:
        The ``.tflite`` flatbuffer.

    Raises:
        ValueError: an unknown ``quantize``, ``"int8"`` without representative data,
            ``int8_io`` or ``qat`` without ``"int8"``, data whose shape does not fit the
            model, or a model with several inputs or outputs.

    Example:
        >>> import keras_cnas as cnas
        >>> from keras_cnas._keras import keras
        >>> data = cnas.data.load("digits")
        >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(10, activation="softmax")])
        >>> flatbuffer = to_tflite(model, "int8", representative_data=data)
        >>> flatbuffer[4:8]
        b'TFL3'
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize: unknown quantization {quantize!r}; known: "
                         f"{', '.join(QUANTIZATIONS)}")
    if not isinstance(int8_io, bool):
        raise ValueError(f"int8_io: expected True or False, got {int8_io!r}")
    if int8_io and quantize != "int8":
        raise ValueError(f"int8_io=True needs quantize='int8' (got quantize={quantize!r}): only a "
                         "full-integer model can take and give int8 tensors")
    if qat and quantize != "int8":
        raise ValueError(f"qat=True trains for int8 inference; use quantize='int8' (got "
                         f"{quantize!r})")
    _check_positive_int("num_samples", num_samples)
    _check_single_io(model)
    input_shape = tuple(model.input_shape[1:])

    calibration = None
    if quantize == "int8":
        if representative_data is None:
            raise ValueError(
                "representative_data: quantize='int8' calibrates activation ranges on real "
                "inputs; pass representative_data=dataset (a keras_cnas Dataset: its training "
                "split is used) or an array of a few hundred training inputs, or use "
                "quantize='dynamic' / 'float16', which need none")
        calibration = _sample(_inputs_of(representative_data, "representative_data"),
                              num_samples, seed, input_shape, "representative_data")

    model = strip_wrappers(model)
    if qat:
        model = _quantization_aware(model, qat_data if qat_data is not None else representative_data,
                                    qat_epochs, qat_learning_rate, qat_batch_size, seed)
    return _convert(model, quantize, calibration, int8_io)


def strip_wrappers(model: "keras.Model") -> "keras.Model":
    """``model`` without tfmot pruning wrappers (the same object if it has none).

    Example:
        >>> from keras_cnas._keras import keras
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        >>> strip_wrappers(model) is model
        True
    """
    if not any(type(layer).__name__ == _PRUNE_WRAPPER for layer in _layers(model)):
        return model
    from keras_cnas._keras import tfmot

    logger.info("stripping pruning wrappers from %s", model.name)
    return tfmot().sparsity.keras.strip_pruning(model)


# --- helpers ------------------------------------------------------------------------------


def _layers(model: Any) -> Iterator[Any]:
    for layer in getattr(model, "layers", ()):
        yield layer
        yield from _layers(layer)


def _check_positive_int(name: str, value: Any) -> None:
    if not is_int(value, numpy=True) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")


def _check_single_io(model: Any) -> None:
    if not hasattr(model, "input_shape") or not hasattr(model, "predict"):
        raise ValueError(f"model: expected a tf_keras Model, got {type(model).__name__}")
    if isinstance(model.input_shape, list) or isinstance(model.output_shape, list):
        raise ValueError(f"model: {model.name!r} has several inputs or outputs; keras_cnas "
                         "exports single-input, single-output classifiers")


def _inputs_of(data: Any, name: str) -> np.ndarray:
    """The input array of a Dataset (training split), an (x, y) pair or an array."""
    if isinstance(data, Dataset):
        return data.x_train
    if isinstance(data, tuple) and len(data) == 2:
        return np.asarray(data[0])
    if isinstance(data, np.ndarray):
        return data
    if isinstance(data, (list, tuple)):
        return np.asarray(data)
    raise ValueError(f"{name}: expected a keras_cnas Dataset, an array of inputs or an (x, y) "
                     f"pair, got {type(data).__name__}")


def _labelled(data: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(data, Dataset):
        return data.x_train, data.y_train
    if isinstance(data, tuple) and len(data) == 2:
        return np.asarray(data[0]), np.asarray(data[1])
    raise ValueError(
        f"{name}: quantization-aware training needs labelled training data: pass "
        f"qat_data=dataset (a keras_cnas Dataset) or qat_data=(x, y); got "
        f"{'nothing' if data is None else type(data).__name__}")


def _check_inputs(x: np.ndarray, input_shape: tuple, name: str) -> np.ndarray:
    if x.ndim != len(input_shape) + 1 or any(
            d is not None and d != s for d, s in zip(input_shape, x.shape[1:])):
        raise ValueError(f"{name}: inputs of shape {x.shape} do not fit the model's input "
                         f"(batch, *{input_shape})")
    if len(x) == 0:
        raise ValueError(f"{name}: no examples")
    return x.astype(np.float32, copy=False)


def _sample(x: np.ndarray, count: int, seed: int, input_shape: tuple, name: str) -> np.ndarray:
    """``count`` examples drawn at random (training arrays are often sorted by class)."""
    x = _check_inputs(x, input_shape, name)
    if len(x) <= count:
        return x
    index = np.sort(np.random.default_rng(seed).choice(len(x), count, replace=False))
    return x[index]


def _quantization_aware(model: "keras.Model", data: Any, epochs: int, learning_rate: float,
                        batch_size: int, seed: int) -> "keras.Model":
    """tfmot ``quantize_model`` (fake-quant wrappers), fine-tuned for ``epochs``."""
    from keras_cnas._keras import keras, tfmot

    _check_positive_int("qat_epochs", epochs)
    _check_positive_int("qat_batch_size", batch_size)
    if not is_real(learning_rate) or not learning_rate > 0:
        raise ValueError(f"qat_learning_rate: expected a positive number such as 1e-4, got "
                         f"{learning_rate!r}")
    x, y = _labelled(data, "qat_data")
    x = _check_inputs(x, tuple(model.input_shape[1:]), "qat_data")
    if len(y) != len(x):
        raise ValueError(f"qat_data: {len(x)} inputs but {len(y)} labels")
    try:
        qat_model = tfmot().quantization.keras.quantize_model(model)
    except Exception as e:  # noqa: BLE001  re-raised with the argument named.
        raise ValueError(f"qat: tfmot's quantize_model cannot wrap {model.name!r}: {e}; export "
                         "with qat=False (post-training int8)") from e
    keras.utils.set_random_seed(seed)
    # Sparse labels with softmax outputs, as every keras_cnas builder makes them.
    qat_model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = qat_model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0)
    logger.info("QAT: %d epochs, last loss %.4f", epochs, history.history["loss"][-1])
    return qat_model


def _convert(model: "keras.Model", quantize: str, calibration: np.ndarray | None,
             int8_io: bool) -> bytes:
    from keras_cnas._keras import tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize != "none":
        # DEFAULT only: never tf.lite.Optimize.EXPERIMENTAL_SPARSITY (see the module docstring).
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        assert calibration is not None

        def representative_dataset():
            for example in calibration:
                yield [example[None]]

        converter.representative_dataset = representative_dataset
        # Fail at conversion rather than fall back to float kernels silently: an "int8"
        # model must run on integer-only targets (TFLite Micro, NPUs).
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    with warnings.catch_warnings(), quiet_conversion():
        # "Statistics for quantized inputs were expected, but not specified": the
        # representative dataset supplies them.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return bytes(converter.convert())


#: Python loggers whose INFO lines a conversion floods the terminal with ("Found untraced
#: functions", "Sharding callback duration", "Using new converter", "Assets written to").
_CHATTY_LOGGERS = ("tensorflow", "absl")


@contextlib.contextmanager
def quiet_conversion() -> Iterator[None]:
    """Keeps TensorFlow's INFO chatter of a conversion off the terminal.

    The ``tensorflow`` and ``absl`` Python loggers are raised to WARNING, and what the
    converter's C++ code writes to file descriptor 2 (``fully_quantize: 0, ...``) is
    captured: its warning and error lines (glog ``W`` / ``E`` / ``F`` prefixes, or naming an
    error) are logged as warnings, the rest at DEBUG. If the conversion raises, everything
    captured goes to stderr, so nothing that explains a failure is lost.

    Example:
        >>> with quiet_conversion():
        ...     logging.getLogger("tensorflow").info("Found untraced functions")  # not shown
    """
    saved_levels = {}
    for name in _CHATTY_LOGGERS:
        chatty = logging.getLogger(name)
        saved_levels[name] = chatty.level
        if chatty.getEffectiveLevel() < logging.WARNING:
            chatty.setLevel(logging.WARNING)
    sys.stderr.flush()
    try:
        saved_fd = os.dup(2)
    except OSError:  # no fd 2 (an embedded interpreter): only the loggers are quieted
        saved_fd = None
    capture = tempfile.TemporaryFile(mode="w+b")
    if saved_fd is not None:
        os.dup2(capture.fileno(), 2)
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        if saved_fd is not None:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
        capture.seek(0)
        text = capture.read().decode("utf-8", "replace")
        capture.close()
        if failed and text:
            sys.stderr.write(text)
        elif text:
            _relay(text)


def _relay(text: str) -> None:
    for line in text.splitlines():
        if not line.strip():
            continue
        serious = line[:1] in "WEF" and line[1:5].isdigit() or "error" in line.lower()
        logger.log(logging.WARNING if serious else logging.DEBUG, "converter: %s", line)
