"""The evaluator interface: a candidate in, metrics and measured costs out.

Pure Python (a table-backed evaluator needs no TensorFlow). Evaluators are rebuilt in
worker processes from ``(name, get_config())`` through :data:`EVALUATORS`, so their
configuration must be JSON-compatible: no pickled objects cross a process boundary.
"""

from __future__ import annotations

import abc
import math
import pathlib
from typing import Any, ClassVar, Mapping

from keras_cnas.registry import Registry
from keras_cnas.trial import Candidate, EvaluationResult

#: Evaluators by name, to rebuild one from its config in a worker process.
EVALUATORS: Registry[type["Evaluator"]] = Registry("evaluator")

DIRECTIONS = ("min", "max")


class Evaluator(abc.ABC):
    """Evaluates candidates; names its objective and the direction it is optimised in.

    Class attributes:
        name: registry key.

    Instance attributes (set by subclasses):
        objective: the metric in ``EvaluationResult.metrics`` that the search optimises.
        direction: ``"min"`` or ``"max"``.
        reported_costs: names of costs this evaluator measures (``train_seconds``, ...),
            which constraints may bound.
    """

    name: ClassVar[str]
    objective: str
    direction: str
    reported_costs: tuple[str, ...] = ()

    @abc.abstractmethod
    def evaluate(self, candidate: Candidate, *, seed: int = 0,
                 workdir: pathlib.Path | None = None) -> EvaluationResult:
        """Trains / looks up ``candidate`` at its fidelity and returns its metrics.

        Must not raise for a bad architecture or a diverging run: those are FAILED results
        with the reason in ``error``. ``workdir`` is a per-trial directory for artifacts.
        """

    @abc.abstractmethod
    def get_config(self) -> dict[str, Any]:
        """JSON-compatible constructor arguments: ``type(self)(**get_config())`` rebuilds it."""

    def finalize(self, candidate: Candidate, out_dir: pathlib.Path, *, seed: int = 0,
                 epochs: int | None = None) -> dict[str, Any]:
        """The search's last step for its best candidate (MIT-LL §4.1: retrain on
        train + validation and save the model under ``out_dir``). Returns its metrics.

        ``epochs`` is the epoch count the best trial's run found best (its ``best_epoch``
        metric), when known. The default re-evaluates at full fidelity and saves nothing."""
        full = Candidate(candidate.spec, "full", candidate.phase, candidate.info)
        return dict(self.evaluate(full, seed=seed, workdir=out_dir).metrics)

    def score(self, metrics: Mapping[str, float]) -> float | None:
        """The objective oriented so that higher is better; None if missing or not finite."""
        value = metrics.get(self.objective)
        if value is None or not math.isfinite(value):
            return None
        return float(value) if self.direction == "max" else -float(value)

    def to_json_config(self) -> dict[str, Any]:
        return {"evaluator": self.name, "config": self.get_config()}

    def identity(self) -> dict[str, Any]:
        """Everything besides the spec that changes a trial's score (JSON). A resumed search
        must match it, so trials of different training are never ranked together. Default:
        the JSON config."""
        return self.to_json_config()

    @staticmethod
    def from_json_config(data: Mapping[str, Any]) -> "Evaluator":
        return EVALUATORS.get(data["evaluator"])(**data["config"])
