"""Channel surgery: a new, dense model with filters physically removed (or added).

* :func:`shrink` keeps the chosen units of each channel group (see
  :mod:`keras_cnas.compression.graph`) and drops the rest everywhere they appear: a conv's
  filters and the matching input channels of every reader, BatchNorm's four vectors, a
  depthwise conv's channels, the rows of a ``Dense`` after ``Flatten`` (one per spatial
  position), and across every tensor tied by a residual ``Add`` or joined by
  ``Concatenate``. Weights are copied, so on any input the result equals
  :func:`mask_channels` of the original (the removed channels zeroed) up to float rounding.
* :func:`expand` widens groups with fresh units and zero weights *out of* them, so the
  wider model computes exactly what the narrower one did until it is trained (MorphNet's
  expand step starts from the shrunk weights this way).

Both return a new ``tf_keras.Model`` (the same class, layer names and call structure); the
input model is never modified.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from keras_cnas._checks import is_int
from keras_cnas._keras import keras
from keras_cnas.compression.graph import ChannelGraph, Op, Piece, resolve_keep

__all__ = ["clone_with_weights", "expand", "mask_channels", "resize", "shrink"]

Plan = list[np.ndarray]  # per group: the new units in order, each an old unit index or -1 (new)


def shrink(model: Any, keep: Mapping[str | int, Any], *,
           graph: ChannelGraph | None = None) -> Any:
    """A smaller copy of ``model`` without the units ``keep`` leaves out.

    Args:
        model: a Sequential or Functional model (see
            :data:`~keras_cnas.compression.SUPPORTED_LAYERS`).
        keep: for each group to shrink, its name or any of its producers' names (a
            ``Conv2D`` or ``Dense`` layer name) -> the unit indices to keep (or a boolean mask
            of the group's size). Producers tied by a residual ``Add`` share one group: a
            unit kept by any of them is kept by all. Groups not named keep every unit.
        graph: ``ChannelGraph(model)`` if already computed.

    Returns:
        A new model whose costs (:func:`~keras_cnas.compression.model_costs`) are those of
        :func:`~keras_cnas.compression.graph_costs` at the kept counts.

    Raises:
        UnsupportedModelError: the model cannot be rewritten (the message names the layer).
        KeyError: a name in ``keep`` that names no channel group.
        ValueError: a pinned group that would lose units, an empty group, or unequal
            counts in the blocks of a grouped conv.

    Example:
        >>> import numpy as np
        >>> from keras_cnas._keras import keras
        >>> model = keras.Sequential([keras.Input((8, 8, 3)),
        ...     keras.layers.Conv2D(16, 3, name="conv"), keras.layers.BatchNormalization(),
        ...     keras.layers.ReLU(), keras.layers.Flatten(), keras.layers.Dense(10, name="out")])
        >>> small = shrink(model, {"conv": [0, 3, 5, 7]})
        >>> small.get_layer("conv").filters, small.get_layer("out").kernel.shape[0]
        (4, 144)
        >>> x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
        >>> masked = mask_channels(model, {"conv": [0, 3, 5, 7]})
        >>> bool(np.allclose(small(x), masked(x), atol=1e-5))
        True
    """
    graph = graph if graph is not None else ChannelGraph(model)
    plan = [np.asarray(k, dtype=np.int64) for k in resolve_keep(graph, keep)]
    return _rebuild(model, graph, plan)


def expand(model: Any, counts: Mapping[str | int, int], *, graph: ChannelGraph | None = None,
           seed: int = 0) -> Any:
    """A wider copy of ``model`` that computes the same function until trained.

    New units get the layers' own initializers on their way in (kernels, BatchNorm's
    gamma = 1 and beta = 0) and zero weights on their way out (every reader's rows for
    them), so the output is unchanged; training then uses them. In a grouped conv's groups
    the new units are spread evenly over the blocks.

    Args:
        model: the model to widen.
        counts: group or producer name -> the new number of units (at least the current
            one; a multiple of the group's partition). Groups not named keep their width.
        graph: ``ChannelGraph(model)`` if already computed.
        seed: seeds the new units' initial weights.

    Example:
        >>> import numpy as np
        >>> from keras_cnas._keras import keras
        >>> model = keras.Sequential([keras.Input((6, 6, 2)),
        ...     keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
        ...     keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, name="out")])
        >>> wide = expand(model, {"conv": 10})
        >>> x = np.ones((1, 6, 6, 2), "float32")
        >>> wide.get_layer("conv").filters, bool(np.allclose(wide(x), model(x), atol=1e-6))
        (10, True)
    """
    graph = graph if graph is not None else ChannelGraph(model)
    if not isinstance(counts, Mapping):
        raise ValueError(f"counts: expected a mapping from layer name to a unit count, got "
                         f"{type(counts).__name__}")
    plan = [np.arange(g.size) for g in graph.groups]
    for name, count in counts.items():
        group = graph.group(name)
        if not is_int(count, numpy=True) or count < group.size:
            raise ValueError(f"counts[{name!r}]: expected an integer >= the group's {group.size} "
                             f"units (expand only widens; use shrink to remove units), got {count!r}")
        if count == group.size:
            continue
        if group.pinned:
            raise ValueError(f"counts[{name!r}]: this group cannot change width: "
                             f"{'; '.join(group.pinned)}")
        if count % group.partition:
            raise ValueError(f"counts[{name!r}]: {count} is not a multiple of the group's "
                             f"partition {group.partition} (a grouped conv splits it in "
                             f"{group.partition} blocks); use "
                             f"{count + group.partition - count % group.partition}")
        plan[group.index] = _blockwise(np.arange(group.size), group.size, group.partition, int(count))
    keras.utils.set_random_seed(seed)
    return _rebuild(model, graph, plan)


def resize(model: Any, graph: ChannelGraph, keep: Sequence[np.ndarray], counts: Sequence[int],
           seed: int = 0) -> Any:
    """Shrink to ``keep`` then widen to ``counts`` in one rebuild (MorphNet's shrink-expand).

    ``keep[g]`` are the old units group ``g`` keeps (balanced per block); ``counts[g]`` is
    its final width, at least ``len(keep[g])``.
    """
    plan = []
    for group, kept, count in zip(graph.groups, keep, counts):
        kept = np.asarray(kept, dtype=np.int64)
        if count < len(kept):
            raise ValueError(f"counts: group {group.name!r} keeps {len(kept)} units but counts "
                             f"asks for {count}")
        plan.append(kept if count == len(kept)
                    else _blockwise(kept, group.size, group.partition, int(count)))
    keras.utils.set_random_seed(seed)
    return _rebuild(model, graph, plan)


def mask_channels(model: Any, keep: Mapping[str | int, Any], *,
                  graph: ChannelGraph | None = None) -> Any:
    """A copy of ``model`` in which the units ``keep`` leaves out are exactly zero.

    Every producer's filter (kernel and bias) of a removed unit is zeroed, and so are
    the BatchNorm gamma, beta and moving mean and the depthwise kernels and biases on its
    channels, so the channel is zero in every tensor of its group. This is the reference
    :func:`shrink` is tested against (same outputs, up to rounding).
    """
    graph = graph if graph is not None else ChannelGraph(model)
    kept = resolve_keep(graph, keep)
    copy = clone_with_weights(model)
    removed = []
    for group, idx in zip(graph.groups, kept):
        mask = np.ones(group.size, bool)
        mask[idx] = False
        removed.append(mask)

    def dead(layout: Sequence[Piece]) -> np.ndarray:
        groups, units = graph.units_of(layout)
        return np.array([removed[g][u] for g, u in zip(groups, units)], bool)

    for op in graph.ops:
        if op.kind not in ("conv", "dense", "depthwise", "batchnorm"):
            continue
        layer = copy.get_layer(op.name)
        out_dead = dead(op.out_layout)
        if not out_dead.any():
            continue
        weights = layer.get_weights()
        names = [w.name.split("/")[-1].split(":")[0] for w in layer.weights]
        for i, name in enumerate(names):
            if op.kind == "batchnorm":
                if name in ("gamma", "beta", "moving_mean"):
                    weights[i][out_dead] = 0
            elif op.kind == "depthwise" and name == "depthwise_kernel":
                kernel = weights[i]  # (kh, kw, c, m): output channel c * m + j
                flat = kernel.reshape(*kernel.shape[:2], -1)
                flat[..., out_dead] = 0
                weights[i] = flat.reshape(kernel.shape)
            elif op.kind == "depthwise":
                weights[i][out_dead] = 0
            else:
                weights[i][..., out_dead] = 0
        layer.set_weights(weights)
    return copy


def clone_with_weights(model: Any) -> Any:
    """A copy of ``model`` (same layers, names and weights) that training may change."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


# --- internals --------------------------------------------------------------------------------


def _blockwise(kept: np.ndarray, size: int, partition: int, count: int) -> np.ndarray:
    """``kept`` (balanced over ``partition`` blocks of the old ``size``) then new units (-1)
    appended inside each block, so that block ``j`` of the new tensor holds old block ``j``."""
    block = size // partition
    extra = (count - len(kept)) // partition
    parts = []
    for j in range(partition):
        parts.append(kept[(kept >= j * block) & (kept < (j + 1) * block)])
        parts.append(np.full(extra, -1, dtype=np.int64))
    return np.concatenate(parts)


def _position_map(graph: ChannelGraph, layout: Sequence[Piece], plan: Plan) -> np.ndarray:
    """For each channel of the new tensor: its position in the old tensor, or -1 if new."""
    out, offset = [], 0
    for g, r in layout:
        units = plan[g][:, None]
        positions = offset + units * r + np.arange(r)
        out.append(np.where(units >= 0, positions, -1).ravel())
        offset += graph.groups[g].size * r
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _new_config(op: Op, graph: ChannelGraph, plan: Plan) -> dict[str, Any]:
    config = op.layer.get_config()
    counts = [len(p) for p in plan]
    if op.kind == "conv":
        config["filters"] = graph.channels(op.out_layout, counts)
    elif op.kind == "dense":
        config["units"] = graph.channels(op.out_layout, counts)
    elif type(op.layer) is keras.layers.Reshape:
        target = list(config["target_shape"])
        channels = graph.channels(op.out_layout, counts)
        if len(op.out_shape) == 2:
            target = [channels]
        elif op.out_shape[-1] == op.in_shapes[0][-1]:
            target[-1] = channels
        config["target_shape"] = tuple(target)
    return config


def _rebuild(model: Any, graph: ChannelGraph, plan: Plan) -> Any:
    ops = {op.name: op for op in graph.ops}

    def clone(layer: Any) -> Any:
        op = ops.get(layer.name)
        config = _new_config(op, graph, plan) if op is not None else layer.get_config()
        return type(layer).from_config(config)

    new_model = keras.models.clone_model(model, clone_function=clone)
    for op in graph.ops:
        if op.kind == "input" or not op.layer.weights:
            continue
        new_layer = new_model.get_layer(op.name)
        fresh = new_layer.get_weights()
        old = op.layer.get_weights()
        names = [w.name.split("/")[-1].split(":")[0] for w in op.layer.weights]
        new_layer.set_weights([_transfer_weight(op, graph, plan, name, o, f)
                               for name, o, f in zip(names, old, fresh)])
    return new_model


def _transfer_weight(op: Op, graph: ChannelGraph, plan: Plan, name: str, old: np.ndarray,
                     fresh: np.ndarray) -> np.ndarray:
    out_map = _position_map(graph, op.out_layout, plan)
    if op.kind in ("conv", "dense"):
        in_map = _position_map(graph, op.in_layouts[0], plan)
        if name == "bias":
            return _transfer(old, fresh, {0: (out_map, False)})
        if op.kind == "dense":
            return _transfer(old, fresh, {0: (in_map, True), 1: (out_map, False)})
        groups = int(op.layer.groups)
        if groups == 1:
            return _transfer(old, fresh, {2: (in_map, True), 3: (out_map, False)})
        return _grouped_kernel(old, fresh, in_map, out_map, groups)
    if op.kind == "depthwise":
        if name == "bias":
            return _transfer(old, fresh, {0: (out_map, False)})
        in_map = _position_map(graph, op.in_layouts[0], plan)
        return _transfer(old, fresh, {2: (in_map, False)})
    if op.kind == "batchnorm":
        return _transfer(old, fresh, {0: (out_map, False)})
    if op.kind == "prelu":
        last = len(op.in_shapes[0]) - 1
        if last in set(op.layer.shared_axes or ()):  # one alpha for every channel
            return old
        return _transfer(old, fresh, {old.ndim - 1: (out_map, False)})
    return old


def _transfer(old: np.ndarray, fresh: np.ndarray,
              maps: Mapping[int, tuple[np.ndarray, bool]]) -> np.ndarray:
    """``fresh`` with the old values copied where every mapped axis has an old position.

    ``maps[axis] = (new -> old position or -1, reads)``: along an axis that *reads* channels
    (a kernel's input axis), the entries of new channels are zeroed so they contribute
    nothing; along any other axis new entries keep their fresh initial values.
    """
    out = np.array(fresh, copy=True)
    for axis, (mapping, reads) in maps.items():
        new = np.flatnonzero(mapping < 0)
        if reads and new.size:
            index: list[Any] = [slice(None)] * out.ndim
            index[axis] = new
            out[tuple(index)] = 0
    sel_new, sel_old = [], []
    for axis in range(out.ndim):
        if axis in maps:
            mapping = maps[axis][0]
            kept = np.flatnonzero(mapping >= 0)
            sel_new.append(kept)
            sel_old.append(mapping[kept])
        else:
            sel_new.append(np.arange(out.shape[axis]))
            sel_old.append(np.arange(old.shape[axis]))
    out[np.ix_(*sel_new)] = old[np.ix_(*sel_old)]
    return out


def _grouped_kernel(old: np.ndarray, fresh: np.ndarray, in_map: np.ndarray,
                    out_map: np.ndarray, groups: int) -> np.ndarray:
    """A grouped kernel ``(kh, kw, c_in / g, f)``, block by block: filter block ``j`` reads
    input block ``j`` through local indices."""
    out = np.array(fresh, copy=True)
    cin_new, cin_old = fresh.shape[2], old.shape[2]
    f_new, f_old = fresh.shape[3] // groups, old.shape[3] // groups
    for j in range(groups):
        ins = in_map[j * cin_new:(j + 1) * cin_new]
        outs = out_map[j * f_new:(j + 1) * f_new]
        local_in = np.where(ins >= 0, ins - j * cin_old, -1)
        local_out = np.where(outs >= 0, outs - j * f_old, -1)
        assert np.all((local_in < cin_old)) and np.all(local_out < f_old), "unbalanced blocks"
        out[..., j * f_new:(j + 1) * f_new] = _transfer(
            old[..., j * f_old:(j + 1) * f_old], fresh[..., j * f_new:(j + 1) * f_new],
            {2: (local_in, True), 3: (local_out, False)})
    return out
