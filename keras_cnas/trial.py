"""Candidates, trials and evaluation results: the values strategies, evaluators and the
engine exchange. Pure Python, JSON all the way (never pickle).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from typing import Any, Mapping

from keras_cnas._numbers import finite_or_none  # NaN / inf stored as None (JSON has none)
from keras_cnas.spaces.base import Spec, spec_from_dict


class TrialStatus(str, enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    INFEASIBLE = "INFEASIBLE"

    @property
    def finished(self) -> bool:
        return self in (TrialStatus.COMPLETED, TrialStatus.FAILED, TrialStatus.INFEASIBLE)


#: Fidelities: "traction" is the MIT-LL early score after a few epochs (§3.4); "full" is
#: training to convergence.
FIDELITIES = ("traction", "full")


@dataclasses.dataclass(frozen=True)
class Candidate:
    """What a strategy asks to have evaluated.

    Attributes:
        spec: the architecture.
        fidelity: ``"traction"`` (short training) or ``"full"``.
        phase: the strategy's phase that produced it, e.g. ``"random"``, ``"adaptive"``.
        info: JSON-compatible bookkeeping of the strategy (the move made, the parent, ...).
    """

    spec: Spec
    fidelity: str = "full"
    phase: str = ""
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fidelity not in FIDELITIES:
            raise ValueError(f"fidelity: expected one of {FIDELITIES}, got {self.fidelity!r}")


@dataclasses.dataclass(frozen=True)
class EvaluationResult:
    """What an evaluator returns for one candidate.

    Attributes:
        metrics: measured metrics, including the evaluator's objective (e.g.
            ``{"objective": 0.41, "val_loss": 0.33, "val_accuracy": 0.91}``).
        costs: costs measured on the trained artifact (``train_seconds``, ``arena_bytes``,
            ...), checked against the constraints by the engine.
        status: COMPLETED, FAILED (NaN loss, crash, time limit) or INFEASIBLE.
        error: why it failed, for FAILED / INFEASIBLE.
    """

    metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)
    costs: Mapping[str, float] = dataclasses.field(default_factory=dict)
    status: TrialStatus = TrialStatus.COMPLETED
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": finite_or_none(self.metrics), "costs": finite_or_none(self.costs),
                "status": self.status.value, "error": self.error}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EvaluationResult":
        return cls(dict(data.get("metrics") or {}), dict(data.get("costs") or {}),
                   TrialStatus(data.get("status", "COMPLETED")), data.get("error"))


@dataclasses.dataclass
class Trial:
    """One evaluated (or to-be-evaluated) candidate, as stored in ``trials.db``.

    ``score`` is the evaluator's objective oriented so that higher is better (the negated
    objective when it is minimised); strategies compare trials by it.
    """

    id: int
    spec: Spec
    fidelity: str = "full"
    phase: str = ""
    status: TrialStatus = TrialStatus.PENDING
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    costs: dict[str, float] = dataclasses.field(default_factory=dict)
    score: float | None = None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    error: str | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    attempts: int = 0

    @classmethod
    def from_candidate(cls, trial_id: int, candidate: Candidate) -> "Trial":
        return cls(trial_id, candidate.spec, candidate.fidelity, candidate.phase,
                   info=dict(candidate.info))

    @property
    def candidate(self) -> Candidate:
        return Candidate(self.spec, self.fidelity, self.phase, dict(self.info))

    @property
    def ok(self) -> bool:
        """COMPLETED with a finite score."""
        return self.status == TrialStatus.COMPLETED and self.score is not None \
            and math.isfinite(self.score)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "spec": self.spec.to_dict(), "fidelity": self.fidelity,
                "phase": self.phase, "status": self.status.value,
                "metrics": finite_or_none(self.metrics), "costs": finite_or_none(self.costs),
                "score": self.score, "timings": self.timings,
                "error": self.error, "info": self.info, "attempts": self.attempts}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Trial":
        return cls(int(data["id"]), spec_from_dict(data["spec"]), data.get("fidelity", "full"),
                   data.get("phase", ""), TrialStatus(data.get("status", "PENDING")),
                   dict(data.get("metrics") or {}), dict(data.get("costs") or {}),
                   data.get("score"), dict(data.get("timings") or {}), data.get("error"),
                   dict(data.get("info") or {}), int(data.get("attempts", 0)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
