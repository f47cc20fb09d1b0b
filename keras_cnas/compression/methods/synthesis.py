"""Iterative synthesis: probe, remove, fine-tune, repeat.

Inspired by the generator / inquisitor loop of Generative Synthesis (Wong et al. 2018),
which is proprietary: this is *not* GenSynth, only the same loop with public parts. Each of
``steps`` steps

1. *inquisitor*: probes every unit's importance on training data (first-order Taylor,
   :func:`~keras_cnas.compression.taylor_importance`) and divides it by what the unit costs
   (the target's first cost), so cheap-to-keep units survive;
2. *generator*: removes the least important units until the model meets the step's bounds,
   ``baseline * fraction ** (step / steps)`` (a geometric path to the target; the last
   step's bounds are the target's);
3. fine-tunes the smaller model and checks validation accuracy; if it fell more than
   ``tolerance`` below the baseline's, stops with
   :class:`~keras_cnas.compression.ToleranceExceededError` carrying the last model within it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_cnas._checks import is_real
from keras_cnas.compression.errors import ToleranceExceededError
from keras_cnas.compression.graph import ChannelGraph
from keras_cnas.compression.importance import taylor_importance
from keras_cnas.compression.methods.base import (
    METHODS,
    CompressionMethod,
    CompressionContext,
    SearchOutcome,
    count,
)
from keras_cnas.compression.selection import prune_to_bounds, unit_costs
from keras_cnas.compression.surgery import clone_with_weights, shrink
from keras_cnas.compression.training import TrainingConfig, accuracy, fit

__all__ = ["IterativeSynthesis"]


@METHODS.register("synthesis")
class IterativeSynthesis(CompressionMethod):
    """Probe importance, remove the least important units, fine-tune; repeat.

    Args:
        training: the fine-tuning after each step.
        finetune: the final fine-tuning.
        steps: steps to reach the target.
        probe_batches: training batches each importance probe averages over.
        tolerance: largest drop of validation accuracy below the baseline's allowed
            after a step (e.g. 0.02); None for no limit.
        bytes_per_element: B of eq. 6.

    Example:
        >>> from keras_cnas.compression import IterativeSynthesis, TrainingConfig
        >>> IterativeSynthesis(TrainingConfig(), TrainingConfig(), steps=4)
        IterativeSynthesis(steps=4, probe_batches=8, tolerance=None)
    """

    name = "synthesis"

    def __init__(self, training: TrainingConfig, finetune: TrainingConfig, *, steps: int = 3,
                 probe_batches: int = 8, tolerance: float | None = None,
                 bytes_per_element: int = 4):
        super().__init__(training, finetune, bytes_per_element)
        self.steps = count("steps", steps)
        self.probe_batches = count("probe_batches", probe_batches)
        if tolerance is not None and (not is_real(tolerance)
                                      or not 0 <= tolerance <= 1):
            raise ValueError(f"tolerance: expected an accuracy drop in [0, 1] such as 0.02, or "
                             f"None, got {tolerance!r}")
        self.tolerance = None if tolerance is None else float(tolerance)

    def hyperparameters(self) -> dict[str, Any]:
        return {"steps": self.steps, "probe_batches": self.probe_batches,
                "tolerance": self.tolerance}

    def _search(self, context: CompressionContext) -> SearchOutcome:
        data = context.data
        if self.tolerance is not None and len(data.y_val) == 0:
            raise ValueError("tolerance: the accuracy tolerance is checked on the validation "
                             f"split, and {data.name!r} has none; load it with "
                             "validation_split > 0 or pass tolerance=None")
        reference = accuracy(context.model, data, "validation")
        current = clone_with_weights(context.model)
        cost = context.target.primary
        history: list[dict[str, Any]] = []
        seconds = 0.0
        for step in range(1, self.steps + 1):
            graph = ChannelGraph(current)
            bounds = context.bounds if step == self.steps else \
                context.target.bounds(context.baseline_costs, progress=step / self.steps)
            importance = taylor_importance(current, graph, data, batches=self.probe_batches,
                                           batch_size=self.training.batch_size,
                                           seed=context.seed + step)
            price = unit_costs(graph, [g.size for g in graph.groups], cost,
                               context.bytes_per_element)
            mean_price = float(np.nanmean([p for p in price if np.isfinite(p)] or [1.0]))
            scores = [imp / (p / mean_price) if np.isfinite(p) and p > 0 else
                      (imp if group.prunable else np.full(group.size, np.inf))
                      for group, imp, p in zip(graph.groups, importance, price)]
            selection = prune_to_bounds(graph, scores, bounds, baseline=context.baseline_costs,
                                        bytes_per_element=context.bytes_per_element)
            smaller = shrink(current, selection.as_keep(graph), graph=graph)
            _, spent = fit(smaller, data, self.training, seed=context.seed + step)
            seconds += spent
            val = accuracy(smaller, data, "validation")
            record = {"step": step, f"{cost}_fraction":
                      float(selection.costs[cost]) / float(context.baseline_costs[cost]),
                      "removed_units": int(sum(g.size for g in graph.groups)
                                           - sum(selection.counts)),
                      "val_accuracy": val, "seconds": spent}
            history.append(record)
            if self.tolerance is not None and val is not None and reference is not None \
                    and reference - val > self.tolerance:
                raise ToleranceExceededError(
                    f"synthesis: after step {step} of {self.steps} validation accuracy is "
                    f"{val:.4f}, more than tolerance={self.tolerance} below the baseline's "
                    f"{reference:.4f}, before reaching the target ({context.target}); the "
                    f"error's .model is the step-{step - 1} model (it does not meet the target). "
                    "Raise the tolerance, take more steps or train longer per step, or relax "
                    "the target", model=None if step == 1 else current, history=history)
            current = smaller
        return SearchOutcome(current, {"steps": float(self.steps),
                                       "baseline_val_accuracy": reference or float("nan")},
                             history, seconds)
