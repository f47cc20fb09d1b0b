"""Offline estimate of the TFLite Micro arena a model needs, from its flatbuffer alone.

The replay of TFLite Micro's allocator lives in :mod:`keras_cnas.costs.arena` (pure Python,
below the export layer, so that a spec's arena is priced before anything is built); this
module feeds it the graph read from a ``.tflite`` flatbuffer.

Example:
    >>> estimate_arena_bytes(open("model.tflite", "rb").read())     # doctest: +SKIP
    3144
"""

from __future__ import annotations

from keras_cnas.costs.arena import (
    BUFFER_ALIGNMENT,
    SUPPORTED_OPS,
    ArenaEstimate,
    UnsupportedOpError,
    greedy_plan,
    replay_arena,
    replay_arena_bytes,
)
from keras_cnas.export.flatbuffer import read_model


def estimate_arena(tflite_bytes: bytes) -> ArenaEstimate:
    """The replayed TFLite Micro allocation of a model; see :func:`estimate_arena_bytes`.

    Raises:
        TFLiteFormatError: the bytes are not a readable TFLite flatbuffer.
        UnsupportedOpError: an operator (or feature) whose kernel data the replay does not
            model; the message lists the supported operators.
        ValueError: a tensor with a dynamic shape.
    """
    return replay_arena(read_model(tflite_bytes))


def estimate_arena_bytes(tflite_bytes: bytes) -> int:
    """The smallest TFLite Micro ``arena_size`` this model allocates in, computed offline.

    Replays the flatbuffer's tensor lifetimes through TFLite Micro's greedy memory planner
    and every allocation ``AllocateTensors()`` makes (interpreter structs, kernel data,
    per-channel quantization arrays, temporaries, scratch buffers) with exact alignment, so
    it equals :func:`keras_cnas.export.micro_arena_bytes` — the interpreter's own answer —
    without running TFLite Micro. Milliseconds, pure Python.

    Args:
        tflite_bytes: a ``.tflite`` flatbuffer TFLite Micro can run (int8 or float32).

    Returns:
        Bytes of arena, as the pinned ``tflite-micro`` Python interpreter on 64-bit Linux
        needs them. A firmware build differs by the size of its allocator objects (the
        Python interpreter uses the recording allocator, a few hundred bytes larger) and
        of pointers on a 32-bit target.

    Raises:
        TFLiteFormatError: the bytes are not a readable TFLite flatbuffer.
        UnsupportedOpError: an operator outside :data:`SUPPORTED_OPS` (a
            ``NotImplementedError``): measure it with ``micro_arena_bytes``.

    Example:
        >>> import keras_cnas as cnas                                       # doctest: +SKIP
        >>> flatbuffer = cnas.export.to_tflite(model, "int8", representative_data=x)  # doctest: +SKIP
        >>> cnas.export.estimate_arena_bytes(flatbuffer) == cnas.export.micro_arena_bytes(flatbuffer)  # doctest: +SKIP
        True
    """
    return replay_arena_bytes(read_model(tflite_bytes))


__all__ = ["ArenaEstimate", "BUFFER_ALIGNMENT", "SUPPORTED_OPS", "UnsupportedOpError",
           "estimate_arena", "estimate_arena_bytes", "greedy_plan"]
