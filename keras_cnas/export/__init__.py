"""Export to TFLite: float / float16 / dynamic-range / int8 (+ QAT), verification in LiteRT,
latency with XNNPACK on and off, TFLite Micro arena and C arrays, and the full export of a
saved model with the hard-bound re-check.

Importing this package loads neither TensorFlow nor LiteRT; they are loaded on first use.
The TFLite Micro helpers (``micro_arena_bytes``, ``check_micro_compatible``, ``MicroError``,
``estimate_arena_bytes``, ``to_c_array``) are imported on first access.

Example:
    >>> import keras_cnas as cnas                                       # doctest: +SKIP
    >>> data = cnas.data.load("digits")                                 # doctest: +SKIP
    >>> flatbuffer = cnas.export.to_tflite(model, "int8", representative_data=data)  # doctest: +SKIP
    >>> cnas.export.verify(flatbuffer, data, model).to_dict()           # doctest: +SKIP
    {'num_examples': 359, 'tflite_accuracy': 0.97..., 'keras_accuracy': 0.97..., ...}
    >>> options = cnas.export.ExportOptions("int8", micro=True)          # doctest: +SKIP
    >>> cnas.export.export_model("runs/x/best", "runs/x/best", options, data).tflite_bytes  # doctest: +SKIP
"""

from __future__ import annotations

from keras_cnas._lazy import lazy_attributes
from keras_cnas.export.artifact import (
    DEFAULT_MAX_INT8_DROP,
    MEASURED_COSTS,
    ExportConstraintError,
    ExportOptions,
    ExportReport,
    export_model,
    load_saved_model,
    measure_costs,
)
from keras_cnas.export.convert import QUANTIZATIONS, quiet_conversion, strip_wrappers, to_tflite
from keras_cnas.export.latency import LatencyReport, measure_latency, measure_latency_modes
from keras_cnas.export.verify import VerifyReport, predict_tflite, verify

# name -> module, imported on first access (written separately; tflite-micro is optional).
_LAZY = {
    "MicroError": "keras_cnas.export.micro",
    "check_micro_compatible": "keras_cnas.export.micro",
    "micro_arena_bytes": "keras_cnas.export.micro",
    "estimate_arena_bytes": "keras_cnas.export.arena",
    "to_c_array": "keras_cnas.export.c_array",
    "op_resolver_header": "keras_cnas.export.c_array",
    "arena_headroom": "keras_cnas.export.c_array",
    "io_tensors": "keras_cnas.export.c_array",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "DEFAULT_MAX_INT8_DROP", "arena_headroom", "io_tensors", "op_resolver_header",
    "quiet_conversion", "MEASURED_COSTS", "QUANTIZATIONS", "ExportConstraintError", "ExportOptions", "ExportReport", "LatencyReport", "MicroError",
    "VerifyReport", "check_micro_compatible", "estimate_arena_bytes", "export_model",
    "load_saved_model", "measure_costs", "measure_latency", "measure_latency_modes",
    "micro_arena_bytes", "predict_tflite", "strip_wrappers", "to_c_array", "to_tflite", "verify",
]
