"""Latency of a ``.tflite`` artifact in LiteRT, with XNNPACK on and off.

Grouped convolutions are fast with XNNPACK and 4-5x slower with the builtin kernels
(DESIGN.md), so a figure without the mode is misleading: measure both. Timings are wall
clock per ``invoke()`` on this machine, one example per call.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from keras_cnas._checks import is_int
from keras_cnas.export.verify import interpreter

__all__ = ["LatencyReport", "measure_latency", "measure_latency_modes"]


@dataclasses.dataclass(frozen=True)
class LatencyReport:
    """Milliseconds per inference (one example per call).

    Attributes:
        median_ms, p90_ms, mean_ms, min_ms: statistics over ``runs`` timed calls.
        runs, warmup: timed and untimed calls.
        num_threads: interpreter threads.
        xnnpack: whether the XNNPACK delegate was on.
    """

    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    runs: int
    warmup: int
    num_threads: int
    xnnpack: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def measure_latency(tflite_bytes: bytes, num_threads: int = 1, xnnpack: bool = True,
                    runs: int = 100, warmup: int = 10, *, seed: int = 0) -> LatencyReport:
    """Times ``runs`` invocations of the artifact on random inputs after ``warmup`` ones.

    Args:
        tflite_bytes: the flatbuffer.
        num_threads: interpreter threads (1: a phone's single big core, and stable figures).
        xnnpack: True: the default op resolver, which applies the XNNPACK delegate, as
            Android apps do; False: builtin kernels without default delegates
            (``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``).
        runs: timed invocations.
        warmup: untimed invocations first (XNNPACK packs weights on the first call).
        seed: seeds the random input.

    Returns:
        A :class:`LatencyReport` (``median_ms``, ``p90_ms``, ...).

    Example:
        >>> from keras_cnas._keras import keras
        >>> from keras_cnas.export import to_tflite
        >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(10)])
        >>> report = measure_latency(to_tflite(model), xnnpack=False, runs=5, warmup=1)
        >>> report.median_ms > 0, report.xnnpack
        (True, False)
    """
    for name, value, least in (("num_threads", num_threads, 1), ("runs", runs, 1),
                               ("warmup", warmup, 0)):
        if not is_int(value) or value < least:
            raise ValueError(f"{name}: expected an integer >= {least}, got {value!r}")
    if not isinstance(xnnpack, bool):
        raise ValueError(f"xnnpack: expected True or False, got {xnnpack!r}")
    runner = interpreter(tflite_bytes, num_threads=num_threads, xnnpack=xnnpack)
    runner.allocate_tensors()
    rng = np.random.default_rng(seed)
    for detail in runner.get_input_details():
        runner.set_tensor(detail["index"], _random_input(detail, rng))
    for _ in range(warmup):
        runner.invoke()
    times = np.empty(runs)
    clock = time.perf_counter_ns
    for i in range(runs):
        started = clock()
        runner.invoke()
        times[i] = clock() - started
    times /= 1e6
    return LatencyReport(median_ms=float(np.median(times)), p90_ms=float(np.percentile(times, 90)),
                         mean_ms=float(times.mean()), min_ms=float(times.min()), runs=runs,
                         warmup=warmup, num_threads=num_threads, xnnpack=xnnpack)


def measure_latency_modes(tflite_bytes: bytes, num_threads: int = 1, runs: int = 100,
                          warmup: int = 10) -> dict[str, LatencyReport]:
    """``{"xnnpack": ..., "builtin": ...}``: :func:`measure_latency` in both modes."""
    return {mode: measure_latency(tflite_bytes, num_threads, mode == "xnnpack", runs, warmup)
            for mode in ("xnnpack", "builtin")}


def _random_input(detail: dict, rng: np.random.Generator) -> np.ndarray:
    shape, dtype = tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, size=shape).astype(dtype)
    return rng.random(shape).astype(dtype)
