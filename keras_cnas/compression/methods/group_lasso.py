"""Group lasso (Wen et al. 2016, "Learning structured sparsity in deep neural networks").

Trains the baseline with eq. 1's group lasso over whole channel groups
(:class:`~keras_cnas.compression.ChannelGroupLasso`) by proximal gradient, so that
unimportant filters reach exactly zero, with lambda growing by ``growth`` per round until the
zeroed filters alone meet the target (checked every few steps; training stops there);
removes them. If ``rounds`` rounds are not enough, it removes the smallest-norm survivors
(a threshold on the RMS norm) until the target holds.

Proximal gradient wants plain gradient steps (``TrainingConfig(optimizer="sgd_nesterov")``, the
default :attr:`GroupLassoPruning.DEFAULT_TRAINING`): with Adam every coordinate moves by
about the learning rate whatever its gradient, so lambda loses its meaning (any lambda
above 1 then zeroes every unit).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_cnas.compression.graph import ChannelGraph
from keras_cnas.compression.methods.base import (
    METHODS,
    CompressionMethod,
    CompressionContext,
    SearchOutcome,
    count,
    lambda_for,
    positive,
)
from keras_cnas.compression.methods.rounds import Measurement, full_scores, tune_strength
from keras_cnas.compression.regularizers import ChannelGroupLasso, ProximalStep
from keras_cnas.compression.surgery import clone_with_weights, shrink
from keras_cnas.compression.training import TrainingConfig

__all__ = ["GroupLassoPruning"]


@METHODS.register("group_lasso")
class GroupLassoPruning(CompressionMethod):
    """Structured sparsity by group lasso, then surgery.

    Args:
        training: each round's sparsity training.
        finetune: fine-tuning of the shrunk model.
        strength: how far, in group norm, the first round's proximal steps would shrink a
            unit the data does not support: lambda (eq. 1) is
            ``strength / (learning_rate * steps per round)``, so the default 1.0 means the
            same for any data size or schedule (a BatchNorm'd unit starts at norm 1).
        lam: lambda of the first round directly (overrides ``strength``).
        growth: lambda's growth per round (smooth, step by step).
        rounds: most rounds of ``training`` before the threshold gives.
        bytes_per_element: B of eq. 6.

    Example:
        >>> import keras_cnas as cnas
        >>> from keras_cnas.compression import GroupLassoPruning, TrainingConfig
        >>> method = GroupLassoPruning(GroupLassoPruning.DEFAULT_TRAINING,
        ...                            TrainingConfig(epochs=1), lam=0.05)
        >>> method
        GroupLassoPruning(strength=1.0, lam=0.05, growth=1.5, rounds=6)
    """

    name = "group_lasso"
    #: Sparsity training per round: proximal SGD (see the module docstring).
    DEFAULT_TRAINING = TrainingConfig(epochs=2, learning_rate=0.05, optimizer="sgd_nesterov")

    def __init__(self, training: TrainingConfig, finetune: TrainingConfig, *,
                 strength: float = 1.0, lam: float | None = None, growth: float = 1.5,
                 rounds: int = 6, bytes_per_element: int = 4):
        super().__init__(training, finetune, bytes_per_element)
        self.strength = positive("strength", strength, "1.0")
        self.lam = None if lam is None else positive("lam", lam, "0.05")
        self.growth = positive("growth", growth, "1.5")
        self.rounds = count("rounds", rounds)

    def hyperparameters(self) -> dict[str, Any]:
        return {"strength": self.strength, "lam": self.lam, "growth": self.growth,
                "rounds": self.rounds}

    def _search(self, context: CompressionContext) -> SearchOutcome:
        work = clone_with_weights(context.model)
        graph = ChannelGraph(work)
        lam = self.lam if self.lam is not None else lambda_for(self.strength, self.training,
                                                               len(context.data.y_train))
        lasso = ChannelGroupLasso(work, graph, lam, parameters="gamma_beta")
        scale = np.sqrt(np.maximum(lasso.unit_parameters(), 1))

        def set_strength(value: float) -> None:
            lasso.l = value

        def measure() -> Measurement:
            # RMS over a unit's parameters, so units with more BatchNorms compare fairly.
            scores = full_scores(graph, [n / s for n, s in zip(lasso.norms(), scale)])
            removed = [np.flatnonzero(s == 0) for s in scores]
            return Measurement(scores, removed, {"zeroed_units": int(sum(map(len, removed)))})

        selection, strength, history, seconds = tune_strength(
            context, graph, work, self.training, lam, self.growth, self.rounds, set_strength,
            measure, "lambda", callbacks=[ProximalStep(lasso)])
        model = shrink(work, selection.as_keep(graph), graph=graph)
        return SearchOutcome(model, strength, history, seconds)
