"""The interface every compression method implements, and what it returns.

``method.compress(model, data, target)``:

1. prices the baseline (:func:`~keras_cnas.compression.model_costs`) and turns the target
   fractions into hard bounds; refuses a target no shrunk model can reach;
2. runs the method's own search (``_search``), which tunes its strength until the shrunk
   model meets every bound and returns that model (priced before it is built);
3. re-checks the bounds on the built model, re-estimates its BatchNorm statistics (the
   sparsity training moves weights faster than the moving averages follow), fine-tunes it
   and measures top-1 accuracy.

The baseline model is never modified.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import time
from typing import Any, ClassVar

from keras_cnas._checks import is_finite_number, is_int
from keras_cnas._numbers import finite_or_none
from keras_cnas.compression.costs import graph_costs, model_costs
from keras_cnas.compression.graph import ChannelGraph
from keras_cnas.compression.selection import check_feasible
from keras_cnas.compression.target import Target
from keras_cnas.compression.training import (
    TrainingConfig,
    accuracy,
    fit,
    recalibrate_batch_norm,
)
from keras_cnas.costs import Constraints, CostReport
from keras_cnas.data import Dataset
from keras_cnas.registry import Registry

__all__ = ["METHODS", "CompressionMethod", "CompressionResult", "CompressionContext", "SearchOutcome"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class CompressionContext:
    """What a method's search sees."""

    model: Any
    graph: ChannelGraph
    data: Dataset
    target: Target
    bounds: Constraints
    baseline_costs: CostReport
    seed: int
    bytes_per_element: int


@dataclasses.dataclass
class SearchOutcome:
    """What a method's search returns: the shrunk (not yet fine-tuned) model, the strength
    it settled on (``{"lambda": ..., "threshold": ...}``), one record per round, and the
    seconds it trained."""

    model: Any
    strength: dict[str, float]
    history: list[dict[str, Any]]
    train_seconds: float


@dataclasses.dataclass
class CompressionResult:
    """A compressed model and how it was made.

    Attributes:
        method: the method's registry name.
        model: the compressed, fine-tuned ``tf_keras`` model (only standard layers).
        target: the fractions of the baseline's costs asked for.
        bounds: the absolute hard bounds they make.
        baseline_costs, costs: analytic costs before and after (``costs`` is measured on
            the built model: ``costs.params == model.count_params()``).
        widths: per channel group of the baseline, ``(units kept, units before)``.
        strength: the strength the method settled on (lambda, threshold, multiplier...).
        history: one record per round of the method's search.
        baseline_accuracy, accuracy: top-1 on the test split (None without one).
        pruned_accuracy: top-1 of the shrunk model before fine-tuning.
        search_seconds: training time of the method's search (sparsity training, steps).
        finetune_seconds: training time of the final fine-tuning.
        config: the method's hyperparameters.
    """

    method: str
    model: Any
    target: Target
    bounds: Constraints
    baseline_costs: CostReport
    costs: CostReport
    widths: dict[str, tuple[int, int]]
    strength: dict[str, float]
    history: list[dict[str, Any]]
    baseline_accuracy: float | None
    pruned_accuracy: float | None
    accuracy: float | None
    search_seconds: float
    finetune_seconds: float
    config: dict[str, Any]

    @property
    def target_met(self) -> bool:
        return self.bounds.satisfied(self.costs)

    def fraction(self, cost: str) -> float:
        """``costs[cost] / baseline_costs[cost]``."""
        return float(self.costs[cost]) / float(self.baseline_costs[cost])

    def to_dict(self) -> dict[str, Any]:
        """Everything but the model, JSON-compatible (infinite and NaN figures are None)."""
        return finite_or_none({
            "method": self.method, "target": self.target.to_dict(),
            "bounds": self.bounds.to_dict(), "target_met": self.target_met,
            "baseline_costs": self.baseline_costs.to_dict(), "costs": self.costs.to_dict(),
            "fractions": {c: self.fraction(c) for c in ("params", "madds", "flops",
                                                         "memory_bytes")},
            "widths": {k: list(v) for k, v in self.widths.items()},
            "strength": self.strength, "history": self.history,
            "baseline_accuracy": self.baseline_accuracy,
            "pruned_accuracy": self.pruned_accuracy, "accuracy": self.accuracy,
            "search_seconds": self.search_seconds, "finetune_seconds": self.finetune_seconds,
            "config": self.config,
        })

    def summary(self) -> str:
        """One line: costs as fractions of the baseline and accuracy."""
        acc = "" if self.accuracy is None else (
            f", top-1 {self.accuracy:.4f} (baseline {self.baseline_accuracy:.4f})")
        return (f"{self.method}: flops {self.fraction('flops'):.3f}, madds "
                f"{self.fraction('madds'):.3f}, params {self.fraction('params'):.3f} of the "
                f"baseline ({'meets' if self.target_met else 'MISSES'} {self.target}){acc}")


class CompressionMethod(abc.ABC):
    """A baseline-guided compact-architecture method.

    Args:
        training: the sparsity-training phase (per round for the methods that have rounds).
        finetune: the fine-tuning of the final shrunk model (``epochs=0``: none).
        bytes_per_element: B of eq. 6 for the memory costs (4: float32).
    """

    name: ClassVar[str]
    #: The sparsity training :func:`~keras_cnas.compression.compress` uses by default.
    DEFAULT_TRAINING: ClassVar[TrainingConfig] = TrainingConfig(epochs=2)

    def __init__(self, training: TrainingConfig, finetune: TrainingConfig,
                 bytes_per_element: int = 4):
        for arg, value in (("training", training), ("finetune", finetune)):
            if not isinstance(value, TrainingConfig):
                raise ValueError(f"{arg}: expected a keras_cnas.compression.TrainingConfig, got "
                                 f"{type(value).__name__}")
        if not is_int(bytes_per_element) \
                or bytes_per_element < 1:
            raise ValueError(f"bytes_per_element: expected a positive int, got {bytes_per_element!r}")
        self.training = training
        self.finetune = finetune
        self.bytes_per_element = bytes_per_element

    def hyperparameters(self) -> dict[str, Any]:
        """The method's own settings (subclasses extend)."""
        return {}

    def get_config(self) -> dict[str, Any]:
        return {"method": self.name, **self.hyperparameters(),
                "training": self.training.to_dict(), "finetune": self.finetune.to_dict(),
                "bytes_per_element": self.bytes_per_element}

    def compress(self, model: Any, data: Dataset, target: Target | dict[str, float], *,
                 seed: int = 0) -> CompressionResult:
        """Compresses ``model`` until every cost of ``target`` holds, then fine-tunes.

        Args:
            model: the trained baseline (Sequential or Functional ``tf_keras`` model of
                :data:`~keras_cnas.compression.SUPPORTED_LAYERS`); not modified.
            data: the dataset it was trained on.
            target: e.g. ``Target(flops=0.33)`` or ``{"flops": 0.33}``.
            seed: seeds every training run and probe.

        Raises:
            UnsupportedModelError: the model holds a layer surgery cannot rewrite.
            InfeasibleConstraintsError: no shrunk model can meet the target (the message
                gives the smallest fraction reachable).
        """
        if not isinstance(data, Dataset):
            raise ValueError(f"data: expected a keras_cnas.data.Dataset (e.g. "
                             f"keras_cnas.data.load('cifar10', path)), got {type(data).__name__}")
        if isinstance(target, dict):
            target = Target.from_dict(target)
        if not isinstance(target, Target):
            raise ValueError(f"target: expected a Target or a dict such as {{'flops': 0.33}}, "
                             f"got {type(target).__name__}")
        graph = ChannelGraph(model)
        if tuple(model.input_shape[1:]) != tuple(data.input_shape):
            raise ValueError(f"data: images of shape {data.input_shape} do not fit the model's "
                             f"input {tuple(model.input_shape[1:])}")
        baseline = graph_costs(graph, graph.full_counts(), self.bytes_per_element)
        bounds = target.bounds(baseline)
        check_feasible(graph, bounds, baseline, self.bytes_per_element)
        baseline_accuracy = accuracy(model, data)
        logger.info("%s: baseline %s; target %s", self.name, baseline.summary(), target)
        context = CompressionContext(model, graph, data, target, bounds, baseline, seed,
                                self.bytes_per_element)
        outcome = self._search(context)
        compressed = outcome.model
        costs = model_costs(compressed, self.bytes_per_element)
        broken = bounds.violations(costs)
        if broken:  # the search priced its choice exactly; this is a bug, never a result.
            raise RuntimeError(f"{self.name}: the shrunk model breaks the target: "
                               f"{'; '.join(map(str, broken))}")
        recalibrate_batch_norm(compressed, data, seed=seed)
        pruned_accuracy = accuracy(compressed, data)
        _, finetune_seconds = fit(compressed, data, self.finetune, seed=seed + 1)
        final_accuracy = accuracy(compressed, data)
        widths = _widths(graph, compressed)
        result = CompressionResult(
            method=self.name, model=compressed, target=target, bounds=bounds,
            baseline_costs=baseline, costs=costs, widths=widths, strength=outcome.strength,
            history=outcome.history, baseline_accuracy=baseline_accuracy,
            pruned_accuracy=pruned_accuracy, accuracy=final_accuracy,
            search_seconds=outcome.train_seconds, finetune_seconds=finetune_seconds,
            config=self.get_config())
        logger.info("%s", result.summary())
        return result

    @abc.abstractmethod
    def _search(self, context: CompressionContext) -> SearchOutcome:
        """Sparsify, tune the strength and shrink until ``context.bounds`` hold."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


#: Compression methods by name: ``group_lasso``, ``vardrop``, ``morphnet``, ``synthesis``.
METHODS: Registry[type[CompressionMethod]] = Registry("compression method")


def _widths(graph: ChannelGraph, compressed: Any) -> dict[str, tuple[int, int]]:
    """Per prunable group of the baseline: (units now, units before), read from the
    compressed model's producer that names the group."""
    out = {}
    for group in graph.prunable:
        layer = compressed.get_layer(group.producers[0])
        now = layer.filters if hasattr(layer, "filters") else layer.units
        out[group.name] = (int(now), group.size)
    return out


def positive(name: str, value: Any, example: str) -> float:
    """``value`` as a float if it is a finite positive number, else a ValueError naming it."""
    if not is_finite_number(value) \
            or value <= 0:
        raise ValueError(f"{name}: expected a positive number such as {example}, got {value!r}")
    return float(value)


def count(name: str, value: Any, low: int = 1) -> int:
    if not is_int(value) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    return value


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started


def lambda_for(strength: float, training: TrainingConfig, num_examples: int) -> float:
    """The lambda whose proximal steps over one ``training`` phase add up to ``strength``
    (in group norm): ``strength / (learning_rate * steps)``."""
    return strength / (training.learning_rate * max(1, training.steps(num_examples)))
