"""The strength schedule shared by the sparsity-training methods (group lasso, variational
dropout).

Training runs for up to ``rounds`` rounds of ``training.epochs`` epochs, the strength
growing smoothly by ``growth`` per round (``s0 * growth ** (step / steps_per_round)``).
Every ``check_every`` steps the units the method removes on its own (its natural threshold:
exactly-zero groups, ``log alpha > 3``) are priced with the analytic cost model, and
training stops at the first check where they meet the bounds, so the model is no sparser
than the target needs; of those removals only as many as the bounds need are made (lowest
scores first). If the rounds run out first, the threshold gives: the lowest-scored
survivors are removed until the bounds hold. Either way the target is met.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Sequence

import numpy as np

from keras_cnas._keras import keras
from keras_cnas.compression.costs import graph_costs
from keras_cnas.compression.graph import ChannelGraph
from keras_cnas.compression.methods.base import CompressionContext
from keras_cnas.compression.selection import Selection, balance_keep, prune_to_bounds
from keras_cnas.compression.training import TrainingConfig, fit

__all__ = ["Measurement", "full_scores", "tune_strength"]


@dataclasses.dataclass
class Measurement:
    """The method's view of the model now: per-group unit scores (higher = keep), the units
    it removes by itself, and loggable figures."""

    scores: list[np.ndarray]
    removed: list[np.ndarray]
    record: dict[str, Any]


class _Schedule(keras.callbacks.Callback):
    def __init__(self, context: CompressionContext, graph: ChannelGraph, strength: float,
                 growth: float, steps_per_round: int, check_every: int,
                 set_strength: Callable[[float], None], measure: Callable[[], Measurement],
                 strength_name: str):
        super().__init__()
        self.context, self.graph = context, graph
        self.s0, self.growth, self.per_round = strength, growth, max(1, steps_per_round)
        self.check_every = check_every
        self.set_strength, self.measure, self.name = set_strength, measure, strength_name
        self.step = 0
        self.strength = strength
        self.met: tuple[Measurement, list[np.ndarray], Any] | None = None
        self.history: list[dict[str, Any]] = []

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.strength = self.s0 * self.growth ** (self.step / self.per_round)
        self.set_strength(self.strength)

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.step += 1
        if self.step % self.check_every == 0:
            self._check(logs)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if self.met is None:
            self._check(logs, record=True)

    def _check(self, logs: Any, record: bool = False) -> None:
        m = self.measure()
        natural = natural_keep(self.graph, m)
        costs = graph_costs(self.graph, [len(k) for k in natural], self.context.bytes_per_element)
        met = self.context.bounds.satisfied(costs)
        if met or record:
            primary = self.context.target.primary
            removed = sum(g.size - len(k) for g, k in zip(self.graph.groups, natural))
            fraction = float(costs[primary]) / float(self.context.baseline_costs[primary])
            self.history.append({
                "step": self.step, "round": self.step / self.per_round, self.name: self.strength,
                "removed_units": int(removed), f"{primary}_fraction": fraction,
                "meets_target": met, "loss": float((logs or {}).get("loss", math.nan)), **m.record})
        if met:
            self.met = (m, natural, costs)
            self.model.stop_training = True


def tune_strength(context: CompressionContext, graph: ChannelGraph, model: Any,
                  training: TrainingConfig, strength: float, growth: float, rounds: int,
                  set_strength: Callable[[float], None], measure: Callable[[], Measurement],
                  strength_name: str, callbacks: Sequence[Any] = (),
                  check_every: int = 1) -> tuple[Selection, dict[str, float], list[dict], float]:
    """Trains ``model`` with a growing strength until the method's own removals meet
    ``context.bounds``; returns the selection, the strength settled on, the history and
    the training seconds."""
    steps_per_round = training.steps(len(context.data.y_train))
    schedule = _Schedule(context, graph, strength, growth, steps_per_round, check_every,
                         set_strength, measure, strength_name)
    config = dataclasses.replace(training, epochs=training.epochs * rounds)
    started = time.perf_counter()
    fit(model, context.data, config, seed=context.seed, callbacks=[*callbacks, schedule])
    seconds = time.perf_counter() - started
    if schedule.met is not None:
        # The method's own removals meet the bounds, but one step may remove many units at
        # once: remove only as many as the bounds need, lowest scores (its own removals,
        # exactly zero or drowned in noise) first.
        m, _, _ = schedule.met
        selection = prune_to_bounds(graph, m.scores, context.bounds,
                                    baseline=context.baseline_costs,
                                    bytes_per_element=context.bytes_per_element)
    else:
        m = measure()
        selection = prune_to_bounds(graph, m.scores, context.bounds, keep=natural_keep(graph, m),
                                    baseline=context.baseline_costs,
                                    bytes_per_element=context.bytes_per_element)
    # threshold: the highest score removed (the method's own threshold, when met, else the
    # one the bounds forced).
    settled = {strength_name: schedule.strength, "met_by_own_threshold": schedule.met is not None,
               "threshold": selection.threshold, "removed_units": selection.removed_by_bound,
               "rounds": schedule.step / max(1, steps_per_round)}
    return selection, settled, schedule.history, seconds


def natural_keep(graph: ChannelGraph, m: Measurement) -> list[np.ndarray]:
    """The units the method keeps by itself, made valid for surgery."""
    keep = []
    for group, removed in zip(graph.groups, m.removed):
        mask = np.ones(group.size, bool)
        mask[np.asarray(removed, dtype=np.int64)] = False
        keep.append(np.flatnonzero(mask))
    return balance_keep(graph, keep, m.scores)


def full_scores(graph: ChannelGraph, per_prunable: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Scores for every group from scores of the prunable ones (pinned: +inf)."""
    out, it = [], iter(per_prunable)
    for group in graph.groups:
        out.append(np.asarray(next(it), dtype=np.float64) if group.prunable
                   else np.full(group.size, np.inf))
    return out
