"""The names of the costs measured on a trained model's TFLite artifact (pure Python).

``tflite_bytes`` is the flatbuffer's size, ``arena_bytes`` the smallest TFLite Micro arena
that allocates (the interpreter run in a subprocess), ``latency_ms`` the median LiteRT
latency with XNNPACK on one thread, on the machine running the search. A hard bound on one
of them is checked after training (``KerasEvaluator(measure=...)``, ``tools/search.py``,
``export_model``).

Example:
    >>> "arena_bytes" in MEASURED_COSTS
    True
"""

MEASURED_COSTS = ("tflite_bytes", "arena_bytes", "latency_ms")

__all__ = ["MEASURED_COSTS"]
