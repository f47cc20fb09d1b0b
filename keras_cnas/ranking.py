"""Which finished trials are best: the comparable pool, the best trial, Pareto fronts, the
bounded costs of the best and why a search has no best. Pure Python; the engine writes these
into summary.json, the report reads them back.

Example:
    >>> from keras_cnas.spaces import CategoricalSpace
    >>> s = CategoricalSpace([2]).from_decisions([0])
    >>> ts = [Trial(i, s, status=TrialStatus.COMPLETED, score=a, fidelity=f)
    ...       for i, (a, f) in enumerate([(.9, "traction"), (.7, "full"), (.8, "full")])]
    >>> best_trial(ts).id   # the best at the highest fidelity reached
    2
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from keras_cnas.costs.constraints import KIB_COSTS, Constraints
from keras_cnas.trial import Trial, TrialStatus

__all__ = ["PARETO_COSTS", "accuracy_of", "best_trial", "bounded_costs", "comparable",
           "no_best_reason", "pareto_front", "pareto_fronts"]

#: Costs the Pareto fronts of summary.json are drawn against (plus every bounded cost).
PARETO_COSTS = ("params", "madds", "memory_bytes")


def pareto_fronts(trials: Sequence[Trial], objective: str,
                  constraints: Constraints | None = None) -> dict[str, list[dict[str, Any]]]:
    """Fronts against :data:`PARETO_COSTS` and every bounded cost; byte costs shown in KiB
    carry a ``kib`` field too."""
    costs = dict.fromkeys([*PARETO_COSTS, *(constraints.bounds if constraints else ())])
    fronts = {}
    for cost in costs:
        front = pareto_front(trials, cost, objective)
        if cost in KIB_COSTS:
            front = [{**p, "kib": round(p[cost] / 1024, 3)} for p in front]
        fronts[cost] = front
    return fronts


def bounded_costs(best: Trial | None, constraints: Constraints) -> dict[str, dict[str, Any]]:
    """For summary.json: each bound, the best trial's value and, for arena / flash, KiB."""
    out: dict[str, dict[str, Any]] = {}
    for cost, bound in constraints.bounds.items():
        value = None if best is None else best.costs.get(cost)
        entry: dict[str, Any] = {"bound": bound, "best": value}
        if cost in KIB_COSTS:
            entry["bound_kib"] = round(bound / 1024, 3)
            entry["best_kib"] = None if value is None else round(value / 1024, 3)
        out[cost] = entry
    return out


def no_best_reason(trials: Sequence[Trial], constraints: Constraints) -> str | None:
    """Why a search has no best trial (None when it has one): which bound every trial broke
    and the closest trial, or why every trial failed.

    Example:
        >>> from keras_cnas.spaces import CategoricalSpace
        >>> s = CategoricalSpace([2]).from_decisions([0])
        >>> c = Constraints(max_arena_bytes=65536)
        >>> ts = [Trial(i, s, status=TrialStatus.INFEASIBLE, costs={"arena_bytes": a})
        ...       for i, a in enumerate([90_000, 70_000])]
        >>> print(no_best_reason(ts, c))
        no trial met the bounds: 2 of 2 trials broke max_arena_bytes; the closest, trial 1, has arena_bytes = 70,000 > max 65,536 (+6.8%)
    """
    if best_trial(trials) is not None:
        return None
    if not trials:
        return "the search evaluated no trial"
    ranked = []
    broken: dict[str, int] = {}
    for t in trials:
        violations = constraints.violations(t.costs) if t.status == TrialStatus.INFEASIBLE else []
        for v in violations:
            broken[v.cost] = broken.get(v.cost, 0) + 1
        if violations:
            ranked.append((max(v.ratio for v in violations), t.id, violations))
    if ranked:
        _, tid, violations = min(ranked)
        names = ", ".join(f"max_{c}" for c in sorted(broken, key=lambda c: -broken[c]))
        return (f"no trial met the bounds: {len(ranked)} of {len(trials)} trials broke {names}; "
                f"the closest, trial {tid}, has {'; '.join(map(str, violations))}")
    failed = [t for t in trials if t.status == TrialStatus.FAILED]
    first = failed[0].error.splitlines()[0][:200] if failed and failed[0].error else "no error recorded"
    return (f"no trial succeeded: {len(failed)} of {len(trials)} FAILED (trial "
            f"{failed[0].id if failed else '-'}: {first})")


def comparable(trials: Iterable[Trial]) -> list[Trial]:
    """Successful trials at the highest fidelity any reached (scores of different
    fidelities are not comparable: a traction score is an early estimate)."""
    ok = [t for t in trials if t.ok]
    full = [t for t in ok if t.fidelity == "full"]
    return full or ok


def best_trial(trials: Iterable[Trial]) -> Trial | None:
    """The highest-scoring successful trial at the highest fidelity; ties: lowest id."""
    pool = comparable(trials)
    return max(pool, key=lambda t: (t.score, -t.id)) if pool else None


def accuracy_of(trial: Trial, objective: str) -> float | None:
    """The accuracy to plot: validation accuracy if measured, else the objective."""
    value = trial.metrics.get("val_accuracy", trial.metrics.get(objective))
    return None if value is None else float(value)


def pareto_front(trials: Sequence[Trial], cost: str, objective: str) -> list[dict[str, Any]]:
    """Trials not dominated in (higher accuracy, lower ``cost``), cheapest first.

    Example:
        >>> from keras_cnas.spaces import CategoricalSpace
        >>> s = CategoricalSpace([2]).from_decisions([0])
        >>> ts = [Trial(i, s, status=TrialStatus.COMPLETED, score=a, metrics={"acc": a},
        ...             costs={"params": p}) for i, (a, p) in enumerate([(.9, 10), (.8, 20), (.95, 30)])]
        >>> [p["id"] for p in pareto_front(ts, "params", "acc")]
        [0, 2]
    """
    points = []
    for t in comparable(trials):
        accuracy, value = accuracy_of(t, objective), t.costs.get(cost)
        if accuracy is not None and value is not None:
            points.append((value, -accuracy, t.id, accuracy))
    front, best = [], float("-inf")
    for value, _, tid, accuracy in sorted(points):
        if accuracy > best:
            front.append({"id": tid, "accuracy": accuracy, cost: value})
            best = accuracy
    return front
