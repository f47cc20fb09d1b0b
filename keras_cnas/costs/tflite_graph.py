"""The graph TFLite Micro runs, as plain data: tensors, operators, subgraphs.

Two sources fill these records: :func:`keras_cnas.export.flatbuffer.read_model` reads them
from a converted ``.tflite`` flatbuffer, and :mod:`keras_cnas.costs.deployment` derives them
from a spec (the graph the converter emits for our builders), so that the arena replay
(:mod:`keras_cnas.costs.arena`) prices a converted model and an untrained spec alike.

Pure Python: no TensorFlow, no LiteRT.

Example:
    >>> t = Tensor(0, "input", "INT8", (1, 8, 8, 1), False, False, 1, 1)
    >>> t.nbytes, t.is_quantized
    (64, True)
"""

from __future__ import annotations

import dataclasses
import math
import types
from typing import Any, Mapping, NamedTuple


#: Bytes per element as TFLite Micro counts them (``TfLiteTypeSizeOf``): int4 tensors are
#: unpacked to one byte per element in the arena. Types TFLite Micro cannot size are absent.
TYPE_SIZES = {
    "FLOAT32": 4, "FLOAT16": 2, "BFLOAT16": 2, "FLOAT64": 8, "INT32": 4, "UINT32": 4,
    "INT16": 2, "UINT16": 2, "INT8": 1, "UINT8": 1, "INT64": 8, "UINT64": 8, "BOOL": 1,
    "RESOURCE": 4, "COMPLEX64": 8, "COMPLEX128": 16, "INT4": 1,
}


class Tensor(NamedTuple):
    """One tensor of a subgraph (a named tuple: pricing creates thousands a second).

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


_NO_OPTIONS: Mapping[str, Any] = types.MappingProxyType({})


class Operator(NamedTuple):
    """One operator of a subgraph (a named tuple).

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
    options: Mapping[str, Any] = _NO_OPTIONS


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
        num_bytes: the size of the flatbuffer (0 for a graph derived from a spec).
        output_name: the serving signature's output name (the Keras output layer's), when
            known.
        shared_buffers: constant tensors (of the first subgraph) whose data equals an earlier
            constant's: the converter stores it once and leaves their own buffers empty.
        constant_order: the first subgraph's constant tensors in the order the converter
            stores them, for a derived graph whose order is not the default of
            :func:`keras_cnas.costs.deployment.packed_model`; empty otherwise.
    """

    subgraphs: tuple[Subgraph, ...]
    metadata: tuple[str, ...]
    num_bytes: int
    output_name: str = ""
    shared_buffers: frozenset[int] = frozenset()
    constant_order: tuple[int, ...] = ()

    @property
    def main(self) -> Subgraph:
        """The first subgraph, the one an interpreter invokes."""
        return self.subgraphs[0]


__all__ = ["ModelView", "Operator", "Subgraph", "TYPE_SIZES", "Tensor"]
