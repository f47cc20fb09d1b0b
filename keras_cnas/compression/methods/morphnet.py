"""MorphNet-style shrink and expand (Gordon et al. 2018).

1. **Shrink**: train with an L1 penalty on BatchNorm's gamma, each gamma weighted by what
   its channel costs (the FLOPs — or whatever cost the target bounds first — that removing
   that unit saves, from the analytic cost model), so expensive channels must earn their
   keep. Minimised by proximal gradient, so gammas reach exactly zero; a unit is alive
   while its gamma (RMS over the BatchNorms of its group) exceeds ``gamma_threshold``.
   Groups without a BatchNorm are weighted the same way on their filters' norms.
   Every prunable group keeps at least ``min_width`` of its units: at each proximal step
   its strongest ``min_width`` are exempt from the penalty, and they stay alive whatever
   their gamma. This floor is ours, not MorphNet's: the cost weighting prices the
   high-resolution early layers highest, and on ResNet-32 / CIFAR-10 a short, strong
   shrink phase zeroed the whole first-stage residual stream (gamma = 0 in every
   BatchNorm on it), which leaves the output independent of the input and gets no
   gradient, so fine-tuning stays at chance. ``min_width=0`` is MorphNet's rule unchanged.
2. **Expand**: scale every group's alive width by one multiplier ``w``, the largest for
   which the model still meets the target (found by bisection on the analytic costs:
   ``w`` is the strength this method tunes; it may be below 1). The expanded model keeps
   the alive units' weights; new units start function-preserving
   (:func:`~keras_cnas.compression.expand`). Gordon et al. retrain the expanded network
   from scratch; with fine-tuning only, starting from the shrunk weights is the practical
   choice here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from keras_cnas._checks import is_real
from keras_cnas.compression.graph import ChannelGraph
from keras_cnas.compression.methods.base import (
    METHODS,
    CompressionMethod,
    CompressionContext,
    SearchOutcome,
    lambda_for,
    positive,
)
from keras_cnas.compression.methods.rounds import full_scores
from keras_cnas.compression.regularizers import ChannelGroupLasso, ProximalStep
from keras_cnas.compression.selection import (
    balance_keep,
    top_in_blocks,
    uniform_multiplier,
    unit_costs,
)
from keras_cnas.compression.surgery import clone_with_weights, resize
from keras_cnas.compression.training import TrainingConfig, fit

__all__ = ["MorphNet"]


@METHODS.register("morphnet")
class MorphNet(CompressionMethod):
    """Cost-weighted gamma L1, shrink, then one width multiplier to land on the target.

    Args:
        training: the shrink phase's training.
        finetune: fine-tuning of the expanded model.
        strength: how far, over the training phase, the proximal steps would shrink an
            unsupported gamma of average cost: lambda is
            ``strength / (learning_rate * steps)`` (cost weights average 1).
        lam: lambda directly (overrides ``strength``).
        gamma_threshold: a unit is alive while its gamma exceeds this (MorphNet: 0.01).
        min_width: the fraction of each prunable group's units kept alive whatever their
            gamma (0: none beyond one per group, as MorphNet), before the multiplier.
        max_multiplier: the widest expansion tried.
        bytes_per_element: B of eq. 6.

    Example:
        >>> from keras_cnas.compression import MorphNet, TrainingConfig
        >>> MorphNet(MorphNet.DEFAULT_TRAINING, TrainingConfig(), strength=0.5)
        MorphNet(strength=0.5, lam=None, gamma_threshold=0.01, min_width=0.25, max_multiplier=4.0)
    """

    name = "morphnet"
    #: The shrink phase: proximal SGD, as for group lasso.
    DEFAULT_TRAINING = TrainingConfig(epochs=4, learning_rate=0.02, optimizer="sgd_nesterov")

    def __init__(self, training: TrainingConfig, finetune: TrainingConfig, *,
                 strength: float = 2.0, lam: float | None = None, gamma_threshold: float = 1e-2,
                 min_width: float = 0.25, max_multiplier: float = 4.0,
                 bytes_per_element: int = 4):
        super().__init__(training, finetune, bytes_per_element)
        self.strength = positive("strength", strength, "2.0")
        self.lam = None if lam is None else positive("lam", lam, "0.05")
        self.gamma_threshold = positive("gamma_threshold", gamma_threshold, "0.01")
        if not is_real(min_width) \
                or not 0 <= min_width < 1:
            raise ValueError(f"min_width: expected a fraction in [0, 1) such as 0.25, got "
                             f"{min_width!r}")
        self.min_width = float(min_width)
        self.max_multiplier = positive("max_multiplier", max_multiplier, "4.0")

    def hyperparameters(self) -> dict[str, Any]:
        return {"strength": self.strength, "lam": self.lam, "gamma_threshold": self.gamma_threshold,
                "min_width": self.min_width, "max_multiplier": self.max_multiplier}

    def _search(self, context: CompressionContext) -> SearchOutcome:
        work = clone_with_weights(context.model)
        graph = ChannelGraph(work)
        cost = context.target.primary
        per_unit = unit_costs(graph, graph.full_counts(), cost, context.bytes_per_element)
        weights = np.array([per_unit[g.index] for g in graph.prunable])
        weights = weights / np.mean(weights)  # average 1: lambda means the same for any model
        lam = self.lam if self.lam is not None else lambda_for(self.strength, self.training,
                                                               len(context.data.y_train))
        lasso = ChannelGroupLasso(work, graph, lam, parameters="gamma",
                                  unit_weights=weights.tolist(),
                                  exempt=[self._floor(g) for g in graph.prunable])
        history, seconds = fit(work, context.data, self.training, seed=context.seed,
                               callbacks=[ProximalStep(lasso)])
        scale = np.sqrt(np.maximum(lasso.unit_parameters(), 1))
        scores = full_scores(graph, [n / s for n, s in zip(lasso.norms(), scale)])
        alive = balance_keep(graph, [self._alive(g, s) for g, s in zip(graph.groups, scores)],
                             scores)
        multiplier, counts = uniform_multiplier(
            graph, [len(k) for k in alive], context.bounds, baseline=context.baseline_costs,
            bytes_per_element=context.bytes_per_element, max_multiplier=self.max_multiplier)
        # Shrinking further (w < 1) drops the weakest alive units; expanding keeps them all.
        keep = [k if n >= len(k) else
                top_in_blocks(s, k, g.size, g.partition, n)
                for g, k, s, n in zip(graph.groups, alive, scores, counts)]
        model = resize(work, graph, keep, counts, seed=context.seed)
        alive_units = int(sum(len(k) for k, g in zip(alive, graph.groups) if g.prunable))
        total_units = int(sum(g.size for g in graph.prunable))
        record = {"round": 0, "lambda": lam, "alive_units": alive_units,
                  "prunable_units": total_units, "multiplier": multiplier,
                  "train_loss": history.get("loss", [float("nan")])[-1]}
        return SearchOutcome(model, {"lambda": lam, "multiplier": multiplier,
                                     "alive_fraction": alive_units / max(total_units, 1)},
                             [record], seconds)

    def _alive(self, group: Any, scores: np.ndarray) -> np.ndarray:
        """Units whose gamma passes the threshold, plus the best-scored ones up to the
        ``min_width`` floor."""
        alive = np.flatnonzero(scores > self.gamma_threshold)
        floor = self._floor(group) if group.prunable else 0
        if len(alive) >= floor:
            return alive
        best = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:floor]
        return np.union1d(alive, best)

    def _floor(self, group: Any) -> int:
        """How many of a prunable group's units the floor keeps."""
        return math.ceil(self.min_width * group.size)
