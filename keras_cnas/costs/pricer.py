"""One home for pricing a spec: every analytic cost, the deployment ones included.

A :class:`Pricer` is what a search hands its strategy (``SearchContext.pricer``): it prices a
spec once (cached by key), checks it against the hard constraints (:meth:`Pricer.check`
returns a :class:`Verdict`) and keeps the costs of the proposals the constraints reject
while the strategy is asking, for the search's report.

What it prices:

* the analytic costs of :func:`keras_cnas.costs.estimate` (params, MAdds, FLOPs, eq. 6
  memory, peak activation), or a table-backed space's cost table;
* for the export the search will measure (an :class:`ExportTarget`, taken from the
  evaluator's ``export_quantize``), ``arena_bytes`` and ``tflite_bytes`` from
  :mod:`keras_cnas.costs.deployment`, for every space that has a graph derivation.

Pure Python.

Example:
    >>> from keras_cnas.costs import Constraints
    >>> from keras_cnas.spaces import ConvLayer, Descriptor
    >>> pricer = Pricer(Constraints(max_arena_bytes=4096))
    >>> verdict = pricer.check(Descriptor((28, 28, 1), 10, [ConvLayer(32)]))
    >>> verdict.feasible, [v.cost for v in verdict.violations]
    (False, ['arena_bytes'])
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Iterator

from keras_cnas.costs.constraints import Constraints, Violation
from keras_cnas.costs.deployment import (
    DEPLOYMENT_COSTS,
    ExportTarget,
    deployment_costs,
    has_deployment_costs,
)
from keras_cnas.costs.estimate import estimate as analytic_estimate
from keras_cnas.costs.report import CostReport

#: Priced specs kept per pricer (a search asks a few thousand at most).
CACHE_SIZE = 65536


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The result of :meth:`Pricer.check`: truthy when the spec meets every bound.

    Attributes:
        feasible: no priced cost breaks a bound.
        costs: every priced cost by name.
        violations: the broken bounds (empty when feasible).
    """

    feasible: bool
    costs: dict[str, float]
    violations: tuple[Violation, ...] = ()

    def __bool__(self) -> bool:
        return self.feasible


class Pricer:
    """Prices specs for one search: analytic + deployment costs, cached, and checks bounds.

    Args:
        constraints: the hard bounds :meth:`check` applies (none: everything is feasible).
        target: the export whose ``arena_bytes`` / ``tflite_bytes`` are priced; None
            prices no deployment costs (they can still be measured after training).
        space: the search space; a table-backed ``CategoricalSpace`` answers from its table.
        estimate: replaces the analytic estimate (e.g. a test's cost function).
    """

    def __init__(self, constraints: Constraints | None = None, *,
                 target: ExportTarget | None = ExportTarget(), space: Any = None,
                 estimate: Callable[[Any], CostReport] | None = None):
        self.constraints = constraints if constraints is not None else Constraints()
        self.target = target
        self.space = space
        self._estimate = estimate
        self._cache: dict[str, list] = {}  # key -> [report, deployment costs priced]
        self._bounds_deployment = any(name in self.constraints.bounds for name in DEPLOYMENT_COSTS)
        self._pending: list[dict[str, Any]] = []
        self._recording = False

    def costs(self, spec: Any, *, deployment: bool = True) -> CostReport:
        """Every cost this pricer knows for ``spec``, each computed once per spec key.

        ``deployment=False`` may leave out ``arena_bytes`` / ``tflite_bytes`` when they
        have not been priced yet (they take ~1 ms; the analytic costs ~50 us).
        """
        key = spec.key()
        entry = self._cache.get(key)
        if entry is None:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            entry = self._cache[key] = [self._analytic(spec), False]
        if deployment and not entry[1]:
            entry[0], entry[1] = self._with_deployment(spec, entry[0]), True
        return entry[0]

    __call__ = costs

    def _analytic(self, spec: Any) -> CostReport:
        if self._estimate is not None:
            return self._estimate(spec)
        return analytic_estimate(spec, space=self.space)

    def _with_deployment(self, spec: Any, report: CostReport) -> CostReport:
        if self.target is not None and self._estimate is None and has_deployment_costs(spec):
            return report.with_costs(**deployment_costs(spec, self.target))
        return report

    def check(self, spec: Any) -> Verdict:
        """Prices ``spec`` and checks it against the constraints.

        The deployment costs are priced only when a constraint bounds one of them. While
        :meth:`recording` (the engine wraps each ``ask``), a rejected spec is logged once
        per check, so each entry is one rejected proposal.
        """
        costs = self.costs(spec, deployment=self._bounds_deployment).as_dict()
        violations = tuple(self.constraints.violations(costs)) if self.constraints else ()
        if violations and self._recording:
            self._pending.append({"spec_key": spec.key(), "costs": costs,
                                  "violated": [v.cost for v in violations]})
        return Verdict(not violations, costs, violations)

    def available(self, sample: Any) -> set[str]:
        """The cost names this pricer reports (every spec of a space reports the same)."""
        return set(self.costs(sample).as_dict())

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        """Logs the specs :meth:`check` rejects inside the block (one strategy ask)."""
        self._recording = True
        try:
            yield
        finally:
            self._recording = False

    def take_rejections(self) -> list[dict[str, Any]]:
        """The proposals rejected while recording since the last call."""
        pending, self._pending = self._pending, []
        return pending


__all__ = ["CACHE_SIZE", "Pricer", "Verdict"]
