"""The converter's graph of an ENAS cell network (``keras_cnas.builders.enas_cell``).

:func:`enas_graph` is ``costs.deployment.GRAPHS["enas_cell"]``: it records, with a
:class:`~keras_cnas.costs.deployment.GraphBuilder`, the graph the TFLite converter emits for
``build_model(spec)`` of an :class:`~keras_cnas.spaces.enas_cell.EnasNet`. What the converter
does to that model, read off converted models (``tests/test_deployment.py`` checks it on
random specs):

* **Execution order.** A cell network branches, so the order of its operators is not the
  order of the Keras layers. TensorFlow's graph importer sorts the graph in reverse post
  order of a depth-first search from the input that visits a node's consumers in
  descending order of their names (``GetReversePostOrder`` with ``NodeComparatorName``),
  and the converter keeps that order. :func:`_execution_order` replays it on the layers
  (a layer's ops form a chain, so a layer is one node named by its first op).
* **Common subexpressions.** Weight-free ops that compute the same thing (the ReLUs of one
  tensor, the same pooling of one input, the pad and crop of two factorized reductions
  of one input, equal block sums) are merged into the first of them.
* **Fusions.** BatchNorm folds into the conv before it. A ReLU whose input feeds nothing
  else fuses into the conv, block ``ADD`` or BatchNorm ``ADD`` that makes it; after a
  ``CONCATENATION`` it stays a RELU op (TFLite Micro's concatenation takes no fused
  activation). A BatchNorm after a concat (factorized reduction) becomes ``MUL`` + ``ADD``
  with per-tensor constants. A ``SeparableConv2D`` is a DEPTHWISE_CONV_2D with a zero bias
  and a CONV_2D that takes the BatchNorm; the 1x1 convs of a factorized reduction get zero
  biases too. The pixel shift is a PAD and a STRIDED_SLICE.
* **Constants.** The int32 operands of PAD and STRIDED_SLICE are shared by all of them.
  A zero bias is one tensor per channel count in a float32 graph and one per use in an
  int8 graph (each is quantized with its own scales).

Known gap: the import order is not yet right for every cell. The slow suite's spec 146
of 200 (docs/results.md) runs a pooling of a block sum read by two ops later in the
converter than here, and its float32 arena is priced 0.7 % low; searches re-measure
the exported artifact, so it is caught, not shipped.

Pure Python.

Example:
    >>> from keras_cnas.costs.deployment import tflite_graph
    >>> from keras_cnas.spaces.enas_cell import EnasCell, EnasNet
    >>> spec = EnasNet((8, 8, 3), 10, EnasCell([(0, "sep3x3", 1, "avg3x3")]), 3, 4)
    >>> ops = [op.opcode for op in tflite_graph(spec).main.operators]
    >>> ops[:5]  # the stem's output is read by a ReLU and a pooling: no fusion
    ['QUANTIZE', 'CONV_2D', 'RELU', 'DEPTHWISE_CONV_2D', 'CONV_2D']
    >>> sorted({"PAD", "STRIDED_SLICE", "CONCATENATION", "MUL"} - set(ops))
    []
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from keras_cnas.spaces.enas_cell import OPS

#: The Keras model's name: the prefix of every op name.
_NET = "enas_net/"
#: Layer kinds without weights: the converter merges equal ones.
_WEIGHT_FREE = frozenset({"relu", "avg", "max", "pad", "crop", "add", "concat"})
#: Kinds a ReLU that is their only consumer fuses into.
_FUSES_RELU = frozenset({"stem", "conv", "add", "bn"})


class _Layer(NamedTuple):
    """One layer of the Keras model as the converter's graph sees it.

    ``name`` is its first TensorFlow op's (the sort key of the import order), ``scope`` the
    Keras layer's name, ``inputs`` the indices of the layers it reads, ``size`` its
    channels (filters of a conv) and ``stride`` its stride."""

    name: str
    kind: str
    scope: str
    inputs: tuple[int, ...]
    size: int = 0
    kernel: int = 1
    stride: int = 1


class _Layers:
    """The layer graph of :func:`keras_cnas.builders.enas_cell.build_enas_net`."""

    def __init__(self) -> None:
        self.layers: list[_Layer] = []

    def add(self, op: str, kind: str, scope: str, *inputs: int, **fields: int) -> int:
        self.layers.append(_Layer(f"{_NET}{scope}/{op}", kind, scope, inputs, **fields))
        return len(self.layers) - 1

    def relu(self, x: int, scope: str) -> int:
        return self.add("Relu", "relu", scope, x)

    def relu_conv_bn(self, x: int, channels: int, name: str) -> int:
        return self.add("Conv2D", "conv", f"{name}_conv", self.relu(x, f"{name}_relu"),
                        size=channels)

    def factorized_reduce(self, x: int, channels: int, name: str) -> int:
        half = channels // 2
        path1 = self.add("Conv2D", "path", f"{name}_path1", x, size=half, stride=2)
        shifted = self.add("strided_slice", "crop", f"{name}_shift_crop",
                           self.add("Pad", "pad", f"{name}_shift_pad", x))
        path2 = self.add("Conv2D", "path", f"{name}_path2", shifted, size=half, stride=2)
        concat = self.add("concat", "concat", f"{name}_concat", path1, path2)
        return self.add("FusedBatchNormV3", "bn", f"{name}_bn", concat)

    def op(self, x: int, op: str, channels: int, stride: int, name: str) -> int:
        info = OPS[op]
        if info.kind == "sep":
            return self.add("separable_conv2d/depthwise", "sep", f"{name}_sep",
                            self.relu(x, f"{name}_relu"), size=channels, kernel=info.kernel,
                            stride=stride)
        if info.kind in ("avg", "max"):
            return self.add("AvgPool" if info.kind == "avg" else "MaxPool", info.kind,
                            f"{name}_pool", x, kernel=info.kernel, stride=stride)
        if stride == 2:
            return self.factorized_reduce(x, channels, f"{name}_reduce")
        return x


def _network(spec) -> tuple[list[_Layer], int]:
    """The layers of ``spec``'s model (mirroring the builder) and the head ReLU's index."""
    g = _Layers()
    stem = g.add("Conv2D", "stem", "stem_conv", size=spec.filters, kernel=3)
    outputs = {-1: stem}
    cell = spec.cell
    for plan in spec.layer_plan():
        if not plan.live:
            continue
        prefix, ch = f"cell_{plan.index}", plan.channels
        states: list[Any] = []
        for which, cal in enumerate(plan.calibrate):
            if not cell.uses_input(which):
                states.append(None)
                continue
            t = outputs[plan.sources[which]]
            name = f"{prefix}_calib{which}"
            if cal.kind == "conv":
                t = g.relu_conv_bn(t, ch, name)
            elif cal.kind == "reduce":
                t = g.factorized_reduce(g.relu(t, f"{name}_relu"), ch, f"{name}_reduce")
            states.append(t)
        for j, block in enumerate(cell.blocks):
            ends = [g.op(states[index], op, ch, plan.op_stride(index),
                         f"{prefix}_block_{j}_{side}_{op}")
                    for side, (index, op) in zip("ab", block.sides())]
            states.append(g.add("add", "add", f"{prefix}_block_{j}_add", *ends))
        ends = [states[2 + j] for j in cell.unused_blocks]
        t = ends[0] if len(ends) == 1 else g.add("concat", "concat", f"{prefix}_concat", *ends)
        outputs[plan.index] = g.relu_conv_bn(t, ch, f"{prefix}_out")
    return g.layers, g.relu(outputs[spec.num_layers - 1], "head_relu")


def _execution_order(layers: list[_Layer]) -> list[int]:
    """Reverse post order of a depth-first search from the stem that pushes each node's
    consumers in ascending name order (so visits the last-named first), as TensorFlow's
    ``GetReversePostOrder`` orders the graph the converter imports."""
    consumers: list[set[int]] = [set() for _ in layers]
    for i, layer in enumerate(layers):
        for k in layer.inputs:
            consumers[k].add(i)
    ordered = [sorted(c, key=lambda i: layers[i].name) for c in consumers]
    visited = [False] * len(layers)
    post: list[int] = []
    stack = [(0, False)]
    while stack:
        node, leave = stack.pop()
        if leave:
            post.append(node)
            continue
        if visited[node]:
            continue
        visited[node] = True
        stack.append((node, True))
        stack.extend((c, False) for c in ordered[node] if not visited[c])
    post.reverse()
    return post


def enas_graph(spec, g) -> Any:
    """The converted graph of an :class:`~keras_cnas.spaces.enas_cell.EnasNet`, recorded
    with the :class:`~keras_cnas.costs.deployment.GraphBuilder` ``g``."""
    layers, head = _network(spec)
    order = _execution_order(layers)
    # Merge equal weight-free layers into the first in execution order.
    canon = list(range(len(layers)))
    seen: dict[tuple, int] = {}
    for i in order:
        layer = layers[i]
        if layer.kind in _WEIGHT_FREE:
            key = (layer.kind, tuple(canon[k] for k in layer.inputs), layer.kernel, layer.stride)
            first = seen.setdefault(key, i)
            canon[i] = first
    kept = [i for i in order if canon[i] == i]
    uses = [0] * len(layers)
    for i in kept:
        for k in layers[i].inputs:
            uses[canon[k]] += 1
    # A ReLU that is its producer's only use fuses into it (the producer keeps its place).
    fused: dict[int, int] = {}
    for i in kept:
        layer = layers[i]
        if layer.kind == "relu":
            producer = canon[layer.inputs[0]]
            if layers[producer].kind in _FUSES_RELU and uses[producer] == 1:
                fused[producer] = i
    emit = _Emitter(g, layers, canon, fused)
    for i in kept:
        producer = canon[layers[i].inputs[0]] if layers[i].inputs else -1
        if layers[i].kind == "relu" and fused.get(producer) == i:
            emit.tensor[i] = emit.tensor[producer]
        else:
            emit.layer(i)
    emit.name_constants()
    x = emit.tensor[canon[head]]
    view = g.classifier(g.global_average_pool(x, name=f"{_NET}global_pool/Mean"),
                        spec.num_classes, _NET[:-1])
    groups = [tensors for key, (_, *tensors) in emit.unnamed.items() if key[0] == "zeros"]
    return dataclasses.replace(view, constant_order=_constant_order(view.main, groups))


def _constant_order(sg, zero_groups: list[list[int]]) -> tuple[int, ...]:
    """The constants in the converter's file order: the unquantized int32 operands by
    their first reader, then the rest by their readers from the last op back (a reader's
    operands last first: a bias before its weights); the zero biases of one channel count
    sit together where the first of them is read."""
    tensors = sg.tensors
    group_of = {t: group for group in zero_groups for t in group}
    shape_operands: list[int] = []
    for op in sg.operators:
        for k in op.inputs:
            t = tensors[k]
            if t.is_constant and not t.num_scales and t.dtype == "INT32" and k not in shape_operands:
                shape_operands.append(k)
    first_reader = {}
    for op in sg.operators:
        for k in op.inputs:
            group = group_of.get(k)
            if group is not None:
                first_reader.setdefault(id(group), op.index)
    placed = set(shape_operands)
    rest: list[int] = []
    for op in reversed(sg.operators):
        for k in reversed(op.inputs):
            if k in placed or not tensors[k].is_constant:
                continue
            group = group_of.get(k)
            if group is None:
                rest.append(k)
                placed.add(k)
            elif first_reader[id(group)] == op.index:
                rest.extend(group)
                placed.update(group)
    return tuple(shape_operands + rest)


class _Emitter:
    """Records each kept layer's converted ops; ``tensor`` maps a layer to its output."""

    def __init__(self, g, layers: list[_Layer], canon: list[int], fused: dict[int, int]):
        self.g, self.layers, self.canon, self.fused = g, layers, canon, fused
        self.tensor: dict[int, int] = {}
        self.shifts = sum(layer.kind == "pad" for layer in layers)  # in the Keras model
        self._zero_biases: dict[int, int] = {}  # float32: one per channel count
        self._shift: tuple[int, tuple[int, int, int]] | None = None  # PAD / SLICE operands
        # The converter's unnamed constants ("arith.constant<k>"): per constant of the float
        # graph, (the op that first reads it, its operand slot) and its tensors (an int8
        # graph quantizes a zero bias per use).
        self.unnamed: dict[Any, list] = {}

    def _input(self, layer: _Layer, k: int = 0) -> int:
        return self.tensor[self.canon[layer.inputs[k]]]

    def _relu_name(self, i: int) -> str:
        """The fused ReLU's op name, ``;``-joined before the producer's, or ''."""
        relu = self.fused.get(i)
        return f"{self.layers[relu].name};" if relu is not None else ""

    def _activation(self, i: int) -> int:
        return 1 if i in self.fused else 0  # RELU

    def _note(self, key: Any, tensor: int, slot: int = 0) -> int:
        entry = self.unnamed.get(key)
        if entry is None:
            self.unnamed[key] = [(len(self.g.operators), slot), tensor]
        elif tensor not in entry:
            entry.append(tensor)
        return tensor

    def _zero_bias(self, channels: int) -> int:
        g = self.g
        bias = self._zero_biases.get(channels)
        if bias is None or g.int8:
            bias = self._zero_biases[channels] = g.constant((channels,), "bias")
        return self._note(("zeros", channels), bias)

    def _shift_operands(self, slice_operands: bool, scope: str) -> Any:
        """The PAD's (or the STRIDED_SLICE's) constant operands. One pixel shift in the
        model keeps TensorFlow's names for them; the equal constants of several are merged
        into one unnamed constant each."""
        g = self.g
        if self._shift is None:
            self._shift = (g.constant((4, 2), "int32"),
                           tuple(g.constant((4,), "int32") for _ in range(3)))
        if self.shifts == 1:
            if not slice_operands:
                t = self._shift[0]
                g.tensors[t] = g.tensors[t]._replace(name=f"{scope}/Pad/paddings")
                return t
            for t, suffix in zip(self._shift[1], ("", "_1", "_2")):
                g.tensors[t] = g.tensors[t]._replace(name=f"{scope}/strided_slice/stack{suffix}")
            return self._shift[1]
        if not slice_operands:
            return self._note("paddings", self._shift[0])
        return tuple(self._note(name, t, slot) for slot, (name, t) in
                     enumerate(zip(("begin", "end", "strides"), self._shift[1])))

    def name_constants(self) -> None:
        """Names the unnamed constants as the converter does and marks the ones whose data
        an earlier one holds. The float graph numbers them ``arith.constant``,
        ``arith.constant1``, ... in descending order of their first reader (a pass that
        inserts each new constant at the top of the function); an int8 graph names its
        copies of one by numbering that name again, around the names already taken. Equal data is stored once: the zero
        biases of one channel count, and the strided slice's ``end`` (four int32 zeros)
        with a 4-channel zero bias."""
        g = self.g
        ranked = sorted(self.unnamed.items(), key=lambda kv: (-kv[1][0][0], kv[1][0][1]))
        zeros: dict[int, list[int]] = {}  # bytes -> tensors of zeros
        bases = [g.unique(f"arith.constant{k or ''}") for k in range(len(ranked))]
        for base, (key, (_, first, *copies)) in zip(bases, ranked):
            # The float graph's names are all taken before an int8 copy is numbered.
            g.tensors[first] = g.tensors[first]._replace(name=base)
            for t in copies:
                g.tensors[t] = g.tensors[t]._replace(name=g.unique(base))
            if key[0] == "zeros":
                zeros.setdefault(g.tensors[first].nbytes, []).extend([first, *copies])
        if self._shift is not None:  # the slice's end: four int32 zeros
            zeros.setdefault(16, []).append(self._shift[1][1])
        for tensors in zeros.values():
            g.shared_buffers.update(sorted(tensors)[1:])

    def layer(self, i: int) -> None:
        g, layer = self.g, self.layers[i]
        kind, scope = layer.kind, f"{_NET}{layer.scope}"
        if kind == "stem":
            conv = f"{scope}/Conv2D"
            bn = f"{_NET}stem_bn/FusedBatchNormV3"
            out = g.conv(g.x, layer.size, (3, 3), 1, activation=self._activation(i),
                         weights_name=conv, bias_name=f"{self._relu_name(i)}{bn};{conv}")
        elif kind == "conv":  # 1x1 conv + BN ("valid" padding)
            conv = f"{scope}/Conv2D"
            bn = f"{_NET}{layer.scope[:-len('_conv')]}_bn/FusedBatchNormV3"
            out = g.conv(self._input(layer), layer.size, (1, 1), 1, valid=True,
                         activation=self._activation(i), weights_name=conv,
                         bias_name=f"{self._relu_name(i)}{bn};{conv}")
        elif kind == "sep":
            x = self._input(layer)
            dw = f"{scope}/separable_conv2d/depthwise"
            y = g.conv_with_bias(x, 0, layer.kernel, layer.stride, self._zero_bias(layer.size),
                                 depthwise=True, weights_name=dw, name=dw)
            pw = f"{scope}/separable_conv2d"
            bn = f"{_NET}{layer.scope[:-len('_sep')]}_bn/FusedBatchNormV3"
            out = g.conv(y, layer.size, (1, 1), 1, valid=True, weights_name=pw,
                         bias_name=f"{bn};{pw}")
        elif kind == "path":
            conv = f"{scope}/Conv2D"
            out = g.conv_with_bias(self._input(layer), layer.size, 1, 2,
                                   self._zero_bias(layer.size), valid=True, weights_name=conv,
                                   name=conv)
        elif kind == "pad":
            out = g.pad(self._input(layer), self._shift_operands(False, scope), (1, 1),
                        name=f"{scope}/Pad")
        elif kind == "crop":
            x = self._input(layer)
            h, w, c = g.shape(x)
            out = g.strided_slice(x, self._shift_operands(True, scope), (h - 1, w - 1, c),
                                  begin_mask=9, end_mask=15, name=f"{scope}/strided_slice")
        elif kind == "concat":
            out = g.concatenation(tuple(self._input(layer, k) for k in range(len(layer.inputs))),
                                  name=f"{scope}/concat")
        elif kind == "bn":  # MUL + ADD, constants: the ADD's first, then the MUL's
            x = self._input(layer)
            name = f"{scope}/FusedBatchNormV3"
            c = g.shape(x)[2]
            offset = g.constant((c,), "per_tensor", name)
            scale = g.constant((c,), "per_tensor", name)
            y = g.mul(x, scale, name=name)
            relu = self._relu_name(i)
            out = g.add(y, offset, self._activation(i), name=f"{relu}{name}" if relu else name)
        elif kind == "add":
            name = f"{self._relu_name(i)}{scope}/add"
            out = g.add(self._input(layer, 0), self._input(layer, 1), self._activation(i),
                        name=name)
        elif kind in ("avg", "max"):
            x = self._input(layer)
            h, w, _ = g.shape(x)
            s = layer.stride
            out = g.pool(x, (3, 3), (s, s), "AVERAGE_POOL_2D" if kind == "avg" else "MAX_POOL_2D",
                         out_hw=(-(-h // s), -(-w // s)),
                         name=f"{scope}/{'AvgPool' if kind == 'avg' else 'MaxPool'}")
        else:  # a standalone ReLU
            out = g.relu(self._input(layer), name=layer.name)
        self.tensor[i] = out


__all__ = ["enas_graph"]
