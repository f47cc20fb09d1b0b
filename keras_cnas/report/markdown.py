"""The search as a Markdown page: settings, status, the best and top trials in words with
their costs and measured TFLite figures, the Pareto fronts, and the plots. Pure Python."""

from __future__ import annotations

import datetime
import json
import pathlib
from typing import Any, Mapping

from keras_cnas._checks import is_int
from keras_cnas.costs.report import _human
from keras_cnas import ranking
from keras_cnas.costs.measured import MEASURED_COSTS
from keras_cnas.report.record import SearchRecord
from keras_cnas.report.specs import describe

#: Columns of the top-trials table, when any trial has the cost.
TABLE_COSTS = ("params", "madds", "flops", "memory_bytes", "peak_activation_bytes",
               *MEASURED_COSTS, "train_seconds")
_STRATEGY_REPORT_CHARS = 4000


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _cost(name: str, value: Any, bound: float | None = None) -> str:
    if value is None:
        return "-"
    text = f"{value:.2f}" if name in ("latency_ms", "train_seconds") else _human(name, value)
    if bound:  # how much of the budget is used tells whether the bound binds
        text += f" ({value / bound:.0%})"
    return text


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def top_trials_table(record: SearchRecord, n: int = 10) -> str:
    """The ``n`` best successful trials as a Markdown table, the search's best first.

    Trials at the highest fidelity reached come first (a traction score is an early estimate,
    comparable only with other traction scores), then the others, each by score. Costs that
    have a hard bound show the fraction of the bound used.

    Example:
        >>> from keras_cnas.spaces import CategoricalSpace
        >>> from keras_cnas.trial import Trial, TrialStatus
        >>> spec = CategoricalSpace([3]).from_decisions([1])
        >>> trial = Trial(0, spec, status=TrialStatus.COMPLETED, score=0.9, metrics={"acc": 0.9},
        ...               costs={"params": 1500})
        >>> record = SearchRecord(pathlib.Path("."), [trial], [], {"constraints":
        ...                       {"max_params": 3000}}, "acc", "max")
        >>> print(top_trials_table(record))
        | rank | trial | phase / fidelity | acc | params | architecture |
        |---:|---:|---|---:|---:|---|
        | 1 | 0 | - / full | 0.9000 | 1.5k (50%) | decisions 1 |
    """
    top = {t.fidelity for t in ranking.comparable(record.trials)}
    ranked = sorted((t for t in record.trials if t.ok),
                    key=lambda t: (t.fidelity not in top, -t.score, t.id))[:n]
    if not ranked:
        return "_No successful trial yet._"
    costs = [c for c in TABLE_COSTS if any(t.costs.get(c) is not None for t in ranked)]
    accuracy = record.accuracy_label != record.objective
    header = ["rank", "trial", "phase / fidelity", record.objective] + (
        ["accuracy"] if accuracy else []) + costs + ["architecture"]
    align = ["---:", "---:", "---", "---:"] + (["---:"] if accuracy else []) + ["---:"] * len(
        costs) + ["---"]
    bounds = record.constraints.bounds
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for rank, t in enumerate(ranked, 1):
        row = [str(rank), str(t.id), f"{t.phase or '-'} / {t.fidelity}",
               _fmt(record.objective_value(t))]
        if accuracy:
            row.append(_fmt(record.accuracy(t)))
        row += [_cost(c, t.costs.get(c), bounds.get(c)) for c in costs]
        row.append(f"{_cell(describe(t.spec))}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _front_table(record: SearchRecord, cost: str) -> str:
    front = ranking.pareto_front(record.trials, cost, record.objective)
    if not front:
        return "_No point yet._"
    by_id = {t.id: t for t in record.trials}
    lines = [f"| {cost} | {record.accuracy_label} | trial | architecture |", "|---:|---:|---:|---|"]
    for point in front:
        lines.append(f"| {_cost(cost, point[cost])} | {point['accuracy']:.4f} | {point['id']} | "
                     f"{_cell(describe(by_id[point['id']].spec))} |")
    return "\n".join(lines)


def _best_section(record: SearchRecord) -> list[str]:
    best = record.best
    if best is None:
        return ["_No successful trial yet._"]
    lines = [f"Trial **{best.id}** ({best.phase or '-'}, {best.fidelity} fidelity): "
             f"`{describe(best.spec)}`", ""]
    lines.append(f"- {record.objective}: {_fmt(record.objective_value(best))}; "
                 f"{record.accuracy_label}: {_fmt(record.accuracy(best))}")
    analytic = [f"{c} {_cost(c, best.costs[c], record.constraints.bounds.get(c))}"
                for c in TABLE_COSTS if best.costs.get(c) is not None]
    if analytic:
        lines.append("- costs: " + ", ".join(analytic))
    final = record.final_metrics
    if final and record.summary and (record.summary.get("best") or {}).get("id") == best.id:
        parts = [f"{k} {_fmt(final[k])}" for k in ("test_accuracy", "test_loss", "epochs")
                 if final.get(k) is not None]
        if parts:
            lines.append("- retrained on train + validation: " + ", ".join(parts))
    export = record.export
    if export:
        lines.append("- " + export_line(export))
    return lines


def export_line(export: Mapping[str, Any]) -> str:
    """The measured figures of ``best/export.json`` in one line.

    Example:
        >>> export_line({"quantize": "int8", "tflite_bytes": 9000, "arena_bytes": 2100,
        ...              "latency_ms": {"xnnpack": 0.012, "builtin": 0.034},
        ...              "tflite_accuracy": 0.95, "keras_accuracy": 0.951, "agreement": 0.99})
        'exported int8 `model.tflite`: 9,000 bytes, TFLite Micro arena 2,100 bytes, latency 0.012 ms (XNNPACK) / 0.034 ms (builtin kernels), test accuracy 0.9500 (Keras 0.9510, agreement 0.9900)'
    """
    parts = [f"{export.get('tflite_bytes', 0):,} bytes"]
    if export.get("arena_bytes") is not None:
        parts.append(f"TFLite Micro arena {export['arena_bytes']:,} bytes")
    latency = export.get("latency_ms") or {}
    if latency:
        parts.append(f"latency {latency.get('xnnpack', float('nan')):.3f} ms (XNNPACK) / "
                     f"{latency.get('builtin', float('nan')):.3f} ms (builtin kernels)")
    if export.get("tflite_accuracy") is not None:
        parts.append(f"test accuracy {export['tflite_accuracy']:.4f} (Keras "
                     f"{export.get('keras_accuracy', float('nan')):.4f}, agreement "
                     f"{export.get('agreement', float('nan')):.4f})")
    return f"exported {export.get('quantize', '?')} `model.tflite`: " + ", ".join(parts)


def markdown_report(record: SearchRecord, plots: Mapping[str, pathlib.Path] | None = None,
                    top: int = 10, relative_to: pathlib.Path | None = None) -> str:
    """The whole report as Markdown.

    Args:
        record: the search (``load_search``).
        plots: name -> PNG file from ``save_plots``; embedded where they belong.
        top: rows of the top-trials table.
        relative_to: the report's directory, so that images are linked relatively.

    Example:
        >>> text = markdown_report(load_search("runs/demo"))  # doctest: +SKIP
    """
    plots = dict(plots or {})

    def image(name: str, alt: str) -> list[str]:
        if name not in plots:
            return []
        path = plots[name]
        link = path.relative_to(relative_to) if relative_to is not None else path
        return [f"![{alt}]({link.as_posix()})", ""]

    config = record.config
    strategy = config.get("strategy") or {}
    space = config.get("space") or {}
    counts = record.counts()
    now = datetime.datetime.now().isoformat(timespec="seconds")
    state = (f"**in progress**: {len(record.running)} trial(s) running" if record.running
             else "**in progress** (no summary.json yet)" if record.summary is None else "finished")
    lines = [f"# Search report: `{record.search_dir.name}`", "",
             f"_{state}; generated {now} from `{record.search_dir}`._", "", "## Settings", ""]
    lines.append(f"- space: `{space.get('space', space.get('name', '?'))}` "
                 f"{_config_line(space.get('config', {}))}")
    lines.append(f"- strategy: `{strategy.get('name', '?')}` "
                 f"{_config_line(strategy.get('config', {}))}")
    bounds = record.constraints.bounds
    lines.append("- hard constraints: " + (", ".join(f"`max_{k}` = {_cost(k, v)}"
                                                      for k, v in bounds.items()) or "none"))
    lines.append(f"- objective: `{record.objective}` ({record.direction}imised); seed "
                 f"{config.get('seed', '?')}")
    if record.summary:
        run = record.summary.get("config", {})
        lines.append(f"- runner: `{run.get('runner', '?')}` with {run.get('workers', '?')} "
                     "worker(s)")
    lines += ["", "## Status", ""]
    lines.append(f"- trials: {len(record.trials)} ("
                 + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")")
    unrecorded = record.rejected_count - len(record.rejected)
    note = (f" ({unrecorded} without recorded costs: the search predates their recording)"
            if unrecorded else "")
    lines.append(f"- proposals rejected by the hard constraints before training: "
                 f"{record.rejected_count}{note}")
    failures = [t for t in record.trials if t.status.finished and not t.ok and t.error]
    if failures:
        lines.append(f"- why trials failed (first {min(5, len(failures))}):")
        lines += [f"  - trial {t.id} ({t.status.value}): {_cell(t.error.splitlines()[0][:160])}"
                  for t in failures[:5]]
    lines += ["", "## Best trial", ""] + _best_section(record)
    lines += ["", f"## Top {top} trials", "",
              "Trials of the highest fidelity reached first, then the others, each by score "
              "(a traction score is an early estimate, comparable only with other traction "
              "scores).", "", top_trials_table(record, top), ""]
    lines += ["## Pareto fronts", "",
              f"Non-dominated trials: higher {record.accuracy_label} at lower cost, among the "
              "successful trials of the highest fidelity reached. Dashed lines are the hard "
              "bounds.", ""]
    for cost in [name[len("pareto_"):] for name in plots if name.startswith("pareto_")] or list(
            ranking.PARETO_COSTS):
        lines += [f"### {record.accuracy_label} vs {cost}", ""]
        lines += image(f"pareto_{cost}", f"{record.accuracy_label} vs {cost}")
        lines += [_front_table(record, cost), ""]
    lines += ["## Progress", ""] + image("progress", "best score vs trials")
    lines += ["## Costs of evaluated vs rejected samples", ""]
    lines += image("cost_histograms", "cost histograms")
    if not record.rejected:
        lines += ["No rejected proposal has recorded costs (none was rejected, or the search "
                  "predates their recording).", ""]
    report = (record.summary or {}).get("strategy_report")
    if report:
        text = json.dumps(report, indent=1, sort_keys=True, default=str)
        if len(text) > _STRATEGY_REPORT_CHARS:
            text = text[:_STRATEGY_REPORT_CHARS] + "\n... (truncated; see summary.json)"
        lines += ["## Strategy report", "", "```json", text, "```", ""]
    lines += ["## TensorBoard", "", f"`tensorboard --logdir {record.search_dir / 'tensorboard'}`: "
              "one run per trial (its HParams session: spec summary, costs, metrics) and a "
              "`search` run with the progress curves.", ""]
    return "\n".join(lines)


def _config_line(config: Mapping[str, Any]) -> str:
    """Scalar settings only: a space's block table or a cost table would drown the line."""
    items = [f"{k}={v}" for k, v in sorted(config.items())
             if isinstance(v, (int, float, str, bool)) or (
                 isinstance(v, (list, tuple)) and len(v) <= 8
                 and all(isinstance(x, (int, float, str)) for x in v))]
    return f"({', '.join(items)})" if items else ""


def write_report(search_dir: str | pathlib.Path, out_dir: str | pathlib.Path | None = None, *,
                 top: int = 10, plots: bool = True) -> dict[str, pathlib.Path]:
    """Writes ``report.md`` and the PNG plots of the search in ``search_dir``.

    Works on a search still running (it reads the SQLite store read-only).

    Args:
        search_dir: the search's directory.
        out_dir: where to write (default ``search_dir/report``).
        top: rows of the top-trials table.
        plots: draw the PNG plots (needs matplotlib: ``pip install 'keras_cnas[plot]'``).

    Returns:
        Name -> file: ``report`` (the Markdown) and each plot.

    Example:
        >>> files = write_report("runs/demo")  # doctest: +SKIP
        >>> files["report"]                    # doctest: +SKIP
        PosixPath('runs/demo/report/report.md')
    """
    from keras_cnas.report.record import load_search

    if not is_int(top) or top < 1:
        raise ValueError(f"top: expected a positive number of table rows, got {top!r}")
    record = load_search(search_dir)
    out = pathlib.Path(out_dir) if out_dir is not None else record.search_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, pathlib.Path] = {}
    if plots:
        from keras_cnas.report.plots import save_plots

        files.update(save_plots(record, out))
    path = out / "report.md"
    path.write_text(markdown_report(record, files, top=top, relative_to=out) + "\n")
    return {"report": path, **files}


__all__ = ["export_line", "markdown_report", "top_trials_table", "write_report"]
