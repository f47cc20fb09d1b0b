"""Read-only views of a ``.tflite`` flatbuffer: tensors, operators, subgraphs.

A thin layer over LiteRT's generated schema (``ai_edge_litert.schema_py_generated``) that
the TFLite Micro helpers share: :func:`read_model` checks the buffer, then copies out just
what a memory or compatibility analysis needs (shapes, types, whether a tensor's data lives
in the flatbuffer, the number of quantization scales, operator codes and connections), so
that callers never touch the lazily decoded flatbuffer objects or the weights themselves.

Pure Python: no TensorFlow. Reading a model with thousands of tensors takes milliseconds.

Example:
    >>> model = read_model(open("model.tflite", "rb").read())       # doctest: +SKIP
    >>> [op.opcode for op in model.subgraphs[0].operators]          # doctest: +SKIP
    ['QUANTIZE', 'CONV_2D', 'MAX_POOL_2D', 'RESHAPE', 'FULLY_CONNECTED', 'SOFTMAX', 'DEQUANTIZE']
"""

from __future__ import annotations

import dataclasses
import math
import struct
from typing import Any, Mapping

from keras_cnas.errors import KerasCnasError

#: The file identifier of a TFLite flatbuffer (bytes 4-7).
FILE_IDENTIFIER = b"TFL3"


class TFLiteFormatError(KerasCnasError, ValueError):
    """The bytes are not a readable TFLite flatbuffer (truncated, corrupt or another format)."""


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated  # a dependency of keras_cnas; no TF.

    return schema_py_generated


def _enum_names(enum_class: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}


#: Bytes per element as TFLite Micro counts them (``TfLiteTypeSizeOf``): int4 tensors are
#: unpacked to one byte per element in the arena. Types TFLite Micro cannot size are absent.
TYPE_SIZES = {
    "FLOAT32": 4, "FLOAT16": 2, "BFLOAT16": 2, "FLOAT64": 8, "INT32": 4, "UINT32": 4,
    "INT16": 2, "UINT16": 2, "INT8": 1, "UINT8": 1, "INT64": 8, "UINT64": 8, "BOOL": 1,
    "RESOURCE": 4, "COMPLEX64": 8, "COMPLEX128": 16, "INT4": 1,
}


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One tensor of a subgraph.

    Attributes:
        index: its position in the subgraph's tensor list.
        name: the converter's name (layer names survive conversion).
        dtype: the schema's type name, e.g. ``"INT8"``, ``"FLOAT32"``.
        shape: the static shape (``()`` for a scalar).
        is_constant: its data is stored in the flatbuffer (weights, biases, shape
            operands); TFLite Micro plans arena memory only for the others.
        is_variable: a variable (state) tensor.
        num_scales: the number of quantization scales (0: not quantized, 1: per tensor,
            more: per channel).
        num_zero_points: the number of quantization zero points.
        scale: the first quantization scale (0.0 when not quantized).
        zero_point: the first quantization zero point (0 when not quantized).
    """

    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    is_constant: bool
    is_variable: bool
    num_scales: int
    num_zero_points: int
    scale: float = 0.0
    zero_point: int = 0

    @property
    def num_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of its data as TFLite Micro sizes it; a KeyError for an unsizable type."""
        return self.num_elements * TYPE_SIZES[self.dtype]

    @property
    def is_quantized(self) -> bool:
        """Whether it carries affine quantization parameters (as TFLite Micro reads them)."""
        return self.num_scales > 0 and self.num_zero_points > 0


@dataclasses.dataclass(frozen=True)
class Operator:
    """One operator of a subgraph.

    Attributes:
        index: its position in the execution order.
        opcode: the builtin operator's name (``"CONV_2D"``), or the custom code.
        builtin_code: the builtin operator's number (32 for a custom operator).
        version: the operator version the converter asked for.
        inputs: tensor indices; -1 marks an omitted optional input (e.g. no bias).
        outputs: tensor indices.
        intermediates: tensor indices of intermediate tensors (quantized LSTMs).
        is_custom: a custom operator.
        options: the scalar fields of its builtin options (``{"beta": 1.0}`` for SOFTMAX,
            ``{"stride_w": 2, ...}`` for CONV_2D); empty when it has none.
    """

    index: int
    opcode: str
    builtin_code: int
    version: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    intermediates: tuple[int, ...]
    is_custom: bool
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Subgraph:
    """A subgraph: its tensors, operators (in execution order), inputs and outputs."""

    name: str
    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ModelView:
    """What :func:`read_model` extracts from a flatbuffer.

    Attributes:
        subgraphs: the subgraphs; the first is the one an interpreter runs.
        metadata: names of the metadata entries (e.g. ``"min_runtime_version"``).
        num_bytes: the size of the flatbuffer.
    """

    subgraphs: tuple[Subgraph, ...]
    metadata: tuple[str, ...]
    num_bytes: int

    @property
    def main(self) -> Subgraph:
        """The first subgraph, the one an interpreter invokes."""
        return self.subgraphs[0]


def read_model(tflite_bytes: bytes) -> ModelView:
    """Reads the structure of a TFLite flatbuffer.

    Args:
        tflite_bytes: the ``.tflite`` file's contents.

    Returns:
        A :class:`ModelView` (no weight data is copied).

    Raises:
        TFLiteFormatError: not bytes, too short, not a TFLite flatbuffer (identifier
            ``TFL3``), or a truncated or corrupt one (offsets out of range, operators that
            name tensors or operator codes that do not exist, no subgraph).
    """
    if not isinstance(tflite_bytes, (bytes, bytearray, memoryview)):
        raise TFLiteFormatError(
            f"tflite_bytes: expected the bytes of a .tflite flatbuffer, got "
            f"{type(tflite_bytes).__name__}")
    buf = bytes(tflite_bytes)
    if len(buf) < 8 or buf[4:8] != FILE_IDENTIFIER:
        raise TFLiteFormatError(
            f"tflite_bytes: not a TFLite flatbuffer ({len(buf)} bytes; expected the file "
            f"identifier {FILE_IDENTIFIER!r} at bytes 4-7, got {buf[4:8]!r}); pass the output "
            "of TFLiteConverter.convert() or keras_cnas.export.to_tflite")
    try:
        return _read(buf)
    except TFLiteFormatError:
        raise
    except (IndexError, struct.error, ValueError, TypeError, AttributeError, OverflowError,
            UnicodeDecodeError) as e:
        raise TFLiteFormatError(
            f"tflite_bytes: a corrupt or truncated TFLite flatbuffer ({len(buf)} bytes): "
            f"{type(e).__name__}: {e}") from e


def _check_root(buf: bytes) -> None:
    root = struct.unpack_from("<I", buf, 0)[0]
    if not 8 <= root <= len(buf) - 4:
        raise TFLiteFormatError(
            f"tflite_bytes: a corrupt TFLite flatbuffer: the root table offset {root} lies "
            f"outside the {len(buf)} bytes")


def _read(buf: bytes) -> ModelView:
    _check_root(buf)
    schema = _schema()
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    model = schema.Model.GetRootAs(buf, 0)
    num_buffers = model.BuffersLength()
    buffer_sizes = [model.Buffers(i).DataLength() if model.Buffers(i) is not None else 0
                    for i in range(num_buffers)]
    opcodes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        name = (custom.decode("utf-8", "replace") if custom
                else op_names.get(builtin, f"BUILTIN_{builtin}"))
        opcodes.append((name, builtin, code.Version(), bool(custom)))
    if model.SubgraphsLength() < 1:
        raise TFLiteFormatError("tflite_bytes: the flatbuffer has no subgraph")
    subgraphs = []
    for g in range(model.SubgraphsLength()):
        subgraphs.append(_read_subgraph(model.Subgraphs(g), g, buffer_sizes, opcodes,
                                        type_names))
    metadata = tuple((model.Metadata(i).Name() or b"").decode("utf-8", "replace")
                     for i in range(model.MetadataLength()))
    return ModelView(tuple(subgraphs), metadata, len(buf))


def _options(op: Any) -> dict[str, Any]:
    """The scalar fields of an operator's builtin options, via the schema's object API."""
    schema = _schema()
    kind = op.BuiltinOptionsType()
    table = op.BuiltinOptions()
    if not kind or table is None:
        return {}
    options = schema.BuiltinOptionsCreator(kind, table)
    if options is None:
        return {}
    return {k: v for k, v in vars(options).items() if isinstance(v, (bool, int, float))}


def _ints(vector_length: int, get) -> tuple[int, ...]:
    return tuple(int(get(i)) for i in range(vector_length))


def _read_subgraph(sg: Any, g: int, buffer_sizes: list[int], opcodes: list[tuple],
                   type_names: dict[int, str]) -> Subgraph:
    tensors = []
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        b = t.Buffer()
        if not 0 <= b < max(len(buffer_sizes), 1):
            raise TFLiteFormatError(
                f"tflite_bytes: subgraph {g} tensor {i} refers to buffer {b}, but the "
                f"flatbuffer has {len(buffer_sizes)}")
        q = t.Quantization()
        num_scales = q.ScaleLength() if q is not None else 0
        num_zero_points = q.ZeroPointLength() if q is not None else 0
        scale = float(q.Scale(0)) if num_scales else 0.0
        zero_point = int(q.ZeroPoint(0)) if num_zero_points else 0
        shape = _ints(t.ShapeLength(), t.Shape)
        dtype = type_names.get(t.Type(), f"TYPE_{t.Type()}")
        tensors.append(Tensor(i, (t.Name() or b"").decode("utf-8", "replace"), dtype, shape,
                              bool(buffer_sizes and buffer_sizes[b] > 0), bool(t.IsVariable()),
                              num_scales, num_zero_points, scale, zero_point))
    n = len(tensors)

    def check(indices: tuple[int, ...], what: str, optional: bool) -> tuple[int, ...]:
        for k in indices:
            if not (0 <= k < n or (optional and k == -1)):
                raise TFLiteFormatError(
                    f"tflite_bytes: subgraph {g} {what} refers to tensor {k}, but the "
                    f"subgraph has {n} tensors")
        return indices

    operators = []
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        k = op.OpcodeIndex()
        if not 0 <= k < len(opcodes):
            raise TFLiteFormatError(
                f"tflite_bytes: subgraph {g} operator {i} uses operator code {k}, but the "
                f"flatbuffer has {len(opcodes)}")
        name, builtin, version, custom = opcodes[k]
        where = f"operator {i} ({name})"
        operators.append(Operator(
            i, name, builtin, version,
            check(_ints(op.InputsLength(), op.Inputs), where + " input", True),
            check(_ints(op.OutputsLength(), op.Outputs), where + " output", False),
            check(_ints(op.IntermediatesLength(), op.Intermediates), where + " intermediate",
                  False),
            custom, _options(op)))
    return Subgraph((sg.Name() or b"").decode("utf-8", "replace"), tuple(tensors),
                    tuple(operators),
                    check(_ints(sg.InputsLength(), sg.Inputs), "input", False),
                    check(_ints(sg.OutputsLength(), sg.Outputs), "output", False))


__all__ = ["FILE_IDENTIFIER", "ModelView", "Operator", "Subgraph", "TFLiteFormatError", "TYPE_SIZES",
           "Tensor", "read_model"]
