"""The target of a compression: hard bounds as fractions of the baseline's costs."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from keras_cnas._checks import is_real
from keras_cnas.costs import Constraints, CostReport

__all__ = ["TARGET_COSTS", "Target"]

#: Costs a target may bound (analytic: they are priced before a model is built).
TARGET_COSTS = ("flops", "madds", "params", "memory_bytes", "peak_activation_bytes")


@dataclasses.dataclass(frozen=True)
class Target:
    """Hard bounds: ``compressed[cost] <= fraction * baseline[cost]`` for every cost given.

    Args:
        flops: fraction of the baseline's FLOPs (MIT-LL eq. 7; ``keras_cnas.costs``).
        madds: fraction of its multiply-accumulates.
        params: fraction of its parameters (``count_params()``).
        memory_bytes: fraction of its memory (eq. 6).
        peak_activation_bytes: fraction of its peak activation memory.

    Example:
        >>> from keras_cnas.costs import CostReport
        >>> Target(flops=0.33).bounds(CostReport(flops=3e6, params=100)).to_dict()
        {'max_flops': 990000.0}
    """

    flops: float | None = None
    madds: float | None = None
    params: float | None = None
    memory_bytes: float | None = None
    peak_activation_bytes: float | None = None

    def __post_init__(self) -> None:
        for name, value in self.fractions().items():
            if not is_real(value) \
                    or not (math.isfinite(value) and 0 < value <= 1):
                raise ValueError(f"{name}: expected a fraction of the baseline in (0, 1], such "
                                 f"as 0.33, got {value!r}")
        if not self.fractions():
            raise ValueError("target: bound at least one cost, e.g. Target(flops=0.33) for a "
                             f"third of the baseline's FLOPs; costs: {', '.join(TARGET_COSTS)}")

    def fractions(self) -> dict[str, float]:
        """``{cost: fraction}`` of the bounded costs."""
        return {name: getattr(self, name) for name in TARGET_COSTS if getattr(self, name) is not None}

    @property
    def primary(self) -> str:
        """The cost methods weigh channels by (MorphNet, synthesis): the first bounded."""
        return next(iter(self.fractions()))

    def bounds(self, baseline: CostReport, progress: float = 1.0) -> Constraints:
        """The absolute bounds; with ``progress`` in (0, 1], the intermediate bounds
        ``baseline * fraction ** progress`` of a gradual schedule."""
        missing = [c for c in self.fractions() if baseline.get(c) is None]
        if missing:
            raise ValueError(f"baseline: its cost report lacks {missing}; it has {baseline.names()}")
        return Constraints(**{f"max_{c}": float(baseline[c]) * f ** progress
                              for c, f in self.fractions().items()})

    def to_dict(self) -> dict[str, float]:
        return self.fractions()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Target":
        unknown = set(data) - set(TARGET_COSTS)
        if unknown:
            raise ValueError(f"target: unknown cost(s) {sorted(unknown)}; known: "
                             f"{', '.join(TARGET_COSTS)}")
        return cls(**data)

    def __str__(self) -> str:
        return ", ".join(f"{c} <= {f:g} x baseline" for c, f in self.fractions().items())
