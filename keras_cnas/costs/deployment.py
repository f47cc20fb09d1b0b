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
     which is all the memory planner sees of the numbering;
   * ENAS cell networks (:mod:`keras_cnas.costs.enas_graph`): the ops run in TensorFlow's
     import order (reverse post order of a name-ordered depth-first search), equal
     weight-free ops are merged, a ReLU before a conv stays a RELU op unless it is its
     producer's only reader (then it fuses into the conv, ``ADD`` or BatchNorm before it),
     ``SeparableConv2D`` -> DEPTHWISE_CONV_2D (zero bias) + CONV_2D, the pixel shift ->
     PAD + STRIDED_SLICE, ``Concatenate`` -> CONCATENATION, a BatchNorm after a concat ->
     MUL + ADD, pooling -> AVERAGE_POOL_2D / MAX_POOL_2D with "same" padding; equal
     constant data (zero biases) is stored once.

2. :func:`~keras_cnas.costs.arena.replay_arena` replays TFLite Micro's allocator on that
   graph: ``arena_bytes`` equals ``micro_arena_bytes`` of the converted model, byte for byte.

3. :func:`converted_bytes` sizes the flatbuffer from the same graph, exactly: the graph
   carries the tensor names TensorFlow gives our builders' layers, the operator versions
   and options, and :mod:`keras_cnas.costs.flatbuffer_size` replays the converter's final
   ``ModelT.Pack`` (``tflite_bytes`` equals ``len(flatbuffer)``). For a user's Keras model
   (``compression.model_costs``), whose names are not derived, :func:`flatbuffer_bytes`
   is an upper bound instead.

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
import functools
import math
from typing import Callable

from keras_cnas.costs.arena import replay_arena_bytes
from keras_cnas.costs.enas_graph import enas_graph
from keras_cnas.costs.flatbuffer_size import (
    KeyedObjects,
    PackedModel,
    PackedOperator,
    PackedTensor,
    packed_model_bytes,
)
from keras_cnas.costs.tflite_graph import TYPE_SIZES, ModelView, Operator, Subgraph, Tensor
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

_new = tuple.__new__

#: TFLite's fused activation codes (``ActivationFunctionType``).
_NO_ACTIVATION, _RELU, _RELU6 = 0, 1, 3
RELU, RELU6 = _RELU, _RELU6

#: ``BuiltinOperator`` codes and the operator version the converter (TF 2.21) writes for an
#: int8 and a float32 graph, read off converted models (grouped convolutions: version 6).
_OPCODES = {
    "ADD": (0, 2, 1), "CONV_2D": (3, 3, 1), "DEPTHWISE_CONV_2D": (4, 3, 1),
    "DEQUANTIZE": (6, 2, 2), "FULLY_CONNECTED": (9, 4, 1), "MAX_POOL_2D": (17, 2, 1),
    "AVERAGE_POOL_2D": (1, 2, 1), "RESHAPE": (22, 1, 1), "SOFTMAX": (25, 2, 1),
    "MEAN": (40, 2, 1), "QUANTIZE": (114, 1, 1),
    # The ENAS cell's (costs/enas_graph.py).
    "RELU": (19, 2, 1), "PAD": (34, 2, 1), "STRIDED_SLICE": (45, 2, 1), "MUL": (18, 2, 1),
    "CONCATENATION": (2, 2, 1),
}
_GROUPED_CONV_VERSION = 6
_CONV_CODE = _OPCODES["CONV_2D"][0]


class GraphBuilder:
    """Records the tensors and operators of one converted graph, in execution order.

    Each method adds the converter's operator(s) for one Keras layer and returns the
    output tensor's index; shapes are ``(h, w, c)`` feature maps or ``(n,)`` vectors.
    The ``name`` arguments are the tensor names the converter gives (TensorFlow's op
    names, fused ones joined by ``;``); they only matter for :func:`converted_bytes`.
    """

    def __init__(self, target: ExportTarget, input_shape: tuple[int, ...],
                 input_name: str = "input"):
        self.target = target
        self.int8 = target.quantize == "int8"
        self.tensors: list[Tensor] = []
        self.operators: list[Operator] = []
        # name -> times given (the converter's uniquing); "" is never numbered, and listing
        # it here lets the hot paths test membership alone.
        self._used: dict[str, int] = {"": 0}
        self.shared_buffers: set[int] = set()  # constants stored in an earlier one's buffer
        self._dtype = "INT8" if self.int8 else "FLOAT32"
        self._bias_dtype = "INT32" if self.int8 else "FLOAT32"
        self._one_scale = 1 if self.int8 else 0
        self._conv_version = _OPCODES["CONV_2D"][1 if self.int8 else 2]
        io_quantized = target.int8_io
        self.input = self._tensor((1, *input_shape), "INT8" if io_quantized else "FLOAT32",
                                  False, 1 if io_quantized else 0, f"serving_default_{input_name}:0")
        self.x = self.input
        if self.int8 and not io_quantized:
            self.x = self._op("QUANTIZE", [self.input],
                              self._activation((1, *input_shape), "tfl.quantize"))

    # --- tensors and ops -----------------------------------------------------------------

    def unique(self, name: str) -> str:
        """``name``, or ``name`` + the next free number if it was given before (as
        TensorFlow's ``OpOrArgNameMapper`` dedups a fused op's outputs and constants)."""
        if not name:
            return name
        count = self._used.get(name)
        if count is None:
            self._used[name] = 0
            return name
        while True:
            count += 1
            candidate = f"{name}{count}"
            if candidate not in self._used:
                self._used[name] = count
                self._used[candidate] = 0
                return candidate

    def _tensor(self, shape: tuple[int, ...], dtype: str, constant: bool, scales: int,
                name: str = "") -> int:
        tensors = self.tensors
        index = len(tensors)
        if name in self._used:
            name = self.unique(name)
        else:
            self._used[name] = 0
        # tuple.__new__: a named tuple without its Python-level __new__ (thousands a second).
        tensors.append(_new(Tensor, (index, name, dtype, shape, constant, False, scales,
                                     scales, 0.0, 0)))
        return index

    def _activation(self, shape: tuple[int, ...], name: str = "") -> int:
        return self._tensor(shape, self._dtype, False, self._one_scale, name)

    def _weights(self, shape: tuple[int, ...], channels: int, name: str = "") -> int:
        return self._tensor(shape, self._dtype, True, channels if self.int8 else 0, name)

    def _bias(self, channels: int, name: str = "") -> int:
        return self._tensor((channels,), self._bias_dtype, True, channels if self.int8 else 0,
                            name)

    def _int32_constant(self, n: int, name: str = "") -> int:
        return self._tensor((n,), "INT32", True, 0, name)

    def _op(self, opcode: str, inputs: tuple[int, ...], output: int,
            version: int | None = None, **options: int) -> int:
        code, int8_version, float_version = _OPCODES[opcode]
        if version is None:
            version = int8_version if self.int8 else float_version
        ops = self.operators
        ops.append(_new(Operator, (len(ops), opcode, code, version, tuple(inputs), (output,), (),
                                   False, options)))
        return output

    def shape(self, index: int) -> tuple[int, ...]:
        return self.tensors[index].shape[1:]

    # --- layers --------------------------------------------------------------------------

    def conv(self, x: int, filters: int, kernel: tuple[int, int],
             stride: int | tuple[int, int] = 1, groups: int = 1,
             activation: int = _NO_ACTIVATION, out_hw: tuple[int, int] | None = None, *,
             valid: bool = False, weights_name: str = "", bias_name: str = "") -> int:
        """Conv2D (+ BatchNorm, + ReLU): one CONV_2D with a (folded) bias; "same" padding
        unless ``out_hw`` gives the output's height and width, or ``valid`` marks a 1x1
        convolution with Keras' default "valid" padding (the same shape; the converter
        keeps the padding). ``stride``: one for both axes or a (y, x) pair. Its output is
        named like its bias (deduplicated)."""
        tensors = self.tensors
        _, h, w, c = tensors[x][3]
        sy, sx = (stride, stride) if isinstance(stride, int) else stride
        ho, wo = out_hw or (-(-h // sy), -(-w // sx))
        # The three tensors and the operator inline (what _tensor and _op do): the most
        # frequent layer of every space, priced thousands of times a second. The output
        # takes the bias's name, numbered again (the converter's fused op name).
        unique = self.unique
        weights_name = unique(weights_name)
        bias_name, out_name = unique(bias_name), unique(bias_name)
        weights = len(tensors)
        scales = filters if self.int8 else 0
        one, dtype = self._one_scale, self._dtype
        tensors += (
            _new(Tensor, (weights, weights_name, dtype, (filters, kernel[0], kernel[1], c // groups),
                          True, False, scales, scales, 0.0, 0)),
            _new(Tensor, (weights + 1, bias_name, self._bias_dtype, (filters,), True, False,
                          scales, scales, 0.0, 0)),
            _new(Tensor, (weights + 2, out_name, dtype, (1, ho, wo, filters), False, False, one,
                          one, 0.0, 0)))
        ops = self.operators
        ops.append(_new(Operator, (
            len(ops), "CONV_2D", _CONV_CODE,
            _GROUPED_CONV_VERSION if groups > 1 else self._conv_version,
            (x, weights, weights + 1), (weights + 2,), (), False,
            {"stride": stride, "activation": activation, "valid": int(valid or out_hw is not None)})))
        return weights + 2

    def depthwise(self, x: int, kernel: int | tuple[int, int], stride: int, activation: int,
                  out_hw: tuple[int, int] | None = None, *, weights_name: str = "",
                  bias_name: str = "") -> int:
        h, w, c = self.shape(x)
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        weights = self._weights((1, kh, kw, c), c, weights_name)
        bias = self._bias(c, bias_name)
        ho, wo = out_hw or (-(-h // stride), -(-w // stride))
        out = self._activation((1, ho, wo, c), bias_name)
        return self._op("DEPTHWISE_CONV_2D", [x, weights, bias], out, stride=stride,
                        activation=activation, valid=int(out_hw is not None))

    def pool(self, x: int, pool: tuple[int, int], stride: tuple[int, int],
             opcode: str = "MAX_POOL_2D", out_hw: tuple[int, int] | None = None, *,
             name: str = "") -> int:
        """MaxPool2D (or AveragePool2D), "valid" padding unless ``out_hw``; (y, x) pairs."""
        _, h, w, c = self.tensors[x][3]
        ho, wo = out_hw or ((h - pool[0]) // stride[0] + 1, (w - pool[1]) // stride[1] + 1)
        out = self._tensor((1, ho, wo, c), self._dtype, False, self._one_scale, name)
        return self._op(opcode, (x,), out, valid=int(out_hw is None))

    def max_pool(self, x: int, pool: tuple[int, int], stride: tuple[int, int], *,
                 name: str = "") -> int:
        return self.pool(x, pool, stride, name=name)

    def add(self, a: int, b: int, activation: int = _NO_ACTIVATION, *, name: str = "") -> int:
        return self._op("ADD", [a, b], self._activation((1, *self.shape(a)), name),
                        activation=activation)

    def flatten(self, x: int, *, name: str = "", shape_name: str = "arith.constant") -> int:
        n = 1
        for d in self.shape(x):
            n *= d
        return self._op("RESHAPE", [x, self._int32_constant(2, shape_name)],
                        self._activation((1, n), name))

    def global_average_pool(self, x: int, *, name: str = "") -> int:
        c = self.shape(x)[-1]
        axes = self._int32_constant(2, f"{name}/reduction_indices" if name else "")
        return self._op("MEAN", [x, axes], self._activation((1, c), name))

    def dense(self, x: int, units: int, activation: int = _NO_ACTIVATION, *,
              weights_name: str = "", bias_name: str = "", name: str = "") -> int:
        (n_in,) = self.shape(x)
        weights = self._weights((units, n_in), units, weights_name)
        bias = self._bias(units, bias_name)
        return self._op("FULLY_CONNECTED", [x, weights, bias], self._activation((1, units), name),
                        activation=activation)

    def softmax(self, x: int, *, name: str = "") -> int:
        return self._op("SOFTMAX", [x], self._activation((1, *self.shape(x)), name))

    # --- the ENAS cell's ops (costs/enas_graph.py) ---------------------------------------

    def constant(self, shape: tuple[int, ...], kind: str, name: str = "") -> int:
        """A constant operand: ``"bias"`` (int32 per channel / float32), ``"int32"`` (an
        unquantized shape operand) or ``"per_tensor"`` (an int8 per-tensor / float32
        vector, e.g. a lone BatchNorm's multiplier)."""
        if kind == "bias":
            return self._bias(shape[0], name)
        if kind == "int32":
            return self._tensor(shape, "INT32", True, 0, name)
        return self._tensor(shape, self._dtype, True, self._one_scale, name)

    def conv_with_bias(self, x: int, filters: int, kernel: int, stride: int, bias: int, *,
                       depthwise: bool = False, valid: bool = False,
                       activation: int = _NO_ACTIVATION, weights_name: str = "",
                       name: str = "") -> int:
        """A CONV_2D (or DEPTHWISE_CONV_2D) reading an existing ``bias`` tensor (the
        converter's zero bias of a convolution without one), output ``name``."""
        _, h, w, c = self.tensors[x][3]
        channels = c if depthwise else filters
        shape = (1, kernel, kernel, c) if depthwise else (filters, kernel, kernel, c)
        weights = self._weights(shape, channels, weights_name)
        out = self._activation((1, -(-h // stride), -(-w // stride), channels), name)
        return self._op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", (x, weights, bias), out,
                        stride=stride, activation=activation, valid=int(valid))

    def relu(self, x: int, *, name: str = "") -> int:
        return self._op("RELU", (x,), self._activation((1, *self.shape(x)), name))

    def pad(self, x: int, paddings: int, after: tuple[int, int], *, name: str = "") -> int:
        """PAD by ``after`` = (rows, columns) at the bottom and right; ``paddings`` is its
        int32 (4, 2) operand."""
        h, w, c = self.shape(x)
        return self._op("PAD", (x, paddings),
                        self._activation((1, h + after[0], w + after[1], c), name))

    def strided_slice(self, x: int, operands: tuple[int, int, int], out_shape: Shape, *,
                      begin_mask: int, end_mask: int, name: str = "") -> int:
        """STRIDED_SLICE with its begin, end and strides operands (int32 (4,) each)."""
        return self._op("STRIDED_SLICE", (x, *operands), self._activation((1, *out_shape), name),
                        begin_mask=begin_mask, end_mask=end_mask)

    def concatenation(self, xs: tuple[int, ...], *, name: str = "") -> int:
        """CONCATENATION on the channel axis."""
        h, w, _ = self.shape(xs[0])
        c = sum(self.shape(x)[2] for x in xs)
        return self._op("CONCATENATION", tuple(xs), self._activation((1, h, w, c), name), axis=3)

    def mul(self, x: int, y: int, *, name: str = "") -> int:
        return self._op("MUL", (x, y), self._activation((1, *self.shape(x)), name), activation=0)

    def finish(self, out: int, output_name: str = "") -> ModelView:
        """Ends the graph at ``out`` (a DEQUANTIZE first for a float output of an int8 graph).

        ``output_name`` is the model's output layer (the signature's output name)."""
        if self.int8 and not self.target.int8_io:
            name = self.tensors[out].name
            out = self._op("DEQUANTIZE", [out], self._tensor((1, *self.shape(out)), "FLOAT32",
                                                              False, 0, name[:-1]))
        sg = Subgraph("main", tuple(self.tensors), tuple(self.operators), (self.input,), (out,))
        return ModelView((sg,), ("min_runtime_version", "CONVERSION_METADATA"), 0,
                         output_name, frozenset(self.shared_buffers))

    def classifier(self, x: int, classes: int, net: str = "") -> ModelView:
        """Dense(classes, softmax) named ``classifier`` and the end of the graph."""
        prefix = f"{net}/classifier/" if net else ""
        y = self.dense(x, classes, weights_name=prefix and f"{prefix}MatMul",
                       bias_name=prefix and f"{prefix}BiasAdd",
                       name=prefix and f"{prefix}MatMul;{prefix}BiasAdd")
        # The softmax's output is the model's ("StatefulPartitionedCall:0"); with a float
        # output the DEQUANTIZE after it takes that name and the softmax's gets a "1".
        dequantized = self.int8 and not self.target.int8_io
        out = "StatefulPartitionedCall:0" + ("1" if dequantized else "")
        return self.finish(self.softmax(y, name=out if net else ""), "classifier" if net else "")


# --------------------------------------------------------------------------------------
# Our builders, as the converter sees them.

#: Graph derivations by spec ``SPACE`` tag: ``fn(spec, GraphBuilder) -> ModelView``.
GRAPHS: Registry[Callable[..., ModelView]] = Registry("deployment graph")


def _fused(*parts: str) -> str:
    """A fused op's name: the TensorFlow op names it absorbed, last op first."""
    return ";".join(parts)


@functools.lru_cache(maxsize=None)
def _descriptor_names(i: int, net: str = "descriptor_net") -> tuple[str, str, str]:
    """Conv layer ``i``'s weights name, its fused conv + BN + ReLU name and its pool's
    (the same for every spec: formatted once)."""
    conv = f"{net}/conv_{i}/Conv2D"
    return (conv, _fused(f"{net}/conv_{i}_relu/Relu", f"{net}/conv_{i}_bn/FusedBatchNormV3", conv),
            f"{net}/conv_{i}_pool/MaxPool")


def _descriptor_graph(spec, g: GraphBuilder) -> ModelView:
    net = "descriptor_net"
    x = g.x
    starts = {s.start for s in spec.skips}
    ends = {s.end: s for s in spec.skips}
    skip_input = x
    for i, layer in enumerate(spec.conv_layers):
        k, fx, fy, px, py, sx, sy, stride = layer
        if i in starts:
            skip_input = x
        if i in ends:
            x = _descriptor_skip_end(spec, g, net, i, ends[i], skip_input, x, layer)
        else:
            conv, fused, _ = _descriptor_names(i)
            x = g.conv(x, k, (fy, fx), stride, activation=_RELU, weights_name=conv,
                       bias_name=fused)
        if px != 1 or py != 1 or sx != 1 or sy != 1:
            x = g.max_pool(x, (py, px), (sy, sx), name=_descriptor_names(i)[2])
    if spec.global_pool:
        x = g.global_average_pool(x, name=f"{net}/global_pool/Mean")
    else:
        x = g.flatten(x, name=f"{net}/flatten/Reshape")
    for j, layer in enumerate(spec.fc_layers):
        fc = f"{net}/fc_{j}"
        x = g.dense(x, layer.n_hidden, activation=_RELU, weights_name=f"{fc}/MatMul",
                    bias_name=f"{fc}/Relu;{fc}/BiasAdd", name=f"{fc}/MatMul;{fc}/Relu;{fc}/BiasAdd")
    return g.classifier(x, spec.num_classes, net)


def _descriptor_skip_end(spec, g: GraphBuilder, net: str, i: int, skip, skip_input: int,
                         x: int, layer) -> int:
    """The last conv of a skip (BN folded, no ReLU), its shortcut (a 1x1 projection, after
    the main path as Keras runs it) and the ADD that takes the ReLU."""
    conv = f"{net}/conv_{i}/Conv2D"
    y = g.conv(x, layer.n_filters, (layer.filt_y, layer.filt_x), layer.stride,
               weights_name=conv, bias_name=_fused(f"{net}/conv_{i}_bn/FusedBatchNormV3", conv))
    shortcut = skip_input
    strides = spec.shortcut(skip)
    if strides is not None:
        proj = f"{net}/conv_{i}_shortcut/Conv2D"
        # "same" padding, as built: the converter keeps it (spec.shortcut picks strides
        # whose "same" output is the main path's).
        shortcut = g.conv(skip_input, layer.n_filters, (1, 1), strides, weights_name=proj,
                          bias_name=_fused(f"{net}/conv_{i}_shortcut_bn/FusedBatchNormV3", proj))
    return g.add(y, shortcut, activation=_RELU,
                 name=_fused(f"{net}/conv_{i}_relu/Relu", f"{net}/conv_{i}_add/add"))


def _blockset_conv(g: GraphBuilder, x: int, net: str, layer: str, filters: int, kernel: int,
                   stride: int = 1, groups: int = 1, act: int | None = None,
                   act_layer: str = "", bn_layer: str = "", valid: bool = True) -> int:
    """A blockset Conv2D + BN (+ activation); 1x1 ones keep Keras' default "valid"
    padding. A grouped convolution loses its layer scope in conversion: its weights are
    plain ``Conv2D`` (deduplicated: ``Conv2D1``, ...)."""
    conv = f"{net}/{layer}/Conv2D" if groups == 1 else "Conv2D"
    act_name = "Relu6" if act == _RELU6 else "Relu"
    parts = ([f"{net}/{act_layer}/{act_name}"] if act is not None else []) + [
        f"{net}/{bn_layer}/FusedBatchNormV3", conv]
    return g.conv(x, filters, (kernel, kernel), stride, groups=groups, valid=valid,
                  activation=_NO_ACTIVATION if act is None else act,
                  weights_name=conv, bias_name=_fused(*parts))


def _blockset_graph(spec, g: GraphBuilder) -> ModelView:
    net = "blockset_net"
    sk = spec.skeleton
    act = _RELU6 if sk.activation == "relu6" else _RELU
    act_name = "Relu6" if act == _RELU6 else "Relu"
    x = _blockset_conv(g, g.x, net, "stem_conv", sk.stem_filters, sk.stem_kernel, sk.stem_stride,
                       act=act, act_layer="stem_act", bn_layer="stem_bn", valid=False)
    for pos in sk.positions:
        block = spec.block_type(pos.index)
        b = f"block_{pos.index}"
        if block is None:
            if not pos.is_identity_when_empty:  # projection shortcut: 1x1 conv + BN
                x = _blockset_conv(g, x, net, f"{b}_shortcut", pos.c_out, 1, pos.stride,
                                   bn_layer=f"{b}_shortcut_bn")
            continue
        block_input = x
        if block.expansion > 1:
            x = _blockset_conv(g, x, net, f"{b}_expand", block.expansion * pos.c_in, 1,
                               groups=block.expand_groups, act=act, act_layer=f"{b}_expand_act",
                               bn_layer=f"{b}_expand_bn")
        dw = f"{net}/{b}_depthwise/depthwise"
        bn = f"{net}/{b}_depthwise_bn/FusedBatchNormV3"
        x = g.depthwise(x, block.kernel, pos.stride, act, weights_name=_fused(bn, dw),
                        bias_name=_fused(f"{net}/{b}_depthwise_act/{act_name}", bn, dw))
        x = _blockset_conv(g, x, net, f"{b}_project", pos.c_out, 1, groups=block.project_groups,
                           bn_layer=f"{b}_project_bn")
        if pos.stride == 1 and pos.c_in == pos.c_out:
            x = g.add(block_input, x, name=f"{net}/{b}_add/add")
    if sk.head_filters:
        x = _blockset_conv(g, x, net, "head_conv", sk.head_filters, 1, act=act,
                           act_layer="head_act", bn_layer="head_bn")
    return g.classifier(g.global_average_pool(x, name=f"{net}/global_pool/Mean"),
                        spec.num_classes, net)


def _resnet_graph(spec, g: GraphBuilder) -> ModelView:
    net = f"resnet{spec.depth}"

    def conv(x: int, filters: int, kernel: int, stride: int, layer: str, bn: str,
             relu: str | None = None) -> int:
        name = f"{net}/{layer}/Conv2D"
        parts = ([f"{net}/{relu}/Relu"] if relu else []) + [f"{net}/{bn}/FusedBatchNormV3", name]
        return g.conv(x, filters, (kernel, kernel), stride,
                      activation=_RELU if relu else _NO_ACTIVATION, weights_name=name,
                      bias_name=_fused(*parts))

    x = conv(g.x, spec.stage_widths[0], 3, 1, "stem_conv", "stem_bn", "stem_relu")
    counts: dict[int, int] = {}
    for stage, c_out, mid, stride in spec.blocks():
        b = counts[stage] = counts.get(stage, -1) + 1
        name = f"stage{stage}_block{b}"
        y = conv(x, mid, 3, stride, f"{name}_conv1", f"{name}_bn1", f"{name}_relu1")
        y = conv(y, c_out, 3, 1, f"{name}_conv2", f"{name}_bn2")
        shortcut = x
        if stride != 1 or g.shape(x)[-1] != c_out:
            shortcut = conv(x, c_out, 1, stride, f"{name}_shortcut", f"{name}_shortcut_bn")
        x = g.add(y, shortcut, activation=_RELU,
                  name=_fused(f"{net}/{name}_relu/Relu", f"{net}/{name}_add/add"))
    return g.classifier(g.global_average_pool(x, name=f"{net}/global_pool/Mean"),
                        spec.num_classes, net)


GRAPHS.add("descriptor", _descriptor_graph)
GRAPHS.add("blockset", _blockset_graph)
GRAPHS.add("resnet", _resnet_graph)
GRAPHS.add("enas_cell", enas_graph)


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
    ``tflite_bytes`` is :func:`converted_bytes` of the same graph: ``len(flatbuffer)``.
    """
    graph = tflite_graph(spec, target)
    return {"arena_bytes": replay_arena_bytes(graph, checked=True),
            "tflite_bytes": converted_bytes(graph)}


# --------------------------------------------------------------------------------------
# The converted file, exactly.

#: ``TensorType`` codes (FLOAT32 is the schema's default and not written).
_TYPE_CODES = {"FLOAT32": 0, "INT32": 2, "INT8": 9}
#: Metadata the converter adds: (name, data bytes). ``min_runtime_version`` is a 16-byte
#: string; ``CONVERSION_METADATA`` a small flatbuffer of the conversion options and the
#: TensorFlow version (96 bytes for every int8 and float32 export of TF 2.21 measured).
_METADATA = (("min_runtime_version", 16), ("CONVERSION_METADATA", 96))


def _conv_options(op: Operator) -> tuple[int, tuple[tuple[int, int], ...], int]:
    o = op.options  # Conv2DOptions: padding, stride_w, stride_h, fused activation, ...
    return 1, (((0, 1),) if o.get("valid") else ()) + ((1, 4), (2, 4)) + (
        ((3, 1),) if o.get("activation") else ()), 7


def _depthwise_options(op: Operator) -> tuple[int, tuple[tuple[int, int], ...], int]:
    o = op.options  # DepthwiseConv2DOptions: ..., depth_multiplier 1, fused activation
    return 2, (((0, 1),) if o.get("valid") else ()) + ((1, 4), (2, 4), (3, 4)) + (
        ((4, 1),) if o.get("activation") else ()), 7


def _pool_options(op: Operator) -> tuple[int, tuple[tuple[int, int], ...], int]:
    o = op.options  # Pool2DOptions: padding, strides, filter width and height
    return 5, (((0, 1),) if o.get("valid") else ()) + ((1, 4), (2, 4), (3, 4), (4, 4)), 6


def _fully_connected_options(op: Operator) -> tuple[int, tuple[tuple[int, int], ...], int]:
    return 8, ((0, 1),) if op.options.get("activation") else (), 6


def _softmax_options(op: Operator) -> tuple[int, tuple[tuple[int, int], ...], int]:
    return 9, ((0, 4),), 1  # beta = 1.0


def _add_options(op: Operator) -> tuple[int, tuple[tuple[int, int], ...], int]:
    return 11, ((0, 1),) if op.options.get("activation") else (), 2


def _strided_slice_options(op: Operator) -> tuple[int, tuple[tuple[int, int], ...], int]:
    o = op.options  # StridedSliceOptions: begin, end, ellipsis, new axis, shrink masks, offset
    return 32, tuple((slot, 4) for slot, key in enumerate(("begin_mask", "end_mask"))
                     if o.get(key)), 6


def _concatenation_options(op: Operator) -> tuple[int, tuple[tuple[int, int], ...], int]:
    return 10, ((0, 4),), 2  # axis 3, no fused activation


def _mul_options(op: Operator) -> tuple[int, tuple[tuple[int, int], ...], int]:
    return 21, ((0, 1),) if op.options.get("activation") else (), 1


def _pad_options(op: Operator) -> tuple[int, tuple[tuple[int, int], ...], int]:
    return 22, (), 0  # an empty PadOptions table


def _mean_options(op: Operator) -> tuple[int, tuple[tuple[int, int], ...], int]:
    return 27, (), 1  # ReducerOptions, keep_dims False


#: Per builtin operator: ``fn(op) -> (BuiltinOptions type, (slot, bytes) of the non-default
#: fields in the order Pack writes them, number of fields)``; absent: no options table.
_OPTIONS: dict[str, Callable[[Operator], tuple[int, tuple[tuple[int, int], ...], int]]] = {
    "CONV_2D": _conv_options, "DEPTHWISE_CONV_2D": _depthwise_options,
    "MAX_POOL_2D": _pool_options, "AVERAGE_POOL_2D": _pool_options,
    "FULLY_CONNECTED": _fully_connected_options, "SOFTMAX": _softmax_options,
    "ADD": _add_options, "MEAN": _mean_options,
    "STRIDED_SLICE": _strided_slice_options, "CONCATENATION": _concatenation_options,
    "MUL": _mul_options, "PAD": _pad_options,
}


def packed_model(graph: ModelView) -> PackedModel:
    """The objects of the converted flatbuffer of a derived graph, in the file's order.

    The converter stores the input first, then the constants (unquantized int32 operands
    first, then weights and biases, last layer first, bias before weights), then the
    activations in execution order; tensor ``k`` owns buffer ``k + 1`` (buffer 0 is the
    empty sentinel), and the two metadata buffers come last. Tensors and operators are
    given by their memo keys (:class:`KeyedObjects`): sizing them is a look-up per object.
    """
    sg = graph.main
    tensors = sg.tensors
    first = sg.inputs[0]
    # One pass: each tensor's key (see _packed_tensor) and buffer, sorted into the sections.
    # The key holds the name's length, not the name: that is all the size depends on, and
    # layers named alike ("conv_3", "conv_4") then share their memoised moves.
    shape_operands, shape_buffers, weights, weight_buffers, activations = [], [], [], [], []
    prod, sizes = math.prod, TYPE_SIZES
    shared = graph.shared_buffers  # constants whose data an earlier one holds: no data
    by_index: dict[int, tuple] = {} if graph.constant_order else None
    for index, name, dtype, shape, constant, _, scales, _, _, _ in tensors:
        key = (len(name) if name.isascii() else len(name.encode()), dtype, len(shape),
               constant, scales, bool(shape) and shape[0] == 1)
        if constant:
            nbytes = None if index in shared else prod(shape) * sizes[dtype]
            if by_index is not None:
                by_index[index] = (key, nbytes)
            if scales or dtype != "INT32":
                weights.append(key)
                weight_buffers.append(nbytes)
            else:
                shape_operands.append(key)
                shape_buffers.append(nbytes)
        elif index != first:
            activations.append(key)
        else:
            input_key = key
    shape_operands.reverse()
    shape_buffers.reverse()
    weights.reverse()
    weight_buffers.reverse()
    if graph.constant_order:  # the converter's own order (ENAS cells), not the default
        shape_operands, shape_buffers = [], []
        weights = [by_index[k][0] for k in graph.constant_order]
        weight_buffers = [by_index[k][1] for k in graph.constant_order]
    buffers = [None, None, *shape_buffers, *weight_buffers, *[None] * len(activations)]
    opcodes: dict[str, int] = {}
    codes, operators = [], []
    cache = _PACKED_OPERATORS
    for op in sg.operators:
        _, opcode, builtin_code, version, inputs, _, _, _, options = op
        index = opcodes.get(opcode)
        if index is None:
            index = opcodes[opcode] = len(codes)
            codes.append((version, builtin_code))
        elif version > codes[index][0]:  # one code per builtin, at its highest version
            codes[index] = (version, builtin_code)
        key = (opcode, index != 0, len(inputs), *options.values())
        if key not in cache:
            _packed_operator(op, index, key)
        operators.append(key)
    metadata = []
    for name, nbytes in _METADATA:
        metadata.append((len(name), len(buffers)))
        buffers.append(nbytes)
    input_name = len(tensors[first].name) - len("serving_default_:0")
    packed = KeyedObjects([input_key, *shape_operands, *weights, *activations], _packed_tensor)
    return PackedModel(codes, packed, KeyedObjects(operators, cache.__getitem__), len(sg.inputs),
                       len(sg.outputs), buffers, metadata, [(input_name, 0)],
                       [(len(graph.output_name), len(packed) - 1)])


#: Memos of :func:`_packed_tensor` and :func:`_packed_operator` by their keys (specs share
#: most tensors: names, shapes, quantization; and most operators).
_PACKED_TENSORS: dict[tuple, PackedTensor] = {}
_PACKED_OPERATORS: dict[tuple, PackedOperator] = {}


def _packed_tensor(key: tuple) -> PackedTensor:
    """The packed form of a tensor with ``key``: its name's UTF-8 length, dtype, rank,
    constness, number of scales and whether its first dimension is 1 (a depthwise kernel's
    channel axis is 3); memoised."""
    hit = _PACKED_TENSORS.get(key)
    if hit is None:
        name_bytes, dtype, rank, constant, scales, first_is_one = key
        depthwise_weights = constant and rank == 4 and first_is_one
        hit = PackedTensor(name_bytes, rank, _TYPE_CODES[dtype], True, not constant,
                           scales, 3 if depthwise_weights and scales > 1 else 0)
        if len(_PACKED_TENSORS) < 1 << 16:
            _PACKED_TENSORS[key] = hit
    return hit


def _packed_operator(op: Operator, opcode_index: int, key: tuple) -> PackedOperator:
    """Its packed form, memoised (for good: the keys are few) by ``key``: its opcode,
    whether its opcode index is 0, its number of inputs and its options."""
    options = _OPTIONS.get(op.opcode)
    kind, fields, num_fields = options(op) if options else (0, None, 0)
    hit = _PACKED_OPERATORS[key] = PackedOperator(opcode_index != 0, len(op.inputs),
                                                  len(op.outputs), kind, fields, num_fields)
    return hit


def converted_bytes(graph: ModelView) -> int:
    """The size of the ``.tflite`` file the converter writes for a derived graph, exactly.

    The converter's final write is the Python object API's ``ModelT.Pack`` (see
    :mod:`keras_cnas.costs.flatbuffer_size`), so the size follows from the objects alone:
    the buffers (weights, biases, shape operands; not aligned beyond their length prefix),
    the per-channel quantization vectors (float32 scales, int64 zero points, 8-aligned),
    the tensor names TensorFlow gives our builders' layers (fused ops joined with ``;``,
    duplicates numbered), the operators' builtin options and versions, the metadata and
    the serving signature, and the padding and shared vtables between them. Equal to
    ``len(flatbuffer)`` on random specs of every modelled space and target
    (``tests/test_deployment.py``); it assumes TensorFlow 2.21's converter (a converter
    that names, orders or versions differently, or writes other conversion metadata,
    changes the figure by a few bytes per tensor, which that test would report). The
    converter shares identical constant buffers; trained layers never hold equal weights,
    so no graph here has any to share.
    """
    return packed_model_bytes(packed_model(graph))


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
    """An upper bound on the size of the converted ``.tflite`` flatbuffer, for graphs
    whose tensor names are unknown (a user's Keras model, ``compression.model_costs``);
    a spec's graph is sized exactly by :func:`converted_bytes`.

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


__all__ = ["DEPLOYMENT_COSTS", "ExportTarget", "GRAPHS", "GraphBuilder",
           "RELU", "RELU6", "TARGET_QUANTIZATIONS", "converted_bytes",
           "deployment_costs", "flatbuffer_bytes", "has_deployment_costs", "packed_model",
           "tflite_graph"]
