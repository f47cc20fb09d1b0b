"""Runs a ``.tflite`` artifact in LiteRT (``ai_edge_litert``) and compares it with Keras.

The interpreter is the one an Android or Linux app ships, so the figures are those of the
artifact itself, int8 input/output quantisation included.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_cnas._checks import is_int
from keras_cnas.data import Dataset

if TYPE_CHECKING:
    from keras_cnas._keras import keras

__all__ = ["VerifyReport", "interpreter", "predict_tflite", "verify"]

#: Examples per interpreter call; the last batch is padded (re-allocating is slower).
BATCH_SIZE = 64


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    """How a TFLite artifact compares with its Keras model on labelled data.

    Attributes:
        num_examples: examples run.
        tflite_accuracy: top-1 accuracy of the artifact (None without labels).
        keras_accuracy: top-1 accuracy of the Keras model (None without one or labels).
        agreement: fraction of examples where both predict the same class (None without a
            Keras model).
        max_abs_diff: largest absolute difference of any output probability (None without a
            Keras model).
        input_dtype, output_dtype: the artifact's I/O types (``"float32"``, ``"int8"``).
    """

    num_examples: int
    tflite_accuracy: float | None
    keras_accuracy: float | None
    agreement: float | None
    max_abs_diff: float | None
    input_dtype: str
    output_dtype: str

    @property
    def accuracy_drop(self) -> float | None:
        """Keras accuracy minus TFLite accuracy (positive: the artifact is worse)."""
        if self.keras_accuracy is None or self.tflite_accuracy is None:
            return None
        return self.keras_accuracy - self.tflite_accuracy

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "accuracy_drop": self.accuracy_drop}


def interpreter(tflite_bytes: bytes, *, num_threads: int | None = None, xnnpack: bool = True):
    """An ``ai_edge_litert`` interpreter for ``tflite_bytes`` (tensors not yet allocated).

    Args:
        tflite_bytes: the flatbuffer.
        num_threads: CPU threads (None: LiteRT's default).
        xnnpack: True for the default op resolver, which applies the XNNPACK delegate (as
            apps do); False for the builtin kernels without default delegates.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    if not isinstance(tflite_bytes, (bytes, bytearray)) or len(tflite_bytes) < 8 \
            or bytes(tflite_bytes[4:8]) != b"TFL3":
        raise ValueError("tflite_bytes: expected a TFLite flatbuffer (bytes with the 'TFL3' "
                         f"identifier), got {type(tflite_bytes).__name__}"
                         f"{' of ' + str(len(tflite_bytes)) + ' bytes' if isinstance(tflite_bytes, (bytes, bytearray)) else ''}")
    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return Interpreter(model_content=bytes(tflite_bytes), num_threads=num_threads,
                       experimental_op_resolver_type=resolver)


def predict_tflite(tflite_bytes: bytes, x: np.ndarray, *, batch_size: int = BATCH_SIZE,
                   num_threads: int | None = None) -> np.ndarray:
    """The artifact's float outputs for float inputs ``x`` (int8 I/O (de)quantised).

    Example:
        >>> import numpy as np
        >>> from keras_cnas._keras import keras
        >>> from keras_cnas.export import to_tflite
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> x = np.ones((5, 3), np.float32)
        >>> bool(np.allclose(predict_tflite(to_tflite(model), x), model.predict(x, verbose=0),
        ...                  atol=1e-5))
        True
    """
    runner = interpreter(tflite_bytes, num_threads=num_threads)
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"tflite_bytes: the model has {len(inputs)} inputs and {len(outputs)} "
                         "outputs; keras_cnas runs single-input, single-output classifiers")
    inp, out = inputs[0], outputs[0]
    x = np.asarray(x, dtype=np.float32)
    if tuple(x.shape[1:]) != tuple(int(d) for d in inp["shape"][1:]):
        raise ValueError(f"x: examples of shape {tuple(x.shape[1:])} do not fit the model's input "
                         f"{tuple(int(d) for d in inp['shape'][1:])}")
    batch = batch_size
    try:
        runner.resize_tensor_input(inp["index"], [batch, *inp["shape"][1:]])
        runner.allocate_tensors()
    except (RuntimeError, ValueError):  # a fixed batch dimension: one example at a time.
        batch = 1
        runner = interpreter(tflite_bytes, num_threads=num_threads)
        runner.allocate_tensors()
    results = []
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - n, *chunk.shape[1:]), np.float32)])
        runner.set_tensor(inp["index"], _quantize(chunk, inp))
        runner.invoke()
        results.append(_dequantize(runner.get_tensor(out["index"]), out)[:n])
    return np.concatenate(results) if results else np.zeros((0,), np.float32)


def verify(tflite_bytes: bytes, data: Dataset | tuple[np.ndarray, np.ndarray] | np.ndarray,
           keras_model: "keras.Model | None" = None, *, max_examples: int | None = None,
           num_threads: int | None = None) -> VerifyReport:
    """Runs the artifact on ``data`` and compares it with ``keras_model``.

    Args:
        tflite_bytes: the flatbuffer (e.g. from :func:`~keras_cnas.export.to_tflite`).
        data: a :class:`~keras_cnas.data.Dataset` (its test split), an ``(x, y)`` pair or
            inputs ``x`` alone (then no accuracies, only the comparison with Keras).
        keras_model: the model it was converted from, to report its accuracy, the top-1
            agreement and the largest output difference; None to test the artifact alone.
        max_examples: run at most this many (the first ones).
        num_threads: interpreter threads.

    Returns:
        A :class:`VerifyReport`. Output differences are measured in probability space: if
        the outputs are logits, both are passed through a softmax first.

    Example:
        >>> import keras_cnas as cnas
        >>> from keras_cnas._keras import keras
        >>> from keras_cnas.export import to_tflite
        >>> data = cnas.data.load("digits")
        >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(10, activation="softmax")])
        >>> report = verify(to_tflite(model, "float16"), data, model)
        >>> report.num_examples, report.agreement > 0.95
        (359, True)
    """
    x, y = _examples(data)
    if max_examples is not None:
        if not is_int(max_examples) or max_examples < 1:
            raise ValueError(f"max_examples: expected a positive integer or None, got "
                             f"{max_examples!r}")
        x = x[:max_examples]
        y = None if y is None else y[:max_examples]
    if len(x) == 0:
        raise ValueError("data: no examples to verify on (an empty test split?); pass (x, y)")
    if y is None and keras_model is None:
        raise ValueError("data: without labels (y) there is nothing to report unless "
                         "keras_model is given to compare with; pass (x, y) or keras_model")
    tflite_out = predict_tflite(tflite_bytes, x, num_threads=num_threads)
    runner = interpreter(tflite_bytes)
    in_dtype = np.dtype(runner.get_input_details()[0]["dtype"]).name
    out_dtype = np.dtype(runner.get_output_details()[0]["dtype"]).name

    keras_out = None
    if keras_model is not None:
        keras_out = np.asarray(keras_model.predict(x, batch_size=256, verbose=0), np.float32)
        if keras_out.shape != tflite_out.shape:
            raise ValueError(f"keras_model: outputs of shape {keras_out.shape} differ from the "
                             f"artifact's {tflite_out.shape}; is it the model that was converted?")
    as_probabilities = _looks_like_probabilities(keras_out if keras_out is not None else tflite_out,
                                                 tolerance=1e-3 if keras_out is not None else 0.05)
    tflite_p = tflite_out if as_probabilities else _softmax(tflite_out)
    tflite_top = tflite_p.argmax(axis=-1)
    report: dict[str, Any] = {"tflite_accuracy": None, "keras_accuracy": None,
                              "agreement": None, "max_abs_diff": None}
    if y is not None:
        report["tflite_accuracy"] = float(np.mean(tflite_top == y))
    if keras_out is not None:
        keras_p = keras_out if as_probabilities else _softmax(keras_out)
        keras_top = keras_p.argmax(axis=-1)
        report["agreement"] = float(np.mean(keras_top == tflite_top))
        report["max_abs_diff"] = float(np.max(np.abs(keras_p - tflite_p)))
        if y is not None:
            report["keras_accuracy"] = float(np.mean(keras_top == y))
    return VerifyReport(num_examples=len(x), input_dtype=in_dtype, output_dtype=out_dtype, **report)


# --- helpers ------------------------------------------------------------------------------


def _examples(data: Any) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(data, Dataset):
        if len(data.y_test) == 0:
            raise ValueError(f"data: dataset {data.name!r} has no test split to verify on; pass "
                             "(x, y), e.g. data.arrays('validation')")
        return data.x_test, data.y_test.astype(np.int64)
    if isinstance(data, tuple) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"data: expected (x, y) with one integer label per example; got "
                             f"{len(x)} examples and labels of shape {y.shape}")
        return x, y.astype(np.int64)
    if isinstance(data, np.ndarray):
        return data, None
    raise ValueError(f"data: expected a keras_cnas Dataset, an (x, y) pair or an array of inputs, "
                     f"got {type(data).__name__}")


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return x
    scale, zero_point = detail["quantization"]
    if not scale:
        raise ValueError(f"tflite_bytes: the {dtype.name} input has no quantization scale")
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return y.copy()
    scale, zero_point = detail["quantization"]
    if not scale:
        return y.astype(np.float32)
    return (y.astype(np.float32) - zero_point) * scale


def _looks_like_probabilities(y: np.ndarray, tolerance: float) -> bool:
    if y.ndim != 2 or y.size == 0:
        return False
    return bool(y.min() >= -tolerance and y.max() <= 1 + tolerance
                and np.all(np.abs(y.sum(axis=-1) - 1) <= max(tolerance, 0.01 * math.sqrt(y.shape[-1]))))


def _softmax(y: np.ndarray) -> np.ndarray:
    e = np.exp(y - y.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
