"""Analytic costs of any supported Keras model, from its layer shapes, and of the model
channel surgery would make from it — without building that model.

The definitions are those of :mod:`keras_cnas.costs` (see ``docs/architecture.md``), read for
a Keras graph:

* ``params``: what ``count_params()`` counts: conv and dense kernels and biases, depthwise
  kernels, BatchNorm's gamma, beta, moving mean and variance, PReLU's alpha;
  ``trainable_params`` leaves out BatchNorm's statistics and frozen layers;
* ``madds``: conv ``h_out*w_out*c_out*k_h*k_w*c_in/groups``, depthwise
  ``h_out*w_out*c*m*k_h*k_w``, dense ``positions*n_in*n_out``; nothing else;
* ``flops``: the MIT-LL eqs. 7-8 read for every conv with its own stride,
  ``(w/s_x)*(h/s_y)*(c_in/g*k_w*k_h + 1)*c_out`` on the conv's input, and ``n_out*(n_in + 1)``
  per position for dense (as for block-set genotypes; a TF profiler counts ``2 * madds``);
* ``memory_bytes``: eq. 6, ``B*(params + largest tensor an op reads or writes)``;
* ``peak_activation_bytes``: ``B*`` the most activation elements alive at once, walking the
  ops in Keras' run order: an op's inputs and output plus every tensor still needed later.
  BatchNorm, activations, dropout and reshapes work in place (no new buffer).

For a model built from a block-set or ResNet spec every figure equals
``keras_cnas.costs.estimate(spec)``; for a descriptor all but ``flops`` do (its eq. 7 scales a
conv by the pool after it).

With an export ``target``, ``model_costs`` adds the deployment costs ``arena_bytes`` and
``tflite_bytes`` (see :mod:`keras_cnas.costs.deployment`): the model's layers are mapped onto
the graph the TFLite converter emits (a conv or depthwise conv absorbs the BatchNorm and the
ReLU / ReLU6 right after it, a dense layer or an ``Add`` the ReLU after it, a dense softmax
becomes FULLY_CONNECTED + SOFTMAX), then priced by the same allocator replay and flatbuffer
bound as a spec. Layers outside that mapping (a standalone BatchNorm or non-ReLU activation,
concatenations, dilated convs, a conv with neither bias nor BatchNorm, ...) raise
:class:`~keras_cnas.costs.arena.UnsupportedOpError` naming the layer: measure such a model
with ``keras_cnas.export.micro_arena_bytes`` instead.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from keras_cnas._checks import is_int
from keras_cnas.compression.graph import ALIAS_KINDS, ChannelGraph, Op
from keras_cnas.costs import CostReport
from keras_cnas.costs.arena import UnsupportedOpError, replay_arena_bytes
from keras_cnas.costs.deployment import RELU, RELU6, ExportTarget, GraphBuilder, flatbuffer_bytes
from keras_cnas.costs.tflite_graph import ModelView

__all__ = ["deployment_graph", "graph_costs", "model_costs"]


def model_costs(model: Any, bytes_per_element: int = 4, *,
                target: ExportTarget | None = None) -> CostReport:
    """The analytic costs of a Sequential or Functional ``tf_keras`` model.

    ``params`` equals ``model.count_params()``.

    Args:
        model: a model of :data:`~keras_cnas.compression.SUPPORTED_LAYERS`.
        bytes_per_element: B of eq. 6: 4 for float32, 1 for int8.
        target: also price ``arena_bytes`` and ``tflite_bytes`` of this export (e.g.
            ``ExportTarget("int8")``), as for a spec; None: only the analytic costs.

    Raises:
        UnsupportedModelError: the model holds a layer the counter does not know.
        UnsupportedOpError: with ``target``, a layer outside the converter mapping.

    Example:
        >>> from keras_cnas._keras import keras
        >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3),
        ...                           keras.layers.Flatten(), keras.layers.Dense(10)])
        >>> costs = model_costs(model)
        >>> costs.params == model.count_params() == 9 * 4 + 4 + 144 * 10 + 10
        True
        >>> costs.madds == 6 * 6 * 4 * 9 + 144 * 10
        True
    """
    graph = ChannelGraph(model)
    report = graph_costs(graph, graph.full_counts(), bytes_per_element)
    if target is None:
        return report
    tflite = deployment_graph(graph, target)
    # The longest tensor name the converter can derive from these layer names: a fused
    # conv's "<model>/<act>/Relu6;<model>/<bn>/FusedBatchNormV3;<model>/<conv>/Conv2D1".
    longest = max(len(layer.name) for layer in model.layers)
    name_bytes = 3 * (len(model.name) + 1 + longest) + len("/Relu6;/FusedBatchNormV3;/Conv2D1") + 2
    return report.with_costs(arena_bytes=replay_arena_bytes(tflite),
                             tflite_bytes=flatbuffer_bytes(tflite, name_bytes))


def deployment_graph(graph: ChannelGraph, target: ExportTarget = ExportTarget()) -> ModelView:
    """The graph the TFLite converter emits for ``graph``'s model (see the module docstring).

    Raises:
        UnsupportedOpError: a layer outside the mapping, named.
    """
    ops = graph.ops
    uses: dict[Any, int] = {}
    readers: dict[Any, int] = {}
    for k, op in enumerate(ops):
        for key in op.inputs:
            uses[key] = uses.get(key, 0) + 1
            readers[key] = k
    for key in graph.outputs:
        uses[key] = uses.get(key, 0) + 1
    reader = {key: k for key, k in readers.items() if uses[key] == 1}  # sole readers
    skip: set[int] = set()
    if len(graph.outputs) != 1:
        raise UnsupportedOpError("model: deployment costs need a single-output model")
    first = next(op for op in ops if op.kind == "input")
    g = GraphBuilder(target, tuple(int(d) for d in first.out_shape[1:]))
    index: dict[Any, int] = {}
    for i, op in enumerate(ops):
        if i in skip:  # folded into the op before it
            continue
        layer, kind = op.layer, op.kind
        where = f"layer {layer.name!r} ({type(layer).__name__})"
        if kind == "input":
            index[op.output] = g.x
        elif kind == "identity":
            index[op.output] = index[op.inputs[0]]
        elif kind in ("conv", "depthwise", "dense", "merge"):
            out, activation, folded_bn = _fused(ops, i, reader, skip)
            x = [index[k] for k in op.inputs]
            if kind == "merge":
                if type(layer).__name__ != "Add" or len(x) != 2:
                    raise UnsupportedOpError(f"{where}: only two-input Add merges are modelled")
                index[out] = g.add(x[0], x[1], activation)
            elif kind == "dense":
                if len(op.in_shapes[0]) != 2:
                    raise UnsupportedOpError(f"{where}: a dense layer on a {len(op.in_shapes[0])}-D "
                                             "input is not modelled (flatten first)")
                if not layer.use_bias:
                    raise UnsupportedOpError(f"{where}: a dense layer without a bias is not modelled")
                y = g.dense(x[0], int(op.out_shape[-1]), activation)
                index[out] = g.softmax(y) if _activation_name(layer) == "softmax" else y
            else:
                if not (layer.use_bias or folded_bn):
                    raise UnsupportedOpError(f"{where}: a conv with neither a bias nor a "
                                             "BatchNorm after it is not modelled")
                if tuple(layer.dilation_rate) != (1, 1):
                    raise UnsupportedOpError(f"{where}: dilated convolutions are not modelled")
                sy, sx = layer.strides
                if sy != sx:
                    raise UnsupportedOpError(f"{where}: unequal strides are not modelled")
                hw = (int(op.out_shape[1]), int(op.out_shape[2]))
                if kind == "conv":
                    index[out] = g.conv(x[0], int(op.out_shape[-1]), tuple(layer.kernel_size), sy,
                                        int(layer.groups), activation, out_hw=hw)
                else:
                    if int(layer.depth_multiplier) != 1:
                        raise UnsupportedOpError(f"{where}: depth_multiplier != 1 is not modelled")
                    index[out] = g.depthwise(x[0], tuple(layer.kernel_size), sy, activation, out_hw=hw)
        elif kind == "spatial":
            name = type(layer).__name__
            x = index[op.inputs[0]]
            if name in ("MaxPooling2D", "AveragePooling2D"):
                opcode = "MAX_POOL_2D" if name == "MaxPooling2D" else "AVERAGE_POOL_2D"
                index[op.output] = g.pool(x, tuple(layer.pool_size), tuple(layer.strides), opcode,
                                          out_hw=(int(op.out_shape[1]), int(op.out_shape[2])))
            elif name == "GlobalAveragePooling2D" and not getattr(layer, "keepdims", False):
                index[op.output] = g.global_average_pool(x)
            else:
                raise UnsupportedOpError(f"{where}: not modelled; modelled spatial layers: "
                                         "MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D")
        elif kind == "reshape" and type(layer).__name__ == "Flatten":
            index[op.output] = g.flatten(index[op.inputs[0]])
        elif kind == "activation" and _activation_name(layer) == "softmax":
            index[op.output] = g.softmax(index[op.inputs[0]])
        else:
            raise UnsupportedOpError(
                f"{where}: not modelled by the deployment costs (the converter emits it as a "
                "separate op or not at all); measure this model with micro_arena_bytes")
    return g.finish(index[graph.outputs[0]])


def _activation_name(layer: Any) -> str | None:
    """The activation a layer applies (``"relu"``, ``"relu6"``, ``"softmax"``, ...), if any."""
    name = type(layer).__name__
    if name == "ReLU":
        if float(layer.negative_slope) != 0 or float(layer.threshold) != 0:
            return "leaky_relu"
        max_value = layer.max_value
        return "relu" if max_value is None else ("relu6" if float(max_value) == 6.0 else "relu_n")
    if name == "Softmax":
        return "softmax"
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None) if activation is not None else None


_FUSABLE = {"relu": RELU, "relu6": RELU6}


def _fused(ops: Sequence[Op], i: int, reader: dict[Any, int], skip: set[int]) -> tuple[Any, int, bool]:
    """What the converter folds into ``ops[i]``: the BatchNorm that alone reads a conv's
    output, then a ReLU / ReLU6 (the layer's own, or the sole reader's). The folded ops are
    added to ``skip``. Returns (the fused output key, the activation code, BN folded)."""
    op = ops[i]
    out, folded_bn = op.output, False
    own = _activation_name(op.layer) if op.kind != "merge" else None
    if own in _FUSABLE:  # the layer's own ReLU; a BatchNorm after it stays separate
        return out, _FUSABLE[own], False
    if own not in (None, "linear", "softmax"):
        raise UnsupportedOpError(f"layer {op.layer.name!r}: activation {own!r} is not modelled")
    j = reader.get(out)
    if op.kind in ("conv", "depthwise") and j is not None and ops[j].kind == "batchnorm":
        skip.add(j)
        out, folded_bn = ops[j].output, True
    j = reader.get(out)
    if own != "softmax" and j is not None and ops[j].kind == "activation" \
            and _activation_name(ops[j].layer) in _FUSABLE:
        skip.add(j)
        return ops[j].output, _FUSABLE[_activation_name(ops[j].layer)], folded_bn
    return out, 0, folded_bn


def graph_costs(graph: ChannelGraph, counts: Sequence[int], bytes_per_element: int = 4) -> CostReport:
    """The costs of ``graph``'s model with ``counts[g]`` units in group ``g``.

    Equal to ``model_costs(shrink(model, keep))`` whenever ``keep`` keeps ``counts`` units
    (or ``expand`` widens to them); cheap enough to call in a search loop (~1 ms for a
    ResNet-56).
    """
    if not is_int(bytes_per_element) \
            or bytes_per_element < 1:
        raise ValueError(f"bytes_per_element: expected a positive int (4 for float32, 1 for "
                         f"int8), got {bytes_per_element!r}")
    if len(counts) != len(graph.groups):
        raise ValueError(f"counts: expected one count per channel group ({len(graph.groups)}), "
                         f"got {len(counts)}")
    params = trainable = madds = 0
    flops = 0.0
    ch = graph.channels

    # Buffers: a tensor made by an in-place op shares its input's buffer.
    buffer_of: dict[Any, Any] = {}
    size_of: dict[Any, int] = {}
    born: dict[Any, int] = {}
    last_use: dict[Any, int] = {}
    for i, op in enumerate(graph.ops):
        size = _elements(op.out_shape, ch(op.out_layout, counts))
        if op.kind in ALIAS_KINDS:
            buffer_of[op.output] = buffer_of[op.inputs[0]]
        else:
            buffer_of[op.output] = op.output
            size_of[op.output] = size
            born[op.output] = i
            last_use[op.output] = i
        if op.kind not in ALIAS_KINDS:
            for key in op.inputs:
                b = buffer_of[key]
                last_use[b] = max(last_use[b], i)
    for key in graph.outputs:
        last_use[buffer_of[key]] = len(graph.ops)

    max_tensor = max((size_of[op.output] for op in graph.ops if op.kind == "input"), default=0)
    peak = 0
    for i, op in enumerate(graph.ops):
        p, t, m, f = _weights_and_work(op, counts, ch)
        params += p
        trainable += t
        madds += m
        flops += f
        if op.kind in ALIAS_KINDS or op.kind == "input":
            continue
        inputs = sum(size_of[buffer_of[k]] for k in op.inputs)
        out = size_of[op.output]
        max_tensor = max(max_tensor, inputs, out)
        alive = sum(size_of[b] for b in size_of
                    if born[b] < i <= last_use[b] and b != op.output)
        peak = max(peak, alive + out)
    return CostReport(params=params, trainable_params=trainable, madds=madds, flops=flops,
                      memory_bytes=bytes_per_element * (params + max_tensor),
                      peak_activation_bytes=bytes_per_element * peak)


def _elements(shape: Sequence[int | None], channels: int) -> int:
    spatial = 1
    for d in shape[1:-1]:
        spatial *= int(d)
    return spatial * channels


def _weights_and_work(op: Op, counts: Sequence[int], ch: Any) -> tuple[int, int, int, float]:
    """(params, trainable params, MAdds, FLOPs) of one op."""
    layer = op.layer
    trains = bool(layer.trainable)
    if op.kind == "conv":
        _, h, w, _ = op.in_shapes[0]
        _, ho, wo, _ = op.out_shape
        c_in = ch(op.in_layouts[0], counts)
        f = ch(op.out_layout, counts)
        g = int(layer.groups)
        kh, kw = layer.kernel_size
        sy, sx = layer.strides
        weights = kh * kw * (c_in // g) * f + (f if layer.use_bias else 0)
        madds = ho * wo * f * kh * kw * (c_in // g)
        flops = (w / sx) * (h / sy) * ((c_in / g) * kw * kh + 1) * f
        return weights, weights if trains else 0, madds, flops
    if op.kind == "depthwise":
        _, h, w, _ = op.in_shapes[0]
        _, ho, wo, _ = op.out_shape
        c_out = ch(op.out_layout, counts)
        kh, kw = layer.kernel_size
        sy, sx = layer.strides
        weights = kh * kw * c_out + (c_out if layer.use_bias else 0)
        madds = ho * wo * c_out * kh * kw
        flops = (w / sx) * (h / sy) * (kw * kh + 1) * c_out
        return weights, weights if trains else 0, madds, flops
    if op.kind == "dense":
        shape = op.in_shapes[0]
        positions = int(np.prod([int(d) for d in shape[1:-1]], dtype=np.int64))
        n_in = ch(op.in_layouts[0], counts)
        n_out = ch(op.out_layout, counts)
        weights = n_in * n_out + (n_out if layer.use_bias else 0)
        return (weights, weights if trains else 0, positions * n_in * n_out,
                float(positions * n_out * (n_in + 1)))
    if op.kind == "batchnorm":
        c = ch(op.out_layout, counts)
        learned = int(layer.center) + int(layer.scale)
        return (learned + 2) * c, learned * c if trains else 0, 0, 0.0
    if op.kind == "prelu":
        shape = op.in_shapes[0]
        shared = set(layer.shared_axes or ())
        weights = 1
        for axis in range(1, len(shape)):
            if axis in shared:
                continue
            weights *= ch(op.in_layouts[0], counts) if axis == len(shape) - 1 else int(shape[axis])
        return weights, weights if trains else 0, 0, 0.0
    return 0, 0, 0, 0.0
