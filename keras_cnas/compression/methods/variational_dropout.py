"""Variational dropout at filter level (Molchanov et al. 2017, extended to filters as the
compact-search survey does).

Every filter's output gets learned multiplicative Gaussian noise
(:class:`~keras_cnas.compression.ChannelNoise`); the KL term of the variational bound,
weighted by ``strength``, drives the dropout rate ``alpha`` of useless filters up. A unit
is removed when its ``log alpha`` passes ``threshold`` at *every* signal that writes it
(all the convs adding into a residual channel must drop it). The KL weight grows by
``growth`` per round until the dropped units alone meet the target (training stops there);
if ``rounds`` rounds are not enough, the threshold is lowered (the units with the highest
``log alpha`` go first) until the target holds. The noise is then
removed (it is the identity at inference), leaving the baseline's layers.

The loss is the negative variational bound per example, ``CE + strength * KL / N``: ``N``
training examples and ``KL = sum_u n_u * KL(alpha_u)``, with ``n_u`` the weights of unit
``u``'s filters (Molchanov's per-weight KL, one alpha shared by the filter). ``strength = 1``
is the bound itself; the schedule starts below it (the data term first) and raises it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_cnas._checks import is_real
from keras_cnas._keras import tf
from keras_cnas.compression.graph import ChannelGraph
from keras_cnas.compression.methods.base import (
    METHODS,
    CompressionMethod,
    CompressionContext,
    SearchOutcome,
    count,
    positive,
)
from keras_cnas.compression.methods.rounds import Measurement, tune_strength
from keras_cnas.compression.noise import add_channel_noise, noise_points, remove_channel_noise
from keras_cnas.compression.surgery import shrink
from keras_cnas.compression.training import TrainingConfig

__all__ = ["VariationalDropoutPruning"]


@METHODS.register("vardrop")
class VariationalDropoutPruning(CompressionMethod):
    """Filter-level sparse variational dropout, then surgery.

    Args:
        training: each round's training with noise.
        finetune: fine-tuning of the shrunk model.
        strength: weight of the KL term at the start (1: the variational bound).
        growth: the weight's growth per round (smooth, step by step).
        rounds: most rounds of ``training`` before the threshold gives.
        threshold: a unit goes when ``log alpha`` exceeds this everywhere (Molchanov: 3).
        init_log_alpha: ``log alpha`` of every filter at the start.
        bytes_per_element: B of eq. 6.

    Example:
        >>> from keras_cnas.compression import TrainingConfig, VariationalDropoutPruning
        >>> VariationalDropoutPruning(TrainingConfig(), TrainingConfig(), strength=0.1)
        VariationalDropoutPruning(strength=0.1, growth=2.0, rounds=5, threshold=3.0, init_log_alpha=-6.0)
    """

    name = "vardrop"

    def __init__(self, training: TrainingConfig, finetune: TrainingConfig, *,
                 strength: float = 0.3, growth: float = 2.0, rounds: int = 5,
                 threshold: float = 3.0, init_log_alpha: float = -6.0,
                 bytes_per_element: int = 4):
        super().__init__(training, finetune, bytes_per_element)
        self.strength = positive("strength", strength, "0.3")
        self.growth = positive("growth", growth, "2.0")
        self.rounds = count("rounds", rounds)
        if not is_real(threshold) \
                or not -8 < threshold < 8:
            raise ValueError(f"threshold: expected a log alpha in (-8, 8) such as 3.0, got "
                             f"{threshold!r}")
        if not is_real(init_log_alpha) \
                or not -8 <= init_log_alpha < threshold:
            raise ValueError(f"init_log_alpha: expected a log alpha in [-8, threshold) such as "
                             f"-6.0, got {init_log_alpha!r}")
        self.threshold = float(threshold)
        self.init_log_alpha = float(init_log_alpha)

    def hyperparameters(self) -> dict[str, Any]:
        return {"strength": self.strength, "growth": self.growth, "rounds": self.rounds,
                "threshold": self.threshold, "init_log_alpha": self.init_log_alpha}

    def _search(self, context: CompressionContext) -> SearchOutcome:
        graph = context.graph
        points = noise_points(graph)
        signals = [s for pairs in points.values() for s, _ in pairs]
        noisy = add_channel_noise(context.model, signals, self.init_log_alpha)
        wrappers, sizes = [], []
        for pairs in points.values():
            for signal, producer in pairs:
                wrappers.append(noisy.get_layer(f"noisy_{signal}"))
                kernel = graph.op(producer).layer.kernel
                sizes.append(float(np.prod(kernel.shape[:-1])))
        weight = tf.Variable(self.strength, trainable=False, dtype=tf.float32)
        examples = float(len(context.data.y_train))
        noisy.add_loss(lambda: weight * tf.add_n(
            [size * tf.reduce_sum(w.kl()) for size, w in zip(sizes, wrappers)]) / examples)

        def set_strength(value: float) -> None:
            weight.assign(value)

        def measure() -> Measurement:
            scores, removed = _unit_scores(graph, points, noisy, self.threshold)
            return Measurement(scores, removed, {"dropped_units": int(sum(map(len, removed)))})

        selection, strength, history, seconds = tune_strength(
            context, graph, noisy, self.training, self.strength, self.growth, self.rounds,
            set_strength, measure, "kl_weight")
        # The threshold of the rounds is on -log alpha: report it as a log alpha.
        strength["log_alpha_threshold"] = -selection.threshold
        strength.pop("threshold")
        plain = remove_channel_noise(context.model, noisy)
        plain_graph = ChannelGraph(plain)
        model = shrink(plain, selection.as_keep(plain_graph), graph=plain_graph)
        return SearchOutcome(model, strength, history, seconds)


def _unit_scores(graph: ChannelGraph, points: dict[int, list[tuple[str, str]]], noisy: Any,
                 threshold: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per group: each unit's score, minus its smallest ``log alpha`` over the signals that
    write it (higher = keep), and the units whose every signal passes ``threshold``."""
    scores, removed = [], []
    for group in graph.groups:
        pairs = points.get(group.index, [])
        if not pairs:  # pinned, or no signal can carry noise: keep it
            scores.append(np.full(group.size, np.inf))
            removed.append(np.zeros(0, np.int64))
            continue
        log_alpha = np.min([noisy.get_layer(f"noisy_{s}").log_alpha().numpy() for s, _ in pairs],
                           axis=0)
        scores.append(-log_alpha.astype(np.float64))
        removed.append(np.flatnonzero(log_alpha > threshold))
    return scores, removed
