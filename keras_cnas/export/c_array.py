"""C++ sources a TensorFlow Lite Micro firmware includes: the flatbuffer as an array (what
``xxd -i`` gives, plus the alignment TFLite Micro wants), with the tensor arena size and the
input / output quantization as constants, and the op resolver for exactly the model's ops.

Example:
    >>> header, source = to_c_array(b"\\x1c\\x00\\x00\\x00TFL3", name="tiny")
    >>> print(header.splitlines()[3])
    #ifndef TINY_H_
    >>> print(source.splitlines()[-1])
    const unsigned int tiny_len = 8;
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from keras_cnas._checks import is_int
from keras_cnas.export.flatbuffer import FILE_IDENTIFIER, TFLiteFormatError, read_model

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: C and C++ keywords, which cannot name an array.
_RESERVED = frozenset("""
alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t
char32_t class compl concept const consteval constexpr constinit const_cast continue co_await
co_return co_yield decltype default delete do double dynamic_cast else enum explicit export
extern false float for friend goto if inline int long mutable namespace new noexcept not not_eq
nullptr operator or or_eq private protected public register reinterpret_cast requires restrict
return short signed sizeof static static_assert static_cast struct switch template this
thread_local throw true try typedef typeid typename union unsigned using virtual void volatile
wchar_t while xor xor_eq _Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary
_Noreturn _Static_assert _Thread_local
""".split())
_BYTES_PER_LINE = 12


#: The arena headroom :func:`tensor_arena_size` adds to the measured arena: at least 1 KiB,
#: or 10 % of the measurement. The measurement runs TFLite Micro's reference kernels on this
#: 64-bit host; a target's optimized kernels (CMSIS-NN, ESP-NN) may request scratch buffers
#: the reference ones do not. The headroom is a margin, not a guarantee: check
#: ``interpreter.arena_used_bytes()`` on the target once.
ARENA_HEADROOM_MIN_BYTES = 1024
ARENA_HEADROOM_FRACTION = 0.10


def arena_headroom(measured_bytes: int) -> int:
    """The headroom for a measured arena (see :data:`ARENA_HEADROOM_FRACTION`), a multiple of 16.

    Example:
        >>> arena_headroom(15_872), arena_headroom(100_000)
        (1600, 10000)
    """
    raw = max(ARENA_HEADROOM_MIN_BYTES, math.ceil(ARENA_HEADROOM_FRACTION * measured_bytes))
    return -(-raw // 16) * 16


def tensor_arena_size(measured_bytes: int, headroom_bytes: int | None = None) -> int:
    """``kTensorArenaSize``: the measured arena plus the headroom, rounded up to 16 bytes."""
    headroom = arena_headroom(measured_bytes) if headroom_bytes is None else headroom_bytes
    if not is_int(headroom) or headroom < 0:
        raise ValueError(f"arena_headroom_bytes: expected a whole number of bytes >= 0, got "
                         f"{headroom_bytes!r}")
    return -(-(int(measured_bytes) + headroom) // 16) * 16


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """The model's input or output as a firmware sees it: type, shape and quantization
    (``real = scale * (q - zero_point)``; scale 0 for a float tensor)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    scale: float
    zero_point: int

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape),
                "scale": self.scale, "zero_point": self.zero_point}


def io_tensors(tflite_bytes: bytes) -> tuple[TensorInfo, TensorInfo]:
    """The (first) input and output of the model's main subgraph."""
    graph = read_model(tflite_bytes).main

    def info(index: int) -> TensorInfo:
        t = graph.tensors[index]
        return TensorInfo(t.name, t.dtype, tuple(t.shape), t.scale if t.is_quantized else 0.0,
                          t.zero_point if t.is_quantized else 0)

    return info(graph.inputs[0]), info(graph.outputs[0])


def resolver_method(opcode: str) -> str:
    """The ``MicroMutableOpResolver`` method that registers ``opcode``, by the rule of TFLite
    Micro's ``generate_micro_mutable_op_resolver_from_model.py``.

    Example:
        >>> [resolver_method(op) for op in ("CONV_2D", "FULLY_CONNECTED", "RELU6", "MAX_POOL_2D")]
        ['AddConv2D', 'AddFullyConnected', 'AddRelu6', 'AddMaxPool2D']
    """
    parts = re.split("_|-", opcode.replace("TFLite", ""))
    name = "".join(p[0].upper() + p[1:].lower() if len(p) > 1 and p[0].isalpha() else p.upper()
                   for p in parts if p)
    return "Add" + name.replace("Lstm", "LSTM").replace("BatchMatmul", "BatchMatMul")


def model_opcodes(tflite_bytes: bytes) -> list[str]:
    """The distinct operators of every subgraph, in order of first use."""
    ops = [op.opcode for g in read_model(tflite_bytes).subgraphs for op in g.operators]
    return list(dict.fromkeys(ops))


def op_resolver_header(tflite_bytes: bytes, name: str = "model_data") -> str:
    """A header defining ``<Name>OpResolver`` (``tflite::MicroMutableOpResolver<N>`` for
    exactly the model's N operators) and ``Register<Name>Ops(resolver)``.

    Custom operators are refused: TFLite Micro registers them by hand.

    Example:
        >>> print(op_resolver_header(open("model.tflite", "rb").read()))  # doctest: +SKIP
    """
    _check_name(name)
    graph_ops = model_opcodes(tflite_bytes)
    custom = [op for op in graph_ops if op == "CUSTOM" or not op.isupper()]
    if custom:
        raise ValueError(f"tflite_bytes: custom operator(s) {custom}: register them by hand; "
                         "keras_cnas generates resolvers for builtin operators only")
    camel = "".join(p[:1].upper() + p[1:] for p in name.split("_"))
    guard = re.sub(r"\W", "_", name.upper()) + "_OPS_H_"
    adds = "\n".join(f"  if (resolver.{resolver_method(op)}() != kTfLiteOk) return kTfLiteError;"
                      for op in graph_ops)
    return (f"// Generated by keras_cnas.export.op_resolver_header: the TFLite Micro op resolver\n"
            f"// for exactly the {len(graph_ops)} operators of {name} "
            f"({', '.join(graph_ops)}).\n\n"
            f"#ifndef {guard}\n#define {guard}\n\n"
            "#include \"tensorflow/lite/micro/micro_mutable_op_resolver.h\"\n\n"
            f"constexpr int k{camel}NumOps = {len(graph_ops)};\n"
            f"using {camel}OpResolver = tflite::MicroMutableOpResolver<k{camel}NumOps>;\n\n"
            f"// Adds every operator the model uses; kTfLiteError if one cannot be added.\n"
            f"inline TfLiteStatus Register{camel}Ops({camel}OpResolver& resolver) {{\n"
            f"{adds}\n  return kTfLiteOk;\n}}\n\n#endif  // {guard}\n")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _IDENTIFIER.match(name) or name in _RESERVED:
        raise ValueError(
            f"name: {name!r} is not a valid C identifier (letters, digits and underscores, not "
            "starting with a digit, not a C/C++ keyword); use e.g. name='model_data'")


def _io_constants(tflite_bytes: bytes) -> str:
    lines = []
    for kind, t in zip(("Input", "Output"), io_tensors(tflite_bytes)):
        what = (f"{t.dtype.lower()} {list(t.shape)}, real = scale * (q - zero_point)"
                if t.scale else f"{t.dtype.lower()} {list(t.shape)}, not quantized")
        lines += [f"// {kind}: {what}",
                  f"constexpr int k{kind}Elements = {t.elements};",
                  f"constexpr float k{kind}Scale = {t.scale!r}f;",
                  f"constexpr int k{kind}ZeroPoint = {t.zero_point};"]
    return "\n".join(lines) + "\n"


def to_c_array(tflite_bytes: bytes, name: str = "model_data", *,
               header_name: str | None = None, arena_bytes: int | None = None,
               arena_headroom_bytes: int | None = None) -> tuple[str, str]:
    """A header and a source file that embed a TFLite flatbuffer in a TFLite Micro project.

    The header declares ``extern const unsigned char <name>[];`` and
    ``extern const unsigned int <name>_len;`` inside an include guard; the source includes
    the header and defines ``alignas(16) const unsigned char <name>[] = {0x.., ...};`` and
    ``const unsigned int <name>_len = N;`` (TFLite Micro reads the model in place, so the
    array is 16-byte aligned like the tensors in it). Both are C++ (``-std=c++11`` or later),
    as TFLite Micro is. Load the model with ``tflite::GetModel(<name>)``.

    The header also carries the model's input and output as constants (``kInputElements``,
    ``kInputScale``, ``kInputZeroPoint``, the same for ``kOutput...``; scale 0 for float
    tensors) and, given the measured ``arena_bytes``, ``kTensorArenaSize`` (the measurement
    plus :func:`arena_headroom`, a multiple of 16).

    Args:
        tflite_bytes: the ``.tflite`` flatbuffer.
        name: the array's name, a C identifier (not a keyword); ``<name>_len`` holds its
            length.
        header_name: the file name the source includes; default ``"<name>.h"``.
        arena_bytes: the measured TFLite Micro arena; None: no ``kTensorArenaSize``.
        arena_headroom_bytes: added to ``arena_bytes``; default :func:`arena_headroom`.

    Returns:
        ``(header, source)`` as text, for ``<name>.h`` and ``<name>.cc``.

    Raises:
        ValueError: ``name`` is not a valid C identifier or is a keyword, or
            ``header_name`` is empty or contains a quote or a newline.
        TFLiteFormatError: ``tflite_bytes`` is not bytes or lacks the TFLite file
            identifier (a ValueError).

    Example:
        >>> header, source = to_c_array(open("model.tflite", "rb").read())  # doctest: +SKIP
        >>> open("model_data.h", "w").write(header)                          # doctest: +SKIP
        >>> open("model_data.cc", "w").write(source)                         # doctest: +SKIP
    """
    _check_name(name)
    if header_name is None:
        header_name = f"{name}.h"
    if not isinstance(header_name, str) or not header_name or any(c in header_name for c in '"\n\r'):
        raise ValueError(f"header_name: expected a file name such as 'model_data.h', got "
                         f"{header_name!r}")
    if not isinstance(tflite_bytes, (bytes, bytearray, memoryview)):
        raise TFLiteFormatError(f"tflite_bytes: expected the bytes of a .tflite flatbuffer, got "
                                f"{type(tflite_bytes).__name__}")
    data = bytes(tflite_bytes)
    if data[4:8] != FILE_IDENTIFIER:
        raise TFLiteFormatError(
            f"tflite_bytes: not a TFLite flatbuffer ({len(data)} bytes; expected the file "
            f"identifier {FILE_IDENTIFIER!r} at bytes 4-7, got {data[4:8]!r})")
    guard = re.sub(r"\W", "_", name.upper()) + "_H_"
    banner = ("// Generated by keras_cnas.export.to_c_array: a TFLite model for TensorFlow Lite "
              "Micro.\n")
    arena = ""
    if arena_bytes is not None:
        size = tensor_arena_size(arena_bytes, arena_headroom_bytes)
        arena = (f"// TFLite Micro tensor arena: {int(arena_bytes):,} bytes measured on this "
                 f"model + {size - int(arena_bytes):,} bytes headroom\n"
                 "// (optimized kernels' scratch buffers; check arena_used_bytes() on the "
                 "target).\n"
                 f"constexpr int kTensorArenaSize = {size};\n\n")
    try:
        io = _io_constants(data)
    except TFLiteFormatError:  # bytes with the identifier but no readable graph (tests)
        io = "// Input / output: the flatbuffer's graph could not be read.\n"
    header = (f"{banner}// Load it with tflite::GetModel({name}).\n\n"
              f"#ifndef {guard}\n#define {guard}\n\n"
              f"extern const unsigned char {name}[];\n"
              f"extern const unsigned int {name}_len;\n\n"
              f"{arena}{io}\n"
              f"#endif  // {guard}\n")
    hexes = [f"0x{b:02x}" for b in data]
    lines = [", ".join(hexes[i:i + _BYTES_PER_LINE]) + ","
             for i in range(0, len(hexes), _BYTES_PER_LINE)]
    body = "\n".join("    " + line for line in lines)
    source = (f"{banner}\n#include \"{header_name}\"\n\n"
              "// TFLite Micro reads the flatbuffer in place: keep it 16-byte aligned.\n"
              f"alignas(16) const unsigned char {name}[] = {{\n{body}\n}};\n"
              f"const unsigned int {name}_len = {len(data)};\n")
    return header, source


__all__ = ["ARENA_HEADROOM_FRACTION", "ARENA_HEADROOM_MIN_BYTES", "TensorInfo", "arena_headroom",
           "io_tensors", "model_opcodes", "op_resolver_header", "resolver_method",
           "tensor_arena_size", "to_c_array"]
