"""The search on screen: Pareto fronts, progress, and the costs of evaluated vs rejected samples.

Each ``*_figure`` function returns a ``matplotlib.figure.Figure`` (no pyplot, so no global
state and no display needed); :func:`save_plots` writes them as PNG files. matplotlib is
optional (``pip install 'keras_cnas[plot]'``) and imported on first use.

Every scatter collection carries a label naming its group, so what is drawn can be counted
(``tests/test_report.py`` checks the points against the trials).
"""

from __future__ import annotations

import math
import os
import pathlib
from typing import TYPE_CHECKING, Any, Sequence

from keras_cnas._checks import is_finite_number
from keras_cnas.costs.measured import MEASURED_COSTS
from keras_cnas.costs.report import _human
from keras_cnas import ranking
from keras_cnas.report.record import SearchRecord
from keras_cnas.trial import Trial, TrialStatus

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The costs a histogram of evaluated vs rejected proposals may show, in display order: the
#: analytic ones, which rejected proposals are recorded with.
HISTOGRAM_COSTS = ("params", "madds", "flops", "memory_bytes", "peak_activation_bytes")
DPI = 110

_FIDELITY_STYLE = {"full": dict(marker="o", color="tab:blue"),
                   "traction": dict(marker="o", facecolors="none", edgecolors="tab:gray")}


def _matplotlib():
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("keras_cnas.report plots need matplotlib, which is not installed; "
                          "pip install 'keras_cnas[plot]' (or pass --noplots to "
                          "tools/report.py for the Markdown report and TensorBoard only)") from None
    return matplotlib, Figure


def _new_figure(width: float, height: float) -> "Figure":
    _, Figure = _matplotlib()
    return Figure(figsize=(width, height), layout="constrained")


def _wide(values: Sequence[float]) -> bool:
    """A log axis reads better when positive values span more than two decades."""
    positive = [v for v in values if v > 0]
    return len(positive) == len(values) and len(values) > 1 and max(positive) / min(positive) > 100


def pareto_costs(record: SearchRecord) -> list[str]:
    """The costs to draw an accuracy-vs-cost front for: the summary's (params, MAdds,
    memory), every bounded cost, and measured TFLite costs, if any trial reports them."""
    wanted = list(ranking.PARETO_COSTS) + [c for c in record.constraints.bounds
                                             if c not in ranking.PARETO_COSTS]
    wanted += [c for c in MEASURED_COSTS if c not in wanted]
    return [c for c in wanted if any(is_finite_number(t.costs.get(c))
                                     and record.accuracy(t) is not None for t in record.trials)]


def pareto_figure(record: SearchRecord, cost: str) -> "Figure":
    """Accuracy vs ``cost``: every trial, the non-dominated front, and the hard bound.

    Successful trials are drawn per fidelity (traction estimates hollow, full training
    filled); trials a *measured* bound rejected (INFEASIBLE, but trained) as red crosses.
    The front is the summary's: successful trials at the highest fidelity reached. A bound
    on ``cost`` is a dashed vertical line, and the axis is widened to show it.

    Example:
        >>> fig = pareto_figure(load_search("runs/demo"), "params")  # doctest: +SKIP
        >>> fig.savefig("pareto_params.png")                         # doctest: +SKIP
    """
    fig = _new_figure(6.4, 4.4)
    ax = fig.add_subplot()
    xs_all: list[float] = []
    for fidelity in ("traction", "full"):
        group = [t for t in record.trials if t.ok and t.fidelity == fidelity]
        points = _points(record, group, cost)
        if points:
            xs, ys = zip(*points)
            ax.scatter(xs, ys, s=22, label=f"{fidelity} ({len(points)})",
                       **_FIDELITY_STYLE[fidelity])
            xs_all += xs
    measured_out = [t for t in record.trials if t.status == TrialStatus.INFEASIBLE]
    points = _points(record, measured_out, cost)
    if points:
        xs, ys = zip(*points)
        ax.scatter(xs, ys, s=30, marker="x", color="tab:red",
                   label=f"infeasible, measured ({len(points)})")
        xs_all += xs
    front = ranking.pareto_front(record.trials, cost, record.objective)
    if front:
        fx = [p[cost] for p in front]
        fy = [p["accuracy"] for p in front]
        # Ringed markers: a front of one point is still visible.
        ax.plot(fx, fy, drawstyle="steps-post", color="tab:orange", linewidth=1.5, marker="o",
                markersize=9, markerfacecolor="none", label=f"Pareto front ({len(front)})")
    bound = record.constraints.bounds.get(cost)
    if bound is not None:
        ax.axvline(bound, color="tab:red", linestyle="--", linewidth=1.2,
                   label=f"max_{cost} = {_human(cost, bound)}")
        xs_all.append(bound)
    if xs_all and _wide(xs_all):
        ax.set_xscale("log")
    ax.set_xlabel(cost)
    ax.set_ylabel(record.accuracy_label)
    ax.set_title(f"{record.accuracy_label} vs {cost}")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right")
    return fig


def _points(record: SearchRecord, trials: Sequence[Trial], cost: str) -> list[tuple[float, float]]:
    points = []
    for t in trials:
        accuracy, value = record.accuracy(t), t.costs.get(cost)
        if accuracy is not None and is_finite_number(accuracy) and is_finite_number(value):
            points.append((float(value), float(accuracy)))
    return points


def progress_figure(record: SearchRecord) -> "Figure":
    """Best score vs number of trials (the RCAS paper's Figure 4).

    The x axis counts finished trials in the order they finished. Each successful trial is
    a point (its objective; below, its accuracy, when that is a different metric), and a
    step line is the best so far at each fidelity (traction scores are early estimates and
    are not compared with full ones). Failed and infeasible trials are ticks on the x axis.

    Example:
        >>> progress_figure(load_search("runs/demo")).savefig("progress.png")  # doctest: +SKIP
    """
    order = record.finished
    position = {t.id: i for i, t in enumerate(order, start=1)}
    show_accuracy = record.accuracy_label != record.objective
    fig = _new_figure(6.4, 6.0 if show_accuracy else 4.0)
    axes = fig.subplots(2 if show_accuracy else 1, 1, sharex=True, squeeze=False)[:, 0]
    minimise = record.direction == "min"
    panels = [(axes[0], record.objective_value,
               f"{record.objective} ({'lower' if minimise else 'higher'} is better)", minimise)]
    if show_accuracy:
        panels.append((axes[1], record.accuracy, record.accuracy_label, False))
    for ax, value_of, label, lower_better in panels:
        for fidelity in ("traction", "full"):
            group = [t for t in order
                     if t.ok and t.fidelity == fidelity and value_of(t) is not None]
            if not group:
                continue
            xs = [position[t.id] for t in group]
            ys = [value_of(t) for t in group]
            ax.scatter(xs, ys, s=14, alpha=0.8, label=f"{fidelity} trials ({len(group)})",
                       **_FIDELITY_STYLE[fidelity])
            pick = min if lower_better else max
            best, running = [], ys[0]
            for y in ys:
                running = pick(running, y)
                best.append(running)
            # Extend the last best value to the last trial so the curve spans the search.
            ax.step(xs + [len(order)], best + [best[-1]], where="post", linewidth=1.6,
                    color="tab:orange" if fidelity == "full" else "tab:green",
                    label=f"best so far, {fidelity}")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    bad = [position[t.id] for t in order if not t.ok]
    if bad:
        # y in axes coordinates: ticks along the bottom whatever the data range.
        axes[0].scatter(bad, [0.02] * len(bad), transform=axes[0].get_xaxis_transform(),
                        marker="|", s=60, color="tab:red",
                        label=f"failed / infeasible ({len(bad)})")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    axes[-1].set_xlabel("trials finished")
    axes[0].set_title(f"best score vs trials ({len(order)} finished"
                      + (f", {len(record.running)} running)" if record.running else ")"))
    return fig


def histogram_costs(record: SearchRecord) -> list[str]:
    """Analytic costs that are bounded or among the summary's, and that samples report."""
    wanted = [c for c in HISTOGRAM_COSTS if c in record.constraints.bounds
              or c in ranking.PARETO_COSTS]
    return [c for c in wanted if any(is_finite_number(t.costs.get(c)) for t in record.trials)
            or any(is_finite_number(r["costs"].get(c)) for r in record.rejected)]


def cost_histogram_figure(record: SearchRecord) -> "Figure":
    """Histograms of each analytic cost: evaluated samples vs those the constraints rejected.

    Evaluated samples are every trial (each passed the analytic bounds before it was
    built); rejected ones are the proposals the strategy had to discard. Both share bins
    (log-spaced when the values span over two decades), and the bound is a dashed line.

    Example:
        >>> cost_histogram_figure(load_search("runs/demo")).savefig("costs.png")  # doctest: +SKIP
    """
    import numpy as np

    costs = histogram_costs(record)
    columns = min(2, max(1, len(costs)))
    rows = max(1, math.ceil(len(costs) / columns))
    fig = _new_figure(5.2 * columns, 3.4 * rows)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[len(costs):]:
        ax.set_visible(False)
    for ax, cost in zip(axes, costs):
        evaluated = [float(t.costs[cost]) for t in record.trials
                     if is_finite_number(t.costs.get(cost))]
        rejected = [float(r["costs"][cost]) for r in record.rejected
                    if is_finite_number(r["costs"].get(cost))]
        bound = record.constraints.bounds.get(cost)
        values = evaluated + rejected
        log = _wide(values)
        low, high = min(values), max(values)
        if log:
            bins = np.geomspace(low, high * 1.0001, 25)
            ax.set_xscale("log")
        else:
            bins = np.linspace(low, high if high > low else low + 1, 25)
        if bound is not None and bins[0] < bound < bins[-1]:
            # An edge on the bound: no bar mixes samples on both sides of it.
            bins[np.argmin(np.abs(bins - bound))] = bound
        ax.hist(evaluated, bins=bins, alpha=0.7, color="tab:blue",
                label=f"evaluated ({len(evaluated)})")
        if rejected:
            ax.hist(rejected, bins=bins, alpha=0.6, color="tab:red",
                    label=f"rejected ({len(rejected)})")
        if bound is not None:
            ax.axvline(bound, color="black", linestyle="--", linewidth=1.2,
                       label=f"max_{cost} = {_human(cost, bound)}")
        ax.set_title(cost)
        ax.set_ylabel("samples")
        ax.legend(fontsize=8)
    if not costs:
        axes[0].set_visible(True)
        axes[0].text(0.5, 0.5, "no analytic costs recorded", ha="center", va="center")
    note = ""
    if not record.rejected:
        note = (f" ({record.rejected_count} rejected; their costs were not recorded)"
                if record.rejected_count else " (no proposal was rejected)")
    fig.suptitle("costs of evaluated vs rejected samples" + note)
    return fig


def save_plots(record: SearchRecord, out_dir: str | os.PathLike[str]) -> dict[str, pathlib.Path]:
    """Writes every plot of ``record`` as a PNG in ``out_dir``.

    Returns:
        Name -> file: ``pareto_<cost>`` for each of :func:`pareto_costs`, ``progress`` (if
        any trial finished) and ``cost_histograms`` (if any cost was recorded).

    Example:
        >>> files = save_plots(load_search("runs/demo"), "runs/demo/report")  # doctest: +SKIP
        >>> sorted(files)                                                     # doctest: +SKIP
        ['cost_histograms', 'pareto_madds', 'pareto_memory_bytes', 'pareto_params', 'progress']
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {f"pareto_{c}": (pareto_figure, c) for c in pareto_costs(record)}
    if record.finished:
        figures["progress"] = (progress_figure, None)
    if histogram_costs(record):
        figures["cost_histograms"] = (cost_histogram_figure, None)
    files: dict[str, pathlib.Path] = {}
    for name, (make, arg) in figures.items():
        fig = make(record, arg) if arg is not None else make(record)
        path = out / f"{name}.png"
        tmp = path.with_suffix(".tmp.png")
        fig.savefig(tmp, dpi=DPI)
        os.replace(tmp, path)  # a viewer never sees half a file
        files[name] = path
    return files
