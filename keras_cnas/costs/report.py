"""CostReport: every cost of one architecture, analytic or measured."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

#: Costs the analytic model reports for every network space.
ANALYTIC_COSTS = ("params", "trainable_params", "madds", "flops", "memory_bytes",
                  "peak_activation_bytes")


@dataclasses.dataclass(frozen=True)
class CostReport:
    """The costs of one architecture.

    Attributes:
        params: every stored number, as ``tf_keras.Model.count_params()`` counts them
            (BatchNorm's moving statistics included).
        trainable_params: parameters updated by training (BatchNorm: gamma and beta only),
            the count PyTorch-based tables such as NAS-Bench-Macro report.
        madds: multiply-accumulates of one inference: conv, depthwise and dense layers
            (pooling, BatchNorm, activations and adds do none; BatchNorm folds into the conv).
        flops: the MIT-LL paper's FLOPs, eqs. 7-9 (see ``keras_cnas.costs.descriptor``).
        memory_bytes: the MIT-LL memory, eq. 6: ``B * (params + max_l max(|x_l|, |y_l|))``.
        peak_activation_bytes: the largest set of activations alive at once (an op's inputs,
            its output and tensors kept for a later residual add), times ``B``.
        extra: any other cost, analytic or measured (``latency_ms``, ``arena_bytes``, ...).

    Costs a space cannot compute are None (a table-backed space may report only some).
    """

    params: int | None = None
    trainable_params: int | None = None
    madds: int | None = None
    flops: float | None = None
    memory_bytes: int | None = None
    peak_activation_bytes: int | None = None
    extra: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """Every reported cost by name (None ones left out), extras included."""
        out = {name: getattr(self, name) for name in ANALYTIC_COSTS if getattr(self, name) is not None}
        out.update(self.extra)
        return out

    def names(self) -> list[str]:
        return sorted(self.as_dict())

    def get(self, name: str) -> float | None:
        return self.as_dict().get(name)

    def __getitem__(self, name: str) -> float:
        value = self.get(name)
        if value is None:
            raise KeyError(f"cost {name!r} is not in this report; it has {self.names()}")
        return value

    def with_costs(self, **costs: float) -> "CostReport":
        """A copy with more (e.g. measured) costs added or replaced."""
        fields = {n: costs.pop(n) for n in list(costs) if n in ANALYTIC_COSTS}
        return dataclasses.replace(self, **fields, extra={**self.extra, **costs})

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible; the inverse of :meth:`from_dict`."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in self.as_dict().items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, float]) -> "CostReport":
        known = {k: v for k, v in data.items() if k in ANALYTIC_COSTS}
        return cls(**known, extra={k: v for k, v in data.items() if k not in ANALYTIC_COSTS})

    def summary(self) -> str:
        """One line, e.g. ``params=1.23M madds=4.5M memory=5.1MB peak_act=123kB``."""
        d = self.as_dict()
        return " ".join(f"{k}={_human(k, v)}" for k, v in d.items() if k != "trainable_params")

    def table(self, **more: float) -> str:
        """A readable two-column table of every cost (and ``more`` rows), exact and human.

        Example:
            >>> print(CostReport(params=1234567, memory_bytes=4000).table())
            cost                       value       human
            params                 1,234,567       1.23M
            memory_bytes               4,000         4kB
        """
        rows = {**self.as_dict(), **more}
        width = max([len("cost")] + [len(k) for k in rows])
        lines = [f"{'cost':<{width}}  {'value':>18}  {'human':>10}"]
        for name, value in rows.items():
            exact = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3f}"
            lines.append(f"{name:<{width}}  {exact:>18}  {_human(name, value):>10}")
        return "\n".join(lines)


def _human(name: str, value: float) -> str:
    if name.endswith("_bytes"):
        for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if abs(value) >= scale:
                return f"{value / scale:.3g}{unit}"
        return f"{value:g}B"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:g}"
