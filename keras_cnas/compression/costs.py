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
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from keras_cnas.compression.graph import ALIAS_KINDS, ChannelGraph, Op
from keras_cnas.costs import CostReport

__all__ = ["graph_costs", "model_costs"]


def model_costs(model: Any, bytes_per_element: int = 4) -> CostReport:
    """The analytic costs of a Sequential or Functional ``tf_keras`` model.

    ``params`` equals ``model.count_params()``.

    Args:
        model: a model of :data:`~keras_cnas.compression.SUPPORTED_LAYERS`.
        bytes_per_element: B of eq. 6: 4 for float32, 1 for int8.

    Raises:
        UnsupportedModelError: the model holds a layer the counter does not know.

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
    return graph_costs(graph, graph.full_counts(), bytes_per_element)


def graph_costs(graph: ChannelGraph, counts: Sequence[int], bytes_per_element: int = 4) -> CostReport:
    """The costs of ``graph``'s model with ``counts[g]`` units in group ``g``.

    Equal to ``model_costs(shrink(model, keep))`` whenever ``keep`` keeps ``counts`` units
    (or ``expand`` widens to them); cheap enough to call in a search loop (~1 ms for a
    ResNet-56).
    """
    if isinstance(bytes_per_element, bool) or not isinstance(bytes_per_element, int) \
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
