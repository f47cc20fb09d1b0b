"""How much each unit matters, measured on data: the first-order Taylor criterion.

Molchanov et al. (2017, "Pruning convolutional neural networks for resource efficient
inference") estimate the loss change of removing channel ``c`` of an activation ``a`` as
``|mean over positions of a_c * dL/da_c|``, averaged over examples. A channel group's unit
sums this over every signal that writes it (each producer of a residual stream), and each
group's vector is L2-normalised (their layer-wise normalisation), so that groups of
different depth compare.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_cnas._checks import is_int
from keras_cnas._keras import keras, tf
from keras_cnas.compression.graph import ChannelGraph
from keras_cnas.compression.training import outputs_probabilities
from keras_cnas.data import Dataset

__all__ = ["taylor_importance"]


def taylor_importance(model: Any, graph: ChannelGraph, data: Dataset, *, batches: int = 4,
                      batch_size: int = 64, seed: int = 0) -> list[np.ndarray]:
    """Per group of ``graph`` (the graph of ``model``): each unit's normalised Taylor
    importance, probed on ``batches`` training batches (no augmentation). Pinned groups get
    ones.

    Example:
        >>> import keras_cnas as cnas
        >>> from keras_cnas._keras import keras
        >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="c"),
        ...     keras.layers.ReLU(), keras.layers.Flatten(), keras.layers.Dense(10)])
        >>> scores = taylor_importance(model, ChannelGraph(model), cnas.data.load("digits"),
        ...                            batches=1)
        >>> [s.shape for s in scores], round(float(np.linalg.norm(scores[1])), 6)
        ([(1,), (4,), (10,)], 1.0)
    """
    if not is_int(batches) or batches < 1:
        raise ValueError(f"batches: expected a positive integer, got {batches!r}")
    points = {g.index: graph.signal_layers(g) for g in graph.prunable}
    names = list(dict.fromkeys(n for group_points in points.values() for n in group_points))
    probe = keras.Model(model.inputs, [model.output] + [model.get_layer(n).output for n in names])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(
        from_logits=not outputs_probabilities(model))
    totals = {n: np.zeros(int(model.get_layer(n).output.shape[-1])) for n in names}
    seen = 0
    dataset = data.tf_dataset("train", batch_size=batch_size, augment=False, shuffle=True, seed=seed)
    for x, y in dataset.take(batches):
        with tf.GradientTape() as tape:
            outputs = probe(x, training=False)
            loss = loss_fn(y, outputs[0]) * tf.cast(tf.shape(y)[0], tf.float32)  # sum, not mean
        grads = tape.gradient(loss, outputs[1:])
        for name, a, g in zip(names, outputs[1:], grads):
            axes = list(range(1, a.shape.rank - 1))
            per_example = a * g if not axes else tf.reduce_mean(a * g, axis=axes)
            totals[name] += tf.reduce_sum(tf.abs(per_example), axis=0).numpy()
        seen += int(x.shape[0])
    out = []
    for group in graph.groups:
        if group.index not in points:
            out.append(np.ones(group.size))
            continue
        score = sum(totals[n] for n in points[group.index]) / max(seen, 1)
        norm = np.linalg.norm(score)
        out.append(score / norm if norm > 0 else np.full(group.size, 1.0 / np.sqrt(group.size)))
    return out
