"""The quantization names of an export (pure Python): ``to_tflite(quantize=)``,
``export_model``, ``KerasEvaluator(export_quantize=)``, ``--export`` / ``--quantize``.

``"none"`` is float32, ``"float16"`` float16 weights, ``"dynamic"`` dynamic-range (int8
weights, float activations), ``"int8"`` full-integer with a representative set. Which of
them TFLite Micro runs is :mod:`keras_cnas.costs.micro_support`'s rule.

Example:
    >>> QUANTIZATIONS
    ('none', 'float16', 'dynamic', 'int8')
"""

QUANTIZATIONS = ("none", "float16", "dynamic", "int8")

__all__ = ["QUANTIZATIONS"]
