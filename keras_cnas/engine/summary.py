"""Pure functions over finished trials: the best one, Pareto fronts, the top table."""

from __future__ import annotations

import datetime
from typing import Any, Iterable, Mapping, Sequence

from keras_cnas.costs.report import _human
from keras_cnas.trial import Trial

#: Costs the Pareto fronts of summary.json are drawn against.
PARETO_COSTS = ("params", "madds", "memory_bytes")


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
        >>> from keras_cnas.trial import Trial, TrialStatus
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


def top_table(trials: Sequence[Trial], objective: str, n: int = 10) -> str:
    """The ``n`` best successful trials as a fixed-width text table."""
    ranked = sorted((t for t in trials if t.ok), key=lambda t: (-t.score, t.id))[:n]
    if not ranked:
        return "no successful trials"
    header = (f"{'rank':>4} {'id':>5} {'phase':<9} {'fidelity':<8} {objective:>11} {'accuracy':>8} "
              f"{'params':>8} {'madds':>8} {'memory':>8}  architecture")
    lines = [header, "-" * len(header)]
    for rank, t in enumerate(ranked, 1):
        acc = accuracy_of(t, objective)
        obj = t.metrics.get(objective)
        describe = getattr(t.spec, "describe", None)
        arch = describe() if describe else t.spec.key()
        lines.append(
            f"{rank:>4} {t.id:>5} {t.phase:<9.9} {t.fidelity:<8} "
            f"{_fmt(obj):>11} {_fmt(acc):>8} {_cost(t, 'params'):>8} {_cost(t, 'madds'):>8} "
            f"{_cost(t, 'memory_bytes'):>8}  {arch[:70]}")
    return "\n".join(lines)


def progress_line(trial: Trial, done: int, total: int | None, elapsed: float,
                  per_trial: float | None, objective: str) -> str:
    """One line per finished trial: id, phase, score, costs, time, elapsed, ETA."""
    acc = accuracy_of(trial, objective)
    status = trial.status.value if not trial.ok else f"{objective} {_fmt(trial.metrics.get(objective))}"
    if acc is not None and trial.ok and "val_accuracy" in trial.metrics:
        status += f" acc {acc:.4f}"
    seconds = trial.timings.get("seconds", 0.0)
    eta = ""
    if total is not None and per_trial is not None:
        eta = f" ETA {_clock(max(0, total - done) * per_trial)}"
    count = f"{done}/{total}" if total is not None else f"{done}"
    error = f" ({trial.error.splitlines()[0][:80]})" if trial.error and not trial.ok else ""
    return (f"[{count}] trial {trial.id} {trial.phase}/{trial.fidelity}: {status}{error} | "
            f"params {_cost(trial, 'params')} madds {_cost(trial, 'madds')} "
            f"mem {_cost(trial, 'memory_bytes')} | {seconds:.1f}s, elapsed {_clock(elapsed)}{eta}")


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def _cost(trial: Trial, name: str) -> str:
    value = trial.costs.get(name)
    return "-" if value is None else _human(name, value)


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(seconds)))


def results_text(summary: Mapping[str, Any], trials: Sequence[Trial], objective: str) -> str:
    """What ``SearchResult.summary()`` returns: the objective, status counts, the best
    trial's values and costs, then the top table."""
    goal = summary.get("objective", {})
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary.get("status_counts", {}).items()))
    lines = [f"objective: {goal.get('name', objective)} ({goal.get('direction', '?')}imised); "
             f"{summary.get('num_trials', len(trials))} trials: {counts or 'none'}; "
             f"{summary.get('rejected_proposals', 0)} proposals rejected by the hard bounds"]
    best = summary.get("best")
    if best:
        spec = best.get("spec", {})
        values = spec.get("values") if isinstance(spec.get("values"), Mapping) else None
        lines.append(f"best: trial {best['id']}" + (
            ": " + ", ".join(f"{k}={v}" for k, v in values.items()) if values else ""))
        metrics = best.get("metrics", {})
        shown = {k: metrics[k] for k in (objective, "val_accuracy", "val_loss") if k in metrics}
        lines.append("  " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
        costs = best.get("costs", {})
        lines.append("  " + ", ".join(f"{k} {costs[k]:,.0f}" for k in
                                      ("params", "madds", "memory_bytes", "arena_bytes")
                                      if costs.get(k) is not None))
        final = best.get("final_metrics") or {}
        if final.get("test_accuracy") is not None:
            lines.append(f"  retrained on train + validation: test accuracy "
                         f"{final['test_accuracy']:.4f}")
    lines.append(top_table(trials, objective))
    return "\n".join(lines)
