"""What :func:`~keras_cnas.export.export_model` is asked for (:class:`ExportOptions`) and
what it returns (:class:`ExportReport`), as typed values.

Example:
    >>> ExportOptions("float16", latency_runs=5).quantize
    'float16'
    >>> ExportOptions("int8", max_int8_drop=-1)
    Traceback (most recent call last):
    ...
    ValueError: max_int8_drop: expected accuracy points >= 0 such as 0.5, got -1
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Mapping

from keras_cnas._checks import is_int
from keras_cnas.export.convert import QUANTIZATIONS

__all__ = ["ExportOptions", "ExportReport"]


def _count(name: str, value: Any, low: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not is_int(value) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}{' or None' if allow_none else ''}, "
                         f"got {value!r}")


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """How to export: the artifact, its checks and its measurement.

    Attributes:
        quantize: ``"none"``, ``"float16"``, ``"dynamic"`` or ``"int8"``
            (:func:`~keras_cnas.export.to_tflite`).
        micro: also write the C array and the op resolver and measure the TFLite Micro
            arena; refused for ``"dynamic"`` and ``"float16"`` (Micro cannot run them).
        int8_io: int8 input and output (``"int8"`` only).
        qat: quantization-aware fine-tuning for ``qat_epochs`` before converting.
        qat_epochs: epochs of QAT (also of the fine-tuning ``max_int8_drop`` triggers).
        max_int8_drop: most accuracy points int8 may lose against Keras before QAT is tried
            (the search's export uses ``DEFAULT_MAX_INT8_DROP``); None: no check.
        arena_headroom_bytes: bytes ``kTensorArenaSize`` adds to the measured arena; default
            :func:`~keras_cnas.export.c_array.arena_headroom` (max(1 KiB, 10 %)).
        num_threads: interpreter threads for verification and latency.
        latency_runs, latency_warmup: timed / untimed invocations per latency mode.
        seed: seeds calibration sampling and QAT.
    """

    quantize: str = "int8"
    micro: bool = False
    int8_io: bool = False
    qat: bool = False
    qat_epochs: int = 2
    max_int8_drop: float | None = None
    arena_headroom_bytes: int | None = None
    num_threads: int = 1
    latency_runs: int = 100
    latency_warmup: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.quantize not in QUANTIZATIONS:
            raise ValueError(f"quantize: unknown quantization {self.quantize!r}; known: "
                             f"{', '.join(QUANTIZATIONS)}")
        for name in ("micro", "int8_io", "qat"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        drop = self.max_int8_drop
        if drop is not None and (isinstance(drop, bool) or not isinstance(drop, (int, float))
                                 or not drop >= 0):
            raise ValueError(f"max_int8_drop: expected accuracy points >= 0 such as 0.5, got "
                             f"{drop!r}")
        _count("qat_epochs", self.qat_epochs, 1)
        _count("arena_headroom_bytes", self.arena_headroom_bytes, 0, allow_none=True)
        _count("num_threads", self.num_threads, 1)
        _count("latency_runs", self.latency_runs, 1)
        _count("latency_warmup", self.latency_warmup, 0)
        _count("seed", self.seed, 0)


@dataclasses.dataclass(frozen=True)
class ExportReport(Mapping[str, Any]):
    """What an export measured and wrote (``export.json`` holds :meth:`to_dict`).

    Read it by attribute (``report.tflite_bytes``); it is also a read-only mapping
    (``report["tflite_bytes"]``) with the keys of ``export.json``.

    Attributes:
        quantize, int8_io, micro: the artifact's settings; ``qat`` whether QAT was used
            (asked for, or kept by the int8 check).
        tflite_bytes: the flatbuffer's size.
        arena_bytes: the TFLite Micro arena measured (None unless ``micro``, ``"int8"`` or an
            arena bound); ``arena_bytes_estimate`` the offline replay's figure.
        tensor_arena_size: ``kTensorArenaSize`` written to the C header (``micro`` only).
        input, output: dtype, shape, scale and zero point of the I/O tensors.
        latency_ms: ``{"xnnpack": median, "builtin": median}``; ``latency`` the statistics.
        keras_accuracy, tflite_accuracy, agreement, max_abs_diff, num_examples: the
            verification (None without data).
        int8_check: what ``max_int8_drop`` checked (None without it).
        costs: what was re-checked against ``constraints``.
        files: kind -> path written; out_dir: where.
        sha256: the SHA-256 of the bytes measured, re-checked and written.
        priced: for a search's saved model, the spec's priced ``arena_bytes`` /
            ``tflite_bytes``; ``priced_error`` (measured - priced) only where they differ.
    """

    quantize: str
    int8_io: bool
    qat: bool
    micro: bool
    tflite_bytes: int
    arena_bytes: int | None
    arena_bytes_estimate: int | None
    int8_check: dict[str, Any] | None
    input: dict[str, Any]
    output: dict[str, Any]
    latency_ms: dict[str, float]
    latency: dict[str, Any]
    keras_accuracy: float | None
    tflite_accuracy: float | None
    agreement: float | None
    max_abs_diff: float | None
    num_examples: int | None
    costs: dict[str, float]
    constraints: dict[str, float]
    files: dict[str, str]
    out_dir: str
    tensor_arena_size: int | None = None
    sha256: str | None = None
    priced: dict[str, int] | None = None
    priced_error: dict[str, int] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ExportReport":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """``export.json``'s contents (``tensor_arena_size`` only when written, ``priced_error``
        only when the priced and measured costs differ)."""
        out = dataclasses.asdict(self)
        for optional in ("tensor_arena_size", "priced_error"):
            if out[optional] is None:
                del out[optional]
        return out

    # Mapping view, so that report["tflite_bytes"] reads as export.json does.
    def __getitem__(self, key: str) -> Any:
        if key in ("tensor_arena_size", "priced_error") and getattr(self, key) is None or \
                key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())
