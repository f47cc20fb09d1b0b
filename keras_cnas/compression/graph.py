"""Which channels of a Keras model can be removed, and which must go together.

:class:`ChannelGraph` walks a Sequential or Functional ``tf_keras`` model and sorts every
channel of every tensor into *channel groups*. A group is a set of units that are removed
together: the filters of a ``Conv2D`` (or units of a ``Dense``) and every tensor those
channels flow into unchanged — through BatchNorm, activations, pooling, padding, dropout,
a depthwise conv (channel by channel) — and, across a residual ``Add`` (or another
element-wise merge), the channels of every tensor added to them. So all the convs writing
into one residual stream share one group, and removing a unit removes that filter from
each of them.

A tensor's channels are described by a *layout*: a tuple of pieces ``(group, repeat)``
laid end to end. ``Concatenate`` joins layouts; a depthwise conv with depth multiplier
``m`` turns ``(g, r)`` into ``(g, r * m)`` (unit ``u`` owns channels ``u*r*m ...``);
``Flatten`` repeats the layout once per spatial position, which is exactly how a ``Dense``
after it sees channel ``c`` at every position.

Some groups cannot shrink ("pinned"): the model's inputs and outputs, channels a softmax
normalises over, channels an activation with ``f(0) != 0`` would turn into a constant
(sigmoid), inputs of a grouped conv that mix several groups, and merges of tensors whose
layouts do not line up. A grouped ``Conv2D(groups=g)`` keeps its groups: its input and
output groups get a *partition* ``g``, and any removal keeps the same number of units in
each of the ``g`` blocks.

Example:
    >>> from keras_cnas._keras import keras
    >>> L = keras.layers
    >>> x = inputs = keras.Input((8, 8, 3), name="image")
    >>> a = L.Conv2D(8, 3, padding="same", name="a")(x)
    >>> b = L.Conv2D(8, 3, padding="same", name="b")(L.ReLU()(a))
    >>> y = L.Add()([a, b])
    >>> outputs = L.Dense(2, name="out")(L.GlobalAveragePooling2D()(y))
    >>> graph = ChannelGraph(keras.Model(inputs, outputs))
    >>> [(g.name, g.size, g.producers, g.prunable) for g in graph.groups]
    [('image', 3, (), False), ('a', 8, ('a', 'b'), True), ('out', 2, ('out',), False)]
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from keras_cnas._keras import keras
from keras_cnas.compression.errors import UnsupportedModelError

__all__ = ["ChannelGraph", "ChannelGroup", "Op", "Piece", "SUPPORTED_LAYERS"]

L = keras.layers

#: Layers that create channels (the prunable units).
_PRODUCERS = (L.Conv2D, L.Dense)
#: Layers with per-channel state that follow their input's channels.
_CHANNELWISE = (L.DepthwiseConv2D, L.BatchNormalization, L.PReLU)
#: Element-wise merges: their inputs' channels are the same channels.
_MERGES = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)
#: Activations, in place: they keep the layout.
_ACTIVATIONS = (L.Activation, L.ReLU, L.LeakyReLU, L.ELU, L.ThresholdedReLU, L.Softmax)
#: Identity at inference (regularisation only): they keep the layout, in place.
_IDENTITY = (L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.GaussianNoise,
             L.GaussianDropout, L.AlphaDropout, L.ActivityRegularization)
#: Spatial ops that keep every channel (each channel is processed on its own).
_SPATIAL = (L.MaxPooling1D, L.MaxPooling2D, L.AveragePooling1D, L.AveragePooling2D,
            L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalMaxPooling1D,
            L.GlobalMaxPooling2D, L.ZeroPadding2D, L.Cropping2D, L.UpSampling2D)
_RESHAPES = (L.Flatten, L.Reshape)

#: Every layer class channel surgery rewrites (exact classes: a subclass may compute
#: something else, so it is refused too).
SUPPORTED_LAYERS: tuple[type, ...] = (L.InputLayer, *_PRODUCERS, *_CHANNELWISE, *_MERGES,
                                      L.Concatenate, *_ACTIVATIONS, *_IDENTITY, *_SPATIAL,
                                      *_RESHAPES)

#: Activations with f(0) = 0: a removed (zeroed) channel stays zero through them.
ZERO_PRESERVING = frozenset({"linear", "relu", "relu6", "elu", "selu", "tanh", "gelu", "swish",
                             "silu", "softsign", "leaky_relu", "mish", "hard_swish",
                             "hard_silu"})

#: Op kinds whose output shares its input's buffer (in place at inference: BatchNorm folds
#: into the conv before it, activations and reshapes do not copy).
ALIAS_KINDS = frozenset({"batchnorm", "activation", "identity", "reshape"})

Piece = tuple[int, int]  # (group index, repeat)


@dataclasses.dataclass(frozen=True)
class ChannelGroup:
    """Units removed together.

    Attributes:
        index: position in :attr:`ChannelGraph.groups`.
        name: the first layer that creates these channels (a producer, an input or a
            reshape); keys of ``keep`` may use it or any producer's name.
        size: units in the model as it is.
        producers: the ``Conv2D`` / ``Dense`` layers whose filters are these units.
        members: every layer with weights or a config tied to these units (producers,
            consumers' channel-wise layers such as BatchNorm and depthwise convs).
        partition: units are kept in equal numbers in each of ``partition`` contiguous
            blocks (a grouped conv reads or writes them); 1 for no constraint.
        pinned: why the group cannot shrink; empty when it can.
    """

    index: int
    name: str
    size: int
    producers: tuple[str, ...]
    members: tuple[str, ...]
    partition: int
    pinned: tuple[str, ...]

    @property
    def prunable(self) -> bool:
        return not self.pinned and self.size > self.partition


@dataclasses.dataclass
class Op:
    """One layer call, in the order Keras runs them.

    Attributes:
        layer: the layer.
        kind: ``"input"``, ``"conv"``, ``"depthwise"``, ``"dense"``, ``"batchnorm"``,
            ``"prelu"``, ``"merge"``, ``"concat"``, ``"activation"``, ``"identity"``,
            ``"spatial"``, ``"reshape"``.
        inputs: keys of the input tensors (``(layer, node, index)``).
        output: key of the output tensor.
        in_layouts: the layout of each input.
        out_layout: the layout of the output.
        in_shapes: the static shape of each input (batch dimension first, None).
        out_shape: the static shape of the output.
    """

    layer: Any
    kind: str
    inputs: list[tuple[str, int, int]]
    output: tuple[str, int, int]
    in_layouts: list[tuple[Piece, ...]]
    out_layout: tuple[Piece, ...]
    in_shapes: list[tuple[int | None, ...]]
    out_shape: tuple[int | None, ...]

    @property
    def name(self) -> str:
        return self.layer.name


class _Groups:
    """Union-find over raw group ids, with each root's attributes."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.name: list[str] = []
        self.producers: list[list[str]] = []
        self.members: list[list[str]] = []
        self.partition: list[int] = []
        self.pinned: list[list[str]] = []

    def new(self, size: int, name: str, producer: str | None = None,
            pinned: str | None = None, partition: int = 1) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.name.append(name)
        self.producers.append([producer] if producer else [])
        self.members.append([producer] if producer else [])
        self.partition.append(partition)
        self.pinned.append([pinned] if pinned else [])
        return len(self.parent) - 1

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        if b < a:
            a, b = b, a
        self.parent[b] = a
        self.producers[a] += self.producers[b]
        self.members[a] += self.members[b]
        self.partition[a] = math.lcm(self.partition[a], self.partition[b])
        self.pinned[a] += self.pinned[b]

    def pin(self, g: int, reason: str) -> None:
        root = self.find(g)
        if reason not in self.pinned[root]:
            self.pinned[root].append(reason)

    def member(self, g: int, layer: str) -> None:
        root = self.find(g)
        if layer not in self.members[root]:
            self.members[root].append(layer)

    def constrain(self, g: int, partition: int) -> None:
        root = self.find(g)
        self.partition[root] = math.lcm(self.partition[root], partition)


def _key(tensor: Any) -> tuple[str, int, int]:
    history = tensor._keras_history
    return history.layer.name, history.node_index, history.tensor_index


def _shape(tensor: Any) -> tuple[int | None, ...]:
    return tuple(None if d is None else int(d) for d in tensor.shape)


def _activation_name(fn: Any) -> str:
    """``"relu"``, ``"sigmoid"``, ...: Keras' built-in activations are named functions."""
    return str(getattr(fn, "__name__", repr(fn)))


def _zero_issue(layer: Any) -> str | None:
    """Why a zeroed channel would not stay zero through ``layer``'s activation, if so."""
    if isinstance(layer, L.Softmax) or (type(layer) is L.Activation
                                        and _activation_name(layer.activation) == "softmax"):
        return f"softmax '{layer.name}' normalises over these channels"
    if type(layer) is L.ReLU:
        slope, threshold = float(layer.negative_slope), float(layer.threshold)
        if slope * threshold != 0:
            return f"ReLU '{layer.name}' maps 0 to {-slope * threshold:g}"
        return None
    activation = getattr(layer, "activation", None)
    if activation is None or type(layer) in (L.LeakyReLU, L.ELU, L.ThresholdedReLU):
        return None
    name = _activation_name(activation)
    if name == "softmax":
        return f"softmax '{layer.name}' normalises over these channels"
    if name not in ZERO_PRESERVING:
        return (f"activation {name!r} of '{layer.name}' does not map 0 to 0, so a removed "
                "channel would not be zero in the original")
    return None


class ChannelGraph:
    """The channel groups of a Sequential or Functional model, and its ops in run order.

    Args:
        model: a built ``tf_keras`` Sequential or Functional model of
            :data:`SUPPORTED_LAYERS` (channels-last), each layer called once.

    Raises:
        UnsupportedModelError: a subclassed or unbuilt model, a nested model, a shared
            layer, a channels-first layer, or any other layer class; the message names the
            layer and its class.

    Attributes:
        model: the analysed model.
        groups: every :class:`ChannelGroup`, in order of first appearance.
        ops: every layer call as an :class:`Op`, in Keras' run order (inputs first).
        outputs: keys of the model's output tensors.
    """

    def __init__(self, model: Any):
        _check_model(model)
        self.model = model
        raw = _Groups()
        layouts: dict[tuple[str, int, int], tuple[Piece, ...]] = {}
        ops: list[Op] = []
        for tensor in model.inputs:
            layer = tensor._keras_history.layer
            shape = _shape(tensor)
            g = raw.new(int(shape[-1]), layer.name, pinned=f"'{layer.name}' is a model input")
            layouts[_key(tensor)] = ((g, 1),)
            ops.append(Op(layer, "input", [], _key(tensor), [], ((g, 1),), [], shape))
        nodes = set(model._network_nodes)
        for layer in model.layers:
            if isinstance(layer, L.InputLayer):
                continue
            node_indices = [i for i in range(len(layer._inbound_nodes))
                            if f"{layer.name}_ib-{i}" in nodes]
            if len(node_indices) != 1:
                raise UnsupportedModelError(
                    f"model: layer '{layer.name}' ({type(layer).__name__}) is called "
                    f"{len(node_indices)} times in {model.name!r}; channel surgery needs each "
                    "layer called once: give every call its own layer")
            node = layer._inbound_nodes[node_indices[0]]
            inputs = list(node.keras_inputs)
            outputs = tf_flatten(node.outputs)
            if len(outputs) != 1:
                raise UnsupportedModelError(
                    f"model: layer '{layer.name}' ({type(layer).__name__}) has "
                    f"{len(outputs)} outputs; channel surgery supports single-output layers")
            in_keys = [_key(t) for t in inputs]
            missing = [k for k in in_keys if k not in layouts]
            if missing:
                raise UnsupportedModelError(
                    f"model: layer '{layer.name}' ({type(layer).__name__}) reads tensors "
                    f"{missing} from outside the model; build the model from keras.Input")
            in_layouts = [layouts[k] for k in in_keys]
            in_shapes = [_shape(t) for t in inputs]
            out_shape = _shape(outputs[0])
            kind, out_layout = _visit(layer, raw, in_layouts, in_shapes, out_shape)
            layouts[_key(outputs[0])] = out_layout
            ops.append(Op(layer, kind, in_keys, _key(outputs[0]), in_layouts, out_layout,
                          in_shapes, out_shape))
        self.outputs = [_key(t) for t in model.outputs]
        for key in self.outputs:
            for g, _ in layouts[key]:
                raw.pin(g, f"'{key[0]}' is a model output")
        self._finalize(raw, ops)

    # --- construction ------------------------------------------------------------------------

    def _finalize(self, raw: _Groups, ops: list[Op]) -> None:
        index: dict[int, int] = {}
        for op in ops:  # number the groups in order of first appearance
            for g, _ in op.out_layout:
                root = raw.find(g)
                if root not in index:
                    index[root] = len(index)

        def remap(layout: tuple[Piece, ...]) -> tuple[Piece, ...]:
            return tuple((index[raw.find(g)], r) for g, r in layout)

        for op in ops:
            op.in_layouts = [remap(layout) for layout in op.in_layouts]
            op.out_layout = remap(op.out_layout)
        groups = [None] * len(index)
        for root, i in index.items():
            groups[i] = ChannelGroup(
                index=i, name=raw.name[root], size=raw.size[root],
                producers=tuple(dict.fromkeys(raw.producers[root])),
                members=tuple(dict.fromkeys(raw.members[root])),
                partition=raw.partition[root], pinned=tuple(raw.pinned[root]))
        self.groups: tuple[ChannelGroup, ...] = tuple(groups)  # type: ignore[arg-type]
        self.ops: list[Op] = ops
        self._op_by_name = {op.name: op for op in ops}
        self._by_name: dict[str, int] = {}
        for group in self.groups:
            for name in (group.name, *group.producers):
                self._by_name.setdefault(name, group.index)
        self._consumers: dict[tuple[str, int, int], list[Op]] = {}
        for op in ops:
            for key in op.inputs:
                self._consumers.setdefault(key, []).append(op)

    # --- queries ---------------------------------------------------------------------------

    def op(self, name: str) -> Op:
        """The op of the layer called ``name``."""
        try:
            return self._op_by_name[name]
        except KeyError:
            raise KeyError(f"layer {name!r} is not in model {self.model.name!r}; its layers: "
                           f"{', '.join(self._op_by_name)}") from None

    def group(self, name: str | int) -> ChannelGroup:
        """The group of a producer (its output channels) or group ``name`` or index."""
        if isinstance(name, (int, np.integer)):
            return self.groups[int(name)]
        if name in self._by_name:
            return self.groups[self._by_name[name]]
        op = self._op_by_name.get(name)
        hint = ""
        if op is not None:
            hint = (f"; '{name}' ({type(op.layer).__name__}) creates no channels of its own: "
                    "name the Conv2D or Dense whose filters you mean")
        raise KeyError(f"keep: no channel group named {name!r}{hint}; groups: "
                       f"{', '.join(g.name for g in self.groups)}")

    @property
    def prunable(self) -> list[ChannelGroup]:
        """The groups that can shrink."""
        return [g for g in self.groups if g.prunable]

    def consumers(self, op: Op) -> list[Op]:
        """The ops reading ``op``'s output."""
        return self._consumers.get(op.output, [])

    def signal_layers(self, group: ChannelGroup) -> list[str]:
        """Where each producer's contribution to ``group`` is final: the BatchNorm right
        after the producer if it is its only reader, else the producer itself (noise and
        importance probes go there)."""
        out = []
        for name in group.producers:
            op = self._op_by_name[name]
            readers = self.consumers(op)
            if len(readers) == 1 and readers[0].kind == "batchnorm":
                out.append(readers[0].name)
            else:
                out.append(name)
        return out

    def full_counts(self) -> list[int]:
        """Every group at its current size."""
        return [g.size for g in self.groups]

    def min_counts(self) -> list[int]:
        """The smallest model surgery can make: one unit per block of each prunable group."""
        return [g.partition if g.prunable else g.size for g in self.groups]

    @staticmethod
    def channels(layout: Iterable[Piece], counts: Sequence[int]) -> int:
        """Channels of a tensor with ``layout`` when group ``g`` has ``counts[g]`` units."""
        return sum(counts[g] * r for g, r in layout)

    def units_of(self, layout: Sequence[Piece]) -> tuple[np.ndarray, np.ndarray]:
        """For each channel of a tensor with ``layout``: its group and its unit."""
        groups, units = [], []
        for g, r in layout:
            size = self.groups[g].size
            groups.append(np.full(size * r, g))
            units.append(np.repeat(np.arange(size), r))
        if not groups:
            return np.zeros(0, int), np.zeros(0, int)
        return np.concatenate(groups), np.concatenate(units)

    def describe(self) -> str:
        """One line per group: name, size, producers, partition, why pinned."""
        lines = []
        for g in self.groups:
            state = "prunable" if g.prunable else "pinned: " + "; ".join(g.pinned or ("1 unit",))
            part = f", partition {g.partition}" if g.partition > 1 else ""
            lines.append(f"[{g.index}] {g.name}: {g.size} units, producers "
                         f"{', '.join(g.producers) or '-'}{part} ({state})")
        return "\n".join(lines)


def tf_flatten(structure: Any) -> list[Any]:
    from keras_cnas._keras import tf

    return tf.nest.flatten(structure)


def _check_model(model: Any) -> None:
    if not isinstance(model, keras.Model):
        raise UnsupportedModelError(f"model: expected a tf_keras Model, got {type(model).__name__}")
    if not getattr(model, "_is_graph_network", False):
        kind = "an unbuilt Sequential" if isinstance(model, keras.Sequential) else \
            f"a subclassed model ({type(model).__name__})"
        raise UnsupportedModelError(
            f"model: {model.name!r} is {kind}; channel surgery rewrites Sequential or Functional "
            "models whose graph is known: start it with keras.Input(shape) (or pass "
            "input_shape to the first layer)")
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            raise UnsupportedModelError(
                f"model: layer '{layer.name}' is a nested model ({type(layer).__name__}); "
                "channel surgery needs one flat graph: rebuild the model calling the nested "
                "model's layers directly")
        if type(layer) not in SUPPORTED_LAYERS:
            names = sorted({cls.__name__ for cls in SUPPORTED_LAYERS if cls is not L.InputLayer})
            hint = (" (a raw TensorFlow op in a Functional model: use the keras.layers "
                     "equivalent, e.g. keras.layers.Add for +)"
                    if type(layer).__name__ in ("TFOpLambda", "SlicingOpLambda") else "")
            raise UnsupportedModelError(
                f"model: layer '{layer.name}' ({type(layer).__name__}) is not supported by "
                f"channel surgery{hint}; supported layers: {', '.join(names)}; rewrite the "
                "model with these layers")
        data_format = getattr(layer, "data_format", None)
        if data_format not in (None, "channels_last"):
            raise UnsupportedModelError(
                f"model: layer '{layer.name}' ({type(layer).__name__}) has "
                f"data_format={data_format!r}; channel surgery works on channels_last models")


def _visit(layer: Any, raw: _Groups, in_layouts: list[tuple[Piece, ...]],
           in_shapes: list[tuple], out_shape: tuple) -> tuple[str, tuple[Piece, ...]]:
    """The op kind of ``layer`` and its output layout; records ties and pins in ``raw``."""
    name, cls = layer.name, type(layer)
    layout = in_layouts[0] if in_layouts else ()
    issue = _zero_issue(layer)

    def pin_all(layouts: Iterable[tuple[Piece, ...]], reason: str) -> None:
        for lay in layouts:
            for g, _ in lay:
                raw.pin(g, reason)

    if cls is L.Conv2D or cls is L.Dense:
        if cls is L.Conv2D and layer.groups > 1:
            if len(layout) == 1 and layout[0][1] == 1:
                raw.constrain(layout[0][0], layer.groups)
            else:
                pin_all([layout], f"grouped conv '{name}' reads channels of several groups")
        for g, _ in layout:
            raw.member(g, name)
        units = layer.filters if cls is L.Conv2D else layer.units
        g = raw.new(int(units), name, producer=name,
                    partition=layer.groups if cls is L.Conv2D else 1)
        if issue:
            raw.pin(g, issue)
        return ("conv" if cls is L.Conv2D else "dense"), ((g, 1),)
    if cls is L.DepthwiseConv2D:
        m = int(layer.depth_multiplier)
        for g, _ in layout:
            raw.member(g, name)
            if issue:
                raw.pin(g, issue)
        return "depthwise", tuple((g, r * m) for g, r in layout)
    if cls is L.BatchNormalization:
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        rank = len(in_shapes[0])
        if [a % rank for a in axes] != [rank - 1]:
            raise UnsupportedModelError(
                f"model: layer '{name}' (BatchNormalization) normalises axis {layer.axis}; "
                "channel surgery supports BatchNormalization over the channel axis (-1) only")
        for g, _ in layout:
            raw.member(g, name)
        return "batchnorm", layout
    if cls is L.PReLU:
        for g, _ in layout:
            raw.member(g, name)
        return "prelu", layout
    if cls in _MERGES:
        counts = [sum(raw.size[raw.find(g)] * r for g, r in lay) for lay in in_layouts]
        widest = max(counts)
        if cls is L.Multiply:  # x * (a 1-channel map): zero stays zero; ignore the map.
            tied = [lay for lay, c in zip(in_layouts, counts) if c == widest]
        else:
            tied = in_layouts
            if any(c != widest for c in counts):
                pin_all(in_layouts, f"{cls.__name__} '{name}' broadcasts a tensor over channels")
        _unify(raw, tied, f"{cls.__name__} '{name}'", pin_all)
        return "merge", next(lay for lay, c in zip(in_layouts, counts) if c == widest)
    if cls is L.Concatenate:
        rank = len(out_shape)
        if layer.axis % rank == rank - 1:
            return "concat", tuple(p for lay in in_layouts for p in lay)
        _unify(raw, in_layouts, f"Concatenate '{name}' (axis {layer.axis})", pin_all)
        return "concat", layout
    if cls in _ACTIVATIONS or cls in _IDENTITY:
        if issue:
            pin_all([layout], issue)
        return ("activation" if cls in _ACTIVATIONS else "identity"), layout
    if cls in _SPATIAL:
        return "spatial", layout
    if cls is L.Flatten or cls is L.Reshape:
        in_shape = in_shapes[0]
        spatial = int(np.prod([int(d) for d in in_shape[1:-1]], dtype=np.int64))
        if len(out_shape) == 2:  # to a vector: every spatial position repeats the channels
            return "reshape", tuple(layout) * spatial
        if out_shape[-1] == in_shape[-1]:  # the channel axis survives
            return "reshape", layout
        pin_all([layout], f"Reshape '{name}' mixes the channel axis")
        g = raw.new(int(out_shape[-1]), name, pinned=f"Reshape '{name}' mixes the channel axis")
        return "reshape", ((g, 1),)
    raise AssertionError(f"unhandled layer class {cls.__name__}")  # _check_model refused it


def _unify(raw: _Groups, layouts: list[tuple[Piece, ...]], where: str, pin_all: Any) -> None:
    """Ties the channels of tensors combined element-wise, piece by piece."""
    first = layouts[0]
    for other in layouts[1:]:
        same = len(other) == len(first) and all(
            r1 == r2 and raw.size[raw.find(g1)] == raw.size[raw.find(g2)]
            for (g1, r1), (g2, r2) in zip(first, other))
        if not same:
            pin_all(layouts, f"{where} combines tensors whose channel layouts differ")
            return
        for (g1, _), (g2, _) in zip(first, other):
            raw.union(g1, g2)


def resolve_keep(graph: ChannelGraph, keep: Mapping[str | int, Any]) -> list[np.ndarray]:
    """``keep`` (group name or producer name -> kept unit indices or a boolean mask) as one
    sorted index array per group; groups not named keep every unit. Several producers of
    one group are unified: a unit stays if any of them keeps it.

    Raises:
        KeyError: an unknown name.
        ValueError: indices out of range, a mask of the wrong length, a pinned group that
            loses units, a group left empty, or unequal counts in the blocks of a
            partitioned group.
    """
    if not isinstance(keep, Mapping):
        raise ValueError(f"keep: expected a mapping from layer name to kept filter indices, got "
                         f"{type(keep).__name__}")
    chosen: dict[int, np.ndarray] = {}
    for name, value in keep.items():
        group = graph.group(name)
        arr = np.asarray(value)
        if arr.dtype == bool:
            if arr.shape != (group.size,):
                raise ValueError(f"keep[{name!r}]: a boolean mask needs {group.size} entries "
                                 f"(the group's units), got shape {arr.shape}")
            idx = np.flatnonzero(arr)
        else:
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(f"keep[{name!r}]: expected integer unit indices or a boolean "
                                 f"mask, got dtype {arr.dtype}")
            idx = np.unique(arr.astype(np.int64).ravel())
            if idx.size and (idx[0] < 0 or idx[-1] >= group.size):
                raise ValueError(f"keep[{name!r}]: indices must lie in [0, {group.size}), got "
                                 f"{idx[0]}..{idx[-1]}")
        previous = chosen.get(group.index)
        chosen[group.index] = idx if previous is None else np.union1d(previous, idx)
    out = []
    for group in graph.groups:
        idx = chosen.get(group.index)
        if idx is None or len(idx) == group.size:
            out.append(np.arange(group.size))
            continue
        where = f"keep[{group.name!r}]"
        if group.pinned:
            raise ValueError(f"{where}: this group cannot shrink: {'; '.join(group.pinned)}")
        if len(idx) == 0:
            raise ValueError(f"{where}: keeps no unit; keep at least one filter per group "
                             f"(producers: {', '.join(group.producers)})")
        if group.partition > 1:
            per_block = np.bincount(idx // (group.size // group.partition),
                                    minlength=group.partition)
            if len(set(per_block.tolist())) != 1 or per_block[0] == 0:
                raise ValueError(
                    f"{where}: a grouped conv splits these {group.size} units into "
                    f"{group.partition} blocks, which must keep equal numbers of units; got "
                    f"{per_block.tolist()} per block; keep the same count in each block "
                    "(keras_cnas.compression.select_top does)")
        out.append(idx)
    return out
