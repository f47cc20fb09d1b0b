"""The rule of which exports TensorFlow Lite Micro can run (pure Python).

TFLite Micro cannot run a dynamic-range model (float activations meet int8 weights in one
"hybrid" operator) nor a float16 one (float16 weights need a DEQUANTIZE that only takes int8
or int16): such an export has no arena to measure and no C array to ship.
``keras_cnas.export.micro.check_micro_compatible`` finds the same from a flatbuffer.

Example:
    >>> micro_runs("int8"), micro_runs("none"), micro_runs("dynamic")
    (True, True, False)
    >>> MICRO_UNSUPPORTED["float16"]
    'float16-weight (its DEQUANTIZE takes int8/int16 only)'
"""

#: Quantizations TFLite Micro cannot run -> what such a model is, for messages.
MICRO_UNSUPPORTED = {"dynamic": "hybrid (dynamic-range)",
                     "float16": "float16-weight (its DEQUANTIZE takes int8/int16 only)"}


def micro_runs(quantize: str) -> bool:
    """Whether TFLite Micro can run a model exported with ``quantize``."""
    return quantize not in MICRO_UNSUPPORTED


__all__ = ["MICRO_UNSUPPORTED", "micro_runs"]
