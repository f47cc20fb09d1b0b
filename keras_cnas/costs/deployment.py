"""Deployment costs of a spec: the TFLite Micro arena and the ``.tflite`` size, before training.

Neither cost depends on trained weights, so both are priced from the spec alone:

1. :func:`tflite_graph` derives the graph the TFLite converter emits for the Keras model
   ``keras_cnas.build_model(spec)`` builds, for an :class:`ExportTarget` (full-integer int8
   with float32 or int8 I/O, or float32). What the converter does to our builders, read off
   converted models (``tests/test_deployment.py`` checks it on random specs):

   * BatchNorm folds into the conv before it (which gains an int32 / float32 bias), and a
     ReLU / ReLU6 after a conv, a dense layer or a residual ``Add`` fuses into it;
   * ``MaxPool2D`` -> MAX_POOL_2D, ``Flatten`` -> RESHAPE (with an int32 shape constant),
     ``GlobalAveragePooling2D`` -> MEAN (an int32 axes constant), ``Dense`` ->
     FULLY_CONNECTED, the softmax -> SOFTMAX, ``Add`` -> ADD, grouped convs stay CONV_2D;
   * int8: weights and biases are quantized per output channel (one scale and zero point
     per channel, for dense layers too), activations per tensor; with float32 I/O a
     QUANTIZE op follows the input and a DEQUANTIZE op ends the graph;
   * the non-constant tensors are numbered in execution order (input first, output last),
     which is all the memory planner sees of the numbering.

2. :func:`~keras_cnas.costs.arena.replay_arena` replays TFLite Micro's allocator on that
   graph: ``arena_bytes`` equals ``micro_arena_bytes`` of the converted model, byte for byte.

3. :func:`flatbuffer_bytes` sizes the flatbuffer from the same graph; see its docstring
   for what is exact and what is bounded.

Trained weights matter in one degenerate case only: a dense layer whose bias is exactly
zero (an untrained one) loses its bias tensor in conversion. Specs are priced as trained
networks (non-zero biases).

Pure Python: no TensorFlow, no LiteRT. Pricing a descriptor takes well under a millisecond.

Example:
    >>> from keras_cnas.spaces import ConvLayer, Descriptor
    >>> spec = Descriptor((8, 8, 1), 10, [ConvLayer(8, pool_x=2, pool_y=2, sub_x=2, sub_y=2)])
    >>> costs = deployment_costs(spec)
    >>> sorted(costs)
    ['arena_bytes', 'tflite_bytes']
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from keras_cnas.costs.arena import replay_arena_bytes
from keras_cnas.costs.tflite_graph import ModelView, Operator, Subgraph, Tensor
from keras_cnas.errors import InvalidSpecError
from keras_cnas.registry import Registry

#: ``ExportTarget.quantize`` values the deployment costs model (what TFLite Micro runs).
TARGET_QUANTIZATIONS = ("int8", "none")
#: The costs :func:`deployment_costs` reports.
DEPLOYMENT_COSTS = ("arena_bytes", "tflite_bytes")

Shape = tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class ExportTarget:
    """The export a search prices and measures: ``to_tflite(model, quantize, int8_io=...)``.

    Attributes:
        quantize: ``"int8"`` (full-integer, what a microcontroller runs) or ``"none"``
            (float32).
        int8_io: int8 input and output tensors (int8 only); otherwise they stay float32.

    Example:
        >>> ExportTarget("int8", int8_io=True)
        ExportTarget(quantize='int8', int8_io=True)
    """

    quantize: str = "int8"
    int8_io: bool = False

    def __post_init__(self) -> None:
        if self.quantize not in TARGET_QUANTIZATIONS:
            raise ValueError(
                f"quantize: deployment costs are modelled for {', '.join(TARGET_QUANTIZATIONS)} "
                f"exports (what TensorFlow Lite Micro runs), got {self.quantize!r}")
        if not isinstance(self.int8_io, bool):
            raise ValueError(f"int8_io: expected True or False, got {self.int8_io!r}")
        if self.int8_io and self.quantize != "int8":
            raise ValueError(f"int8_io=True needs quantize='int8' (got {self.quantize!r})")

    def to_dict(self) -> dict[str, object]:
        return {"quantize": self.quantize, "int8_io": self.int8_io}


# --------------------------------------------------------------------------------------
# The graph, op by op.

#: TFLite's fused activation codes (``ActivationFunctionType``).
_NO_ACTIVATION, _RELU, _RELU6 = 0, 1, 3
RELU, RELU6 = _RELU, _RELU6


class GraphBuilder:
    """Records the tensors and operators of one converted graph, in execution order.

    Each method adds the converter's operator(s) for one Keras layer and returns the
    output tensor's index; shapes are ``(h, w, c)`` feature maps or ``(n,)`` vectors.
    """

    def __init__(self, target: ExportTarget, input_shape: tuple[int, ...]):
        self.target = target
        self.int8 = target.quantize == "int8"
        self.tensors: list[Tensor] = []
        self.operators: list[Operator] = []
        io_quantized = target.int8_io
        self.input = self._tensor((1, *input_shape), "INT8" if io_quantized else "FLOAT32",
                                  False, 1 if io_quantized else 0)
        self.x = self.input
        if self.int8 and not io_quantized:
            self.x = self._op("QUANTIZE", [self.input], self._activation((1, *input_shape)))

    # --- tensors and ops -----------------------------------------------------------------

    def _tensor(self, shape: tuple[int, ...], dtype: str, constant: bool, scales: int) -> int:
        index = len(self.tensors)
        self.tensors.append(Tensor(index, "", dtype, tuple(shape), constant, False, scales,
                                   scales))
        return index

    def _activation(self, shape: tuple[int, ...]) -> int:
        return self._tensor(shape, "INT8" if self.int8 else "FLOAT32", False, 1 if self.int8 else 0)

    def _weights(self, shape: tuple[int, ...], channels: int) -> int:
        return self._tensor(shape, "INT8" if self.int8 else "FLOAT32", True,
                            channels if self.int8 else 0)

    def _bias(self, channels: int) -> int:
        return self._tensor((channels,), "INT32" if self.int8 else "FLOAT32", True,
                            channels if self.int8 else 0)

    def _int32_constant(self, n: int) -> int:
        return self._tensor((n,), "INT32", True, 0)

    def _op(self, opcode: str, inputs: list[int], output: int, **options: int) -> int:
        self.operators.append(Operator(len(self.operators), opcode, 0, 1, tuple(inputs),
                                       (output,), (), False, options))
        return output

    def shape(self, index: int) -> tuple[int, ...]:
        return self.tensors[index].shape[1:]

    # --- layers --------------------------------------------------------------------------

    def conv(self, x: int, filters: int, kernel: tuple[int, int], stride: int = 1,
             groups: int = 1, activation: int = _NO_ACTIVATION,
             out_hw: tuple[int, int] | None = None) -> int:
        """Conv2D (+ BatchNorm, + ReLU): one CONV_2D with a (folded) bias; "same" padding
        unless ``out_hw`` gives the output's height and width."""
        h, w, c = self.shape(x)
        weights = self._weights((filters, kernel[0], kernel[1], c // groups), filters)
        bias = self._bias(filters)
        ho, wo = out_hw or (-(-h // stride), -(-w // stride))
        out = self._activation((1, ho, wo, filters))
        return self._op("CONV_2D", [x, weights, bias], out, stride=stride, activation=activation)

    def depthwise(self, x: int, kernel: int | tuple[int, int], stride: int, activation: int,
                  out_hw: tuple[int, int] | None = None) -> int:
        h, w, c = self.shape(x)
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        weights = self._weights((1, kh, kw, c), c)
        bias = self._bias(c)
        ho, wo = out_hw or (-(-h // stride), -(-w // stride))
        out = self._activation((1, ho, wo, c))
        return self._op("DEPTHWISE_CONV_2D", [x, weights, bias], out, stride=stride,
                        activation=activation)

    def pool(self, x: int, pool: tuple[int, int], stride: tuple[int, int],
             opcode: str = "MAX_POOL_2D", out_hw: tuple[int, int] | None = None) -> int:
        """MaxPool2D (or AveragePool2D), "valid" padding unless ``out_hw``; (y, x) pairs."""
        h, w, c = self.shape(x)
        ho, wo = out_hw or ((h - pool[0]) // stride[0] + 1, (w - pool[1]) // stride[1] + 1)
        return self._op(opcode, [x], self._activation((1, ho, wo, c)))

    def max_pool(self, x: int, pool: tuple[int, int], stride: tuple[int, int]) -> int:
        return self.pool(x, pool, stride)

    def add(self, a: int, b: int, activation: int = _NO_ACTIVATION) -> int:
        return self._op("ADD", [a, b], self._activation((1, *self.shape(a))), activation=activation)

    def flatten(self, x: int) -> int:
        n = 1
        for d in self.shape(x):
            n *= d
        return self._op("RESHAPE", [x, self._int32_constant(2)], self._activation((1, n)))

    def global_average_pool(self, x: int) -> int:
        c = self.shape(x)[-1]
        return self._op("MEAN", [x, self._int32_constant(2)], self._activation((1, c)))

    def dense(self, x: int, units: int, activation: int = _NO_ACTIVATION) -> int:
        (n_in,) = self.shape(x)
        weights = self._weights((units, n_in), units)
        bias = self._bias(units)
        return self._op("FULLY_CONNECTED", [x, weights, bias], self._activation((1, units)),
                        activation=activation)

    def softmax(self, x: int) -> int:
        return self._op("SOFTMAX", [x], self._activation((1, *self.shape(x))))

    def finish(self, out: int) -> ModelView:
        """Ends the graph at ``out`` (a DEQUANTIZE first for a float output of an int8 graph)."""
        if self.int8 and not self.target.int8_io:
            out = self._op("DEQUANTIZE", [out], self._tensor((1, *self.shape(out)), "FLOAT32",
                                                              False, 0))
        sg = Subgraph("main", tuple(self.tensors), tuple(self.operators), (self.input,), (out,))
        return ModelView((sg,), ("min_runtime_version", "CONVERSION_METADATA"), 0)

    def classifier(self, x: int, classes: int) -> ModelView:
        """Dense(classes, softmax) and the end of the graph."""
        return self.finish(self.softmax(self.dense(x, classes)))


# --------------------------------------------------------------------------------------
# Our builders, as the converter sees them.

#: Graph derivations by spec ``SPACE`` tag: ``fn(spec, GraphBuilder) -> ModelView``.
GRAPHS: Registry[Callable[..., ModelView]] = Registry("deployment graph")


def _descriptor_graph(spec, g: GraphBuilder) -> ModelView:
    x = g.x
    starts = {s.start for s in spec.skips}
    ends = {s.end: s for s in spec.skips}
    skip_input = x
    for i, layer in enumerate(spec.conv_layers):
        k, fx, fy, px, py, sx, sy, stride = layer
        if i in starts:
            skip_input = x
        if i in ends:
            x = _descriptor_skip_end(spec, g, ends[i], skip_input, x, layer)
        else:
            x = g.conv(x, k, (fy, fx), stride, activation=_RELU)
        if px != 1 or py != 1 or sx != 1 or sy != 1:
            x = g.max_pool(x, (py, px), (sy, sx))
    x = g.global_average_pool(x) if spec.global_pool else g.flatten(x)
    for layer in spec.fc_layers:
        x = g.dense(x, layer.n_hidden, activation=_RELU)
    return g.classifier(x, spec.num_classes)


def _descriptor_skip_end(spec, g: GraphBuilder, skip, skip_input: int, x: int, layer) -> int:
    """The last conv of a skip (BN folded, no ReLU), its shortcut (a 1x1 projection, after
    the main path as Keras runs it) and the ADD that takes the ReLU."""
    y = g.conv(x, layer.n_filters, (layer.filt_y, layer.filt_x), layer.stride)
    shortcut = skip_input
    strides = spec.shortcut(skip)
    if strides is not None:
        shortcut = g.conv(skip_input, layer.n_filters, (1, 1), strides[0],
                          out_hw=g.shape(y)[:2])
    return g.add(y, shortcut, activation=_RELU)


def _blockset_graph(spec, g: GraphBuilder) -> ModelView:
    sk = spec.skeleton
    act = _RELU6 if sk.activation == "relu6" else _RELU
    x = g.conv(g.x, sk.stem_filters, (sk.stem_kernel, sk.stem_kernel), sk.stem_stride,
               activation=act)
    for pos in sk.positions:
        block = spec.block_type(pos.index)
        if block is None:
            if not pos.is_identity_when_empty:  # projection shortcut: 1x1 conv + BN
                x = g.conv(x, pos.c_out, (1, 1), pos.stride)
            continue
        block_input = x
        if block.expansion > 1:
            x = g.conv(x, block.expansion * pos.c_in, (1, 1), groups=block.expand_groups,
                       activation=act)
        x = g.depthwise(x, block.kernel, pos.stride, act)
        x = g.conv(x, pos.c_out, (1, 1), groups=block.project_groups)
        if pos.stride == 1 and pos.c_in == pos.c_out:
            x = g.add(block_input, x)
    if sk.head_filters:
        x = g.conv(x, sk.head_filters, (1, 1), activation=act)
    return g.classifier(g.global_average_pool(x), spec.num_classes)


def _resnet_graph(spec, g: GraphBuilder) -> ModelView:
    x = g.conv(g.x, spec.stage_widths[0], (3, 3), activation=_RELU)
    for _, c_out, mid, stride in spec.blocks():
        y = g.conv(x, mid, (3, 3), stride, activation=_RELU)
        y = g.conv(y, c_out, (3, 3))
        shortcut = x
        if stride != 1 or g.shape(x)[-1] != c_out:
            shortcut = g.conv(x, c_out, (1, 1), stride)
        x = g.add(y, shortcut, activation=_RELU)
    return g.classifier(g.global_average_pool(x), spec.num_classes)


GRAPHS.add("descriptor", _descriptor_graph)
GRAPHS.add("blockset", _blockset_graph)
GRAPHS.add("resnet", _resnet_graph)

#: The longest tensor name each builder's layer names give (a fused conv's, plus a
#: deduplication suffix), e.g. ``descriptor_net/conv_12_relu/Relu;descriptor_net/conv_12_bn/
#: FusedBatchNormV3;descriptor_net/conv_12/Conv2D1`` (106 characters).
NAME_BYTES = {"descriptor": 108, "blockset": 136, "resnet": 132}


def tflite_graph(spec, target: ExportTarget = ExportTarget()) -> ModelView:
    """The graph ``to_tflite(build_model(spec), target.quantize, int8_io=target.int8_io)``
    produces, derived from the spec.

    Raises:
        InvalidSpecError: no graph derivation for the spec's space (the message lists the
            spaces that have one).

    Example:
        >>> from keras_cnas.spaces import ConvLayer, Descriptor
        >>> graph = tflite_graph(Descriptor((8, 8, 1), 10, [ConvLayer(4)]))
        >>> [op.opcode for op in graph.main.operators]
        ['QUANTIZE', 'CONV_2D', 'RESHAPE', 'FULLY_CONNECTED', 'SOFTMAX', 'DEQUANTIZE']
    """
    tag = getattr(spec, "SPACE", None)
    if tag not in GRAPHS:
        raise InvalidSpecError(
            f"spec: no deployment cost model for {type(spec).__name__} (space {tag!r}): its "
            f"arena and flash are measured after training instead; modelled spaces: "
            f"{', '.join(GRAPHS.names())}")
    return GRAPHS.get(tag)(spec, GraphBuilder(target, tuple(spec.input_shape)))


def has_deployment_costs(spec) -> bool:
    """Whether :func:`deployment_costs` can price ``spec``'s space."""
    return getattr(spec, "SPACE", None) in GRAPHS


def deployment_costs(spec, target: ExportTarget = ExportTarget()) -> dict[str, int]:
    """``arena_bytes`` and ``tflite_bytes`` of ``spec`` exported for ``target``.

    ``arena_bytes`` equals ``keras_cnas.export.micro_arena_bytes`` of the converted model;
    ``tflite_bytes`` is :func:`flatbuffer_bytes` of the same graph.
    """
    graph = tflite_graph(spec, target)
    return {"arena_bytes": replay_arena_bytes(graph, checked=True),
            "tflite_bytes": flatbuffer_bytes(graph, NAME_BYTES[spec.SPACE])}


# --------------------------------------------------------------------------------------
# The flatbuffer's size.

#: Per-object sizes of the converter's flatbuffer (tables with their vtable share and
#: worst-case alignment padding), read off converted models; see :func:`flatbuffer_bytes`.
_FIXED_BYTES = 1024        # root, Model table, description, metadata, signature def, subgraph
_TENSOR_BYTES = 40         # Tensor table + its QuantizationParameters table
_BUFFER_BYTES = 12         # Buffer table (an empty one for each non-constant tensor too)
_OPERATOR_BYTES = 48       # Operator table + its builtin options table
_OPCODE_BYTES = 28         # OperatorCode table
def flatbuffer_bytes(graph: ModelView, name_bytes: int = 160) -> int:
    """An upper bound on the size of the converted ``.tflite`` flatbuffer.

    Exact: every constant buffer (weights, int32 / float32 biases, shape and axes
    operands), each 16-byte aligned with its length prefix, and the per-channel
    quantization vectors (a float32 scale and an int64 zero point per channel).
    Bounded: the flatbuffer's tables, vectors and strings. The converter's object order
    (which sets alignment padding) and its tensor names (TensorFlow's fused op names,
    deduplicated with numeric suffixes, shortened for grouped convolutions) are not a
    function of the graph we can reproduce exactly, so each table, vector and string is
    counted at its largest padded size and each name at ``name_bytes``, the longest name
    our builders' layer names give. The bound is never below the measurement (tested on
    random specs of every modelled space, ``tests/test_deployment.py``); its excess is
    reported by ``benchmarks/memory_fidelity.py``.
    """
    sg = graph.main
    total = _FIXED_BYTES
    for t in sg.tensors:
        rank = len(t.shape)
        total += _TENSOR_BYTES + _align(4 + name_bytes + 1, 4) + 4 + 4 * rank + _BUFFER_BYTES
        if not t.is_constant:
            total += 4 + 4 * rank  # shape_signature (batch -1)
        else:
            total += _align(4 + t.nbytes, 16) + 12
        if t.num_scales:
            total += _align(4 + 4 * t.num_scales, 4) + _align(4 + 8 * t.num_scales, 8) + 4
    for op in sg.operators:
        total += _OPERATOR_BYTES + 4 + 4 * len(op.inputs) + 4 + 4 * len(op.outputs)
    total += _OPCODE_BYTES * len({op.opcode for op in sg.operators})
    return total


def _align(n: int, a: int) -> int:
    return -(-n // a) * a


__all__ = ["DEPLOYMENT_COSTS", "ExportTarget", "GRAPHS", "GraphBuilder", "NAME_BYTES",
           "RELU", "RELU6", "TARGET_QUANTIZATIONS",
           "deployment_costs", "flatbuffer_bytes", "has_deployment_costs", "tflite_graph"]
