"""B-ENAS's cost penalty (Xu et al. 2019, eqs. 2-3): ``reward = accuracy - alpha * penalty``.

Unlike a hard constraint, a penalty also prices costs known only after training (the
measured ``train_seconds``), and it grades how far over its bound a cost is, so a
policy-gradient controller learns which way to move.

Pure Python.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from keras_cnas._checks import is_finite_number
from keras_cnas.errors import UnknownCostError

__all__ = ["CostPenalty", "penalty"]

#: Beyond this multiple of its bound a cost's penalty stops growing (eq. 3).
CAP_RATIO = 10.0


def penalty(cost: float, bound: float, beta: float = 1.0) -> float:
    """Eq. 3: the penalty of ``cost`` against its upper bound ``bound``.

    ``0`` for ``cost <= bound``; ``beta * cost / bound + (1 - beta)`` up to
    ``10 * bound``; ``9 * beta + 1`` beyond.

    The paper prints the middle branch as ``beta * c / U + (1 - beta) * U``, which meets
    the cap ``9 * beta + 1`` at ``c = 10 U`` only when ``beta = 1`` (and mixes a unit-free
    ratio with the bound's unit). ``beta * c / U + (1 - beta)`` meets it for every beta,
    and starts at 1 just over the bound, so it is what we use; with the paper's beta = 1 the
    two agree.

    Example:
        >>> [penalty(c, 100.0) for c in (50, 100, 500, 1000, 2000)]
        [0.0, 0.0, 5.0, 10.0, 10.0]
        >>> penalty(1000, 100.0, beta=0.5) == 9 * 0.5 + 1
        True
    """
    if not (isinstance(bound, (int, float)) and math.isfinite(bound) and bound > 0):
        raise ValueError(f"bound: expected a positive finite number, got {bound!r}")
    if not (isinstance(cost, (int, float)) and not math.isnan(cost)):
        raise ValueError(f"cost: expected a number, got {cost!r}")
    if cost <= bound:
        return 0.0
    if cost > CAP_RATIO * bound:
        return (CAP_RATIO - 1.0) * beta + 1.0
    return beta * cost / bound + (1.0 - beta)


@dataclasses.dataclass(frozen=True)
class CostPenalty:
    """The penalised reward of eq. 2 for several bounded costs (their penalties add).

    Args:
        bounds: ``{cost name: upper bound U_c}``, e.g. ``{"params": 50_000,
            "train_seconds": 30}``: any cost the cost model or an evaluator reports.
        alpha: the penalty's weight in the reward (paper: 0.1).
        beta: the slope of eq. 3 (paper: 1).

    Example:
        >>> rule = CostPenalty({"params": 1000, "train_seconds": 10.0})
        >>> rule.penalty({"params": 2000, "train_seconds": 5.0})
        2.0
        >>> round(rule.reward(0.9, {"params": 2000, "train_seconds": 5.0}), 6)
        0.7
    """

    bounds: Mapping[str, float]
    alpha: float = 0.1
    beta: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.bounds, Mapping):
            raise ValueError(f"bounds: expected {{cost name: upper bound}}, got {self.bounds!r}")
        for name, bound in self.bounds.items():
            if not isinstance(name, str) or not is_finite_number(bound) or bound <= 0:
                raise ValueError(f"bounds: {name!r}: expected a positive upper bound, got {bound!r}")
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if not is_finite_number(value) or value < 0:
                raise ValueError(f"{name}: expected a non-negative number, got {value!r}")
        object.__setattr__(self, "bounds", {k: float(v) for k, v in self.bounds.items()})

    def terms(self, costs: Mapping[str, Any]) -> dict[str, float]:
        """Each bounded cost's penalty.

        Raises:
            UnknownCostError: a bounded cost is missing from ``costs``.
        """
        missing = [name for name in self.bounds if costs.get(name) is None]
        if missing:
            raise UnknownCostError(
                f"costs: the penalty bounds {', '.join(missing)} but the costs reported are "
                f"{', '.join(sorted(k for k, v in costs.items() if v is not None)) or 'none'}; "
                "bound only costs the cost model or the evaluator reports")
        return {name: penalty(float(costs[name]), bound, self.beta)
                for name, bound in self.bounds.items()}

    def penalty(self, costs: Mapping[str, Any]) -> float:
        """The sum of the bounded costs' penalties (eq. 3 each)."""
        return float(sum(self.terms(costs).values()))

    def reward(self, accuracy: float, costs: Mapping[str, Any]) -> float:
        """Eq. 2: ``accuracy - alpha * penalty(costs)``."""
        return float(accuracy) - self.alpha * self.penalty(costs)

    def get_config(self) -> dict[str, Any]:
        return {"bounds": dict(self.bounds), "alpha": self.alpha, "beta": self.beta}
