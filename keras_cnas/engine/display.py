"""The text a search prints: a progress line per trial, the top table, ``results_text``
(``SearchResult.summary()``). Which trial is best is :mod:`keras_cnas.ranking`'s."""

from __future__ import annotations

import datetime
from typing import Any, Mapping, Sequence

from keras_cnas.costs.constraints import KIB_COSTS, Constraints, kib
from keras_cnas.costs.report import _human
from keras_cnas.ranking import accuracy_of
from keras_cnas.trial import Trial

#: Short column labels. ``memory_bytes`` is MIT-LL eq. 6 (weights + the largest activation),
#: not what a device needs: the arena and the flatbuffer are ``arena_bytes`` / ``tflite_bytes``.
COST_LABELS = {"params": "params", "madds": "madds", "flops": "flops",
               "memory_bytes": "eq6 w+a", "peak_activation_bytes": "peak act",
               "arena_bytes": "arena", "tflite_bytes": "flash", "latency_ms": "host lat",
               "train_seconds": "train s"}
#: What ``latency_ms`` is: measured here, not on a device (keras_cnas.export.measure_latency).
LATENCY_NOTE = ("median LiteRT latency (XNNPACK, 1 thread) measured on the machine running "
                "the search, not on a device")

#: Costs measured on a trial's artifact, shown whenever a trial has them.
MEASURED_SHOWN = ("arena_bytes", "tflite_bytes", "latency_ms")


def shown_costs(constraints: Constraints | None = None, trials: Sequence[Trial] = ()) -> list[str]:
    """The costs a progress line and the top table show: params, MAdds, eq. 6, every bounded
    cost (arena and flash among them when bounded) and what ``trials`` measured."""
    bounded = list(constraints.bounds) if constraints else []
    measured = [c for c in MEASURED_SHOWN if any(c in t.costs for t in trials)]
    return list(dict.fromkeys(["params", "madds", "memory_bytes", *bounded, *measured]))


def format_cost(name: str, value: float | None) -> str:
    """A cost for a table cell: KiB for arena and flash, ms for latency, else 1.23M style."""
    if value is None:
        return "-"
    if name in KIB_COSTS:
        return kib(value)
    if name == "latency_ms":
        return f"{value:.3g}ms"
    return _human(name, value)


def top_table(trials: Sequence[Trial], objective: str, n: int = 10,
              constraints: Constraints | None = None) -> str:
    """The ``n`` best successful trials as a fixed-width text table, with a column per
    cost of :func:`shown_costs` (arena and flash in KiB when bounded)."""
    ranked = sorted((t for t in trials if t.ok), key=lambda t: (-t.score, t.id))[:n]
    if not ranked:
        return "no successful trials"
    costs = shown_costs(constraints, ranked)
    header = (f"{'rank':>4} {'id':>5} {'phase':<9} {'fidelity':<8} {objective:>11} {'accuracy':>8} "
              + " ".join(f"{COST_LABELS.get(c, c)[:9]:>9}" for c in costs) + "  architecture")
    lines = [header, "-" * len(header)]
    for rank, t in enumerate(ranked, 1):
        acc = accuracy_of(t, objective)
        obj = t.metrics.get(objective)
        describe = getattr(t.spec, "describe", None)
        arch = describe() if describe else t.spec.key()
        lines.append(
            f"{rank:>4} {t.id:>5} {t.phase:<9.9} {t.fidelity:<8} {_fmt(obj):>11} {_fmt(acc):>8} "
            + " ".join(f"{format_cost(c, t.costs.get(c)):>9}" for c in costs) + f"  {arch[:70]}")
    if "memory_bytes" in costs:
        lines.append("eq6 w+a: MIT-LL eq. 6, 4 bytes x (weights + largest activation); not the "
                     "TFLite Micro arena nor the .tflite size")
    if "latency_ms" in costs:
        lines.append(f"host lat: {LATENCY_NOTE}")
    return "\n".join(lines)


def progress_line(trial: Trial, done: int, total: int | None, elapsed: float,
                  per_trial: float | None, objective: str,
                  constraints: Constraints | None = None) -> str:
    """One line per finished trial: id, phase, score, the costs of :func:`shown_costs`,
    time, elapsed, ETA."""
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
    costs = " ".join(f"{COST_LABELS.get(c, c)} {format_cost(c, trial.costs.get(c))}"
                     for c in shown_costs(constraints, [trial]))
    return (f"[{count}] trial {trial.id} {trial.phase}/{trial.fidelity}: {status}{error} | "
            f"{costs} | {seconds:.1f}s, elapsed {_clock(elapsed)}{eta}")


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


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
