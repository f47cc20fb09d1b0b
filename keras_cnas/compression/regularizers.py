"""Structured-sparsity regularisers: group lasso on filters / channels (Wen et al. 2016).

Wen et al.'s eq. 1 adds to the data loss ``E_D(W)`` a group lasso over groups ``g`` of
weights::

    E(W) = E_D(W) + lambda_g * sum_l sum_g ||W_g^(l)||_2

With the groups being whole filters (a conv's output channel) or whole channels (its
input channel), the lasso drives entire groups to zero, which surgery then removes.

* :class:`GroupLasso` is that term as a ``tf_keras`` regulariser for one kernel
  (``Conv2D(..., kernel_regularizer=GroupLasso(1e-3))``), with its proximal operator.
* :class:`ChannelGroupLasso` is the same term over *channel groups* of a whole model
  (:mod:`keras_cnas.compression.graph`): one group per unit, holding every parameter that
  writes the unit in any layer, so that a residual channel is zeroed in all the convs that
  add into it at once. A filter followed by BatchNorm is represented by the BatchNorm's
  gamma and beta: BN undoes any scaling of the filter, so its norm says nothing, while
  gamma = beta = 0 makes the channel exactly zero. Optional per-unit weights turn it into
  MorphNet's cost-weighted penalty.
* :class:`ProximalStep` minimises eq. 1 by proximal gradient: the optimizer steps on the
  data loss, then group soft-thresholding ``w_g <- w_g * max(0, 1 - lr * lambda / ||w_g||)``
  sets a group to *exactly* zero once its norm drops below ``lr * lambda`` (plain
  subgradient steps only make it oscillate around zero, so Wen et al. threshold
  afterwards).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from keras_cnas._checks import is_finite_number, is_int
from keras_cnas._keras import keras, tf
from keras_cnas.compression.graph import ChannelGraph

__all__ = ["ChannelGroupLasso", "GroupLasso", "ProximalStep"]

AXES = ("filters", "channels")


@keras.utils.register_keras_serializable(package="keras_cnas")
class GroupLasso(keras.regularizers.Regularizer):
    """``l * sum of the L2 norms`` of a kernel's filters (or input channels).

    Args:
        l: the strength lambda of eq. 1.
        axis: ``"filters"``: one group per output unit (``kernel[..., j]``: a conv filter,
            a dense column); ``"channels"``: one group per input channel
            (``kernel[:, :, i, :]`` of a conv, a dense row).

    Example:
        >>> import numpy as np
        >>> kernel = np.zeros((3, 3, 2, 4), "float32"); kernel[..., 0] = 1.0
        >>> float(GroupLasso(0.5)(kernel))        # one filter of norm sqrt(18)
        2.1213202476501465
        >>> float(GroupLasso(0.5, axis="channels")(kernel))  # two channels of norm 3
        3.0
    """

    def __init__(self, l: float = 1e-3, axis: str = "filters"):  # noqa: E741  (Keras' name)
        if not is_finite_number(l) or l < 0:
            raise ValueError(f"l: expected a non-negative strength such as 1e-3, got {l!r}")
        if axis not in AXES:
            raise ValueError(f"axis: expected one of {AXES}, got {axis!r}")
        self.l = float(l)
        self.axis = axis

    def norms(self, x: Any) -> Any:
        """The L2 norm of each group of ``x``."""
        x = tf.convert_to_tensor(x)
        if self.axis == "channels" and x.shape.rank >= 2:
            # (..., c_in, c_out) -> put the input axis last.
            perm = list(range(x.shape.rank))
            perm[-2], perm[-1] = perm[-1], perm[-2]
            x = tf.transpose(x, perm)
        x = tf.reshape(x, (-1, x.shape[-1]))
        return tf.sqrt(tf.reduce_sum(tf.square(x), axis=0))

    def __call__(self, x: Any) -> Any:
        return self.l * tf.reduce_sum(self.norms(x))

    def prox(self, x: Any, step: float) -> Any:
        """The proximal operator of ``step * self``: each group shrunk toward zero by
        ``step * l`` in norm, to exactly zero if its norm is smaller."""
        x = tf.convert_to_tensor(x)
        norms = self.norms(x)
        factor = tf.nn.relu(1.0 - step * self.l / tf.maximum(norms, 1e-30))
        if self.axis == "channels" and x.shape.rank >= 2:
            shape = [1] * x.shape.rank
            shape[-2] = -1
            return x * tf.reshape(factor, shape)
        return x * factor

    def get_config(self) -> dict[str, Any]:
        return {"l": self.l, "axis": self.axis}


class ChannelGroupLasso:
    """Group lasso over a model's channel groups: ``l * sum_u w_u * ||theta_u||_2``.

    Args:
        model: the model being trained (the variables it holds are regularised).
        graph: ``ChannelGraph`` of a model with the same layer names (e.g. the baseline
            ``model`` was cloned from).
        l: the strength lambda.
        parameters: ``"gamma_beta"``: a unit's group is gamma and beta of every BatchNorm on
            its channels, plus the filter and bias of every producer not followed by a
            BatchNorm (group lasso); ``"gamma"``: gamma only, and producers' filters where no
            BatchNorm is (MorphNet's L1 on gamma).
        unit_weights: per prunable group, a weight for its units (MorphNet: the FLOPs a
            unit costs); default 1.
        exempt: per prunable group, how many of its units each proximal step leaves
            alone: the ones with the largest norms at that step (default 0). A floor that
            keeps every group's strongest units trained as they are, so that no group, and
            no residual stream, is zeroed whole while the rest of the network still needs
            it (a zeroed BatchNorm channel gets no gradient and never returns).

    Attributes:
        units: ``(group index, unit)`` of each regularised unit, in order.
    """

    def __init__(self, model: Any, graph: ChannelGraph, l: float, *,
                 parameters: str = "gamma_beta",
                 unit_weights: Sequence[float] | None = None,
                 exempt: Sequence[int] | None = None):
        if parameters not in ("gamma_beta", "gamma"):
            raise ValueError(f"parameters: expected 'gamma_beta' or 'gamma', got {parameters!r}")
        if not is_finite_number(l) or l < 0:
            raise ValueError(f"l: expected a non-negative strength, got {l!r}")
        groups = graph.prunable
        offsets, total = {}, 0
        for group in groups:
            offsets[group.index] = total
            total += group.size
        self.units = [(g.index, u) for g in groups for u in range(g.size)]
        weights = np.ones(total, np.float32)
        if unit_weights is not None:
            if len(unit_weights) != len(groups):
                raise ValueError(f"unit_weights: one weight per prunable group ({len(groups)}), "
                                 f"got {len(unit_weights)}")
            for group, w in zip(groups, unit_weights):
                weights[offsets[group.index]:offsets[group.index] + group.size] = w
        if exempt is not None and (len(exempt) != len(groups) or any(
                not is_int(k, numpy=True) or not 0 <= k <= g.size
                for g, k in zip(groups, exempt))):
            raise ValueError(f"exempt: one count in [0, group size] per prunable group "
                             f"({len(groups)}), got {exempt!r}")
        # (offset, size, exempt count) of every prunable group, in unit order.
        self._exempt = [(offsets[g.index], g.size, int(k))
                        for g, k in zip(groups, exempt or [0] * len(groups))]
        pieces: dict[str, tuple[Any, np.ndarray]] = {}

        def add(variable: Any, ids: np.ndarray) -> None:
            key = variable.name
            if key in pieces:
                old = pieces[key][1]
                ids = np.where(ids < total, ids, old)
            pieces[key] = (variable, ids)

        def unit_ids(layout) -> np.ndarray:  # noqa: ANN001
            group_of, unit_of = graph.units_of(layout)
            return np.array([offsets[g] + u if g in offsets else total
                             for g, u in zip(group_of, unit_of)], np.int64)

        for op in graph.ops:
            if op.kind != "batchnorm":
                continue
            ids = unit_ids(op.out_layout)
            layer = model.get_layer(op.name)
            if layer.scale:
                add(layer.gamma, ids)
            if layer.center and parameters == "gamma_beta":
                add(layer.beta, ids)
        for group in groups:
            signals = graph.signal_layers(group)
            for producer, signal in zip(group.producers, signals):
                if signal != producer:
                    continue  # the BatchNorm right after it stands for this filter
                layer = model.get_layer(producer)
                ids = unit_ids(graph.op(producer).out_layout)
                add(layer.kernel, ids)
                if layer.use_bias:
                    add(layer.bias, ids)
        self._l = tf.Variable(float(l), trainable=False, dtype=tf.float32)
        self.num_units = total
        self._weights = tf.constant(np.append(weights, 0.0), tf.float32)
        self._pieces = [(v, tf.constant(ids)) for v, ids in pieces.values()]
        self._groups = groups
        self._offsets = offsets

    @property
    def l(self) -> float:  # noqa: E743
        """The strength lambda; settable between training rounds."""
        return float(self._l.numpy())

    @l.setter
    def l(self, value: float) -> None:  # noqa: E743
        self._l.assign(float(value))

    @property
    def variables(self) -> list[Any]:
        return [v for v, _ in self._pieces]

    def _norms(self) -> Any:
        squares, ids = [], []
        for variable, index in self._pieces:
            v = tf.reshape(variable, (-1, variable.shape[-1]))
            squares.append(tf.reduce_sum(tf.square(v), axis=0))
            ids.append(index)
        sq = tf.math.unsorted_segment_sum(tf.concat(squares, 0), tf.concat(ids, 0),
                                          self.num_units + 1)
        return tf.sqrt(sq)

    def norms(self) -> list[np.ndarray]:
        """Each prunable group's unit norms (in ``graph.prunable`` order)."""
        values = self._norms().numpy()
        return [values[self._offsets[g.index]:self._offsets[g.index] + g.size] for g in self._groups]

    def unit_parameters(self) -> list[int]:
        """How many parameters each prunable group's units hold (for RMS norms)."""
        counts = np.zeros(self.num_units + 1, np.int64)
        for variable, index in self._pieces:
            per_channel = int(np.prod(variable.shape[:-1], dtype=np.int64))
            np.add.at(counts, index.numpy(), per_channel)
        return [int(counts[self._offsets[g.index]]) for g in self._groups]

    def penalty(self) -> Any:
        """``l * sum_u w_u ||theta_u||`` as a scalar tensor."""
        return self._l * tf.reduce_sum(self._norms() * self._weights)

    def prox(self, step: Any) -> None:
        """Group soft-thresholding of every regularised unit by ``step * l * w_u``."""
        norms = self._norms()
        factor = tf.nn.relu(1.0 - step * self._l * self._weights / tf.maximum(norms, 1e-30))
        factor = tf.concat([factor[:-1], tf.ones((1,))], 0)  # the last id: not regularised
        if any(k for _, _, k in self._exempt):
            # Per group, units at or above its k-th largest norm keep factor 1 (ties too).
            exempt = [tf.zeros((size,), tf.bool) if k == 0 else
                      norms[offset:offset + size] >= tf.math.top_k(
                          norms[offset:offset + size], k).values[-1]
                      for offset, size, k in self._exempt]
            mask = tf.concat(exempt + [tf.zeros((1,), tf.bool)], 0)
            factor = tf.where(mask, tf.ones_like(factor), factor)
        for variable, index in self._pieces:
            variable.assign(variable * tf.gather(factor, index))


class ProximalStep(keras.callbacks.Callback):
    """Applies ``lasso.prox(learning_rate)`` after every training step (proximal gradient).

    Example:
        >>> from keras_cnas._keras import keras
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="h"),
        ...                           keras.layers.Dense(2)])
        >>> lasso = ChannelGroupLasso(model, ChannelGraph(model), l=1e6)
        >>> ProximalStep(lasso).apply(1.0)
        >>> float(abs(model.get_layer("h").kernel).numpy().max())   # every unit zeroed
        0.0
    """

    def __init__(self, lasso: ChannelGroupLasso):
        super().__init__()
        self.lasso = lasso
        self._step = tf.Variable(0.0, trainable=False, dtype=tf.float32)
        self._apply = tf.function(self._apply_step)

    def _apply_step(self) -> None:
        self.lasso.prox(self._step)

    def apply(self, step: float) -> None:
        self._step.assign(float(step))
        self._apply()

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        learning_rate = self.model.optimizer.learning_rate
        if callable(learning_rate):  # a schedule
            learning_rate = learning_rate(self.model.optimizer.iterations)
        self.apply(float(keras.backend.get_value(learning_rate)))
