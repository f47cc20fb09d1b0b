"""A search as stored on disk, read without disturbing it: the input of every report.

Everything comes from ``search_dir``: ``trials.db`` (opened read-only, so a search still
running in another process is neither locked nor changed), plus ``summary.json``,
``best/metrics.json`` and ``best/export.json`` when the search has finished and written them.
Pure Python.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from typing import Any

from keras_cnas.costs import Constraints
from keras_cnas import ranking
from keras_cnas.engine.store import TrialStore
from keras_cnas.trial import Trial


@dataclasses.dataclass
class SearchRecord:
    """One search's trials, rejected proposals and settings.

    Attributes:
        search_dir: where the search is stored.
        trials: every trial, in id order (running ones included).
        rejected: proposals the hard constraints rejected: ``{"spec_key", "costs",
            "violated", "created"}`` each.
        config: the search's identity as stored: ``space``, ``constraints``, ``strategy``,
            ``seed``.
        objective: the evaluator's objective metric; ``direction``: ``"min"`` or ``"max"``.
        summary: ``summary.json`` (None while the search runs).
        final_metrics: ``best/metrics.json``: the best model retrained on train + validation.
        export: ``best/export.json``: the exported TFLite model's measured figures.
    """

    search_dir: pathlib.Path
    trials: list[Trial]
    rejected: list[dict[str, Any]]
    config: dict[str, Any]
    objective: str
    direction: str
    summary: dict[str, Any] | None = None
    final_metrics: dict[str, Any] | None = None
    export: dict[str, Any] | None = None

    @property
    def constraints(self) -> Constraints:
        return Constraints.from_dict(self.config.get("constraints") or {})

    @property
    def running(self) -> list[Trial]:
        return [t for t in self.trials if not t.status.finished]

    @property
    def finished(self) -> list[Trial]:
        """Finished trials in the order they finished (ties, and old records: by id)."""
        done = [t for t in self.trials if t.status.finished]
        return sorted(done, key=lambda t: (t.timings.get("finished", math.inf), t.id))

    @property
    def in_progress(self) -> bool:
        """No ``summary.json`` yet, or trials still marked running (a stopped search)."""
        return self.summary is None or bool(self.running)

    @property
    def best(self) -> Trial | None:
        return ranking.best_trial(self.trials)

    def accuracy(self, trial: Trial) -> float | None:
        """Validation accuracy when measured, else the objective (as the summary plots it)."""
        return ranking.accuracy_of(trial, self.objective)

    def objective_value(self, trial: Trial) -> float | None:
        """The objective as the evaluator reports it (not negated), or None."""
        value = trial.metrics.get(self.objective)
        if value is None and self.objective == "score":
            value = trial.score
        return None if value is None or not math.isfinite(value) else float(value)

    @property
    def accuracy_label(self) -> str:
        has_val = any("val_accuracy" in t.metrics for t in self.trials)
        return "validation accuracy" if has_val else self.objective

    @property
    def rejected_count(self) -> int:
        """Proposals the constraints rejected: the strategy's count when the search has
        finished (searches from before rejections were recorded have no costs for them)."""
        counted = (self.summary or {}).get("rejected_proposals")
        return max(len(self.rejected), counted if isinstance(counted, int) else 0)

    def counts(self) -> dict[str, int]:
        """Trials per status (only statuses that occur)."""
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.status.value] = out.get(t.status.value, 0) + 1
        return out


def load_search(search_dir: str | os.PathLike[str]) -> SearchRecord:
    """Reads the search stored in ``search_dir``; works while it is still running.

    Raises:
        FileNotFoundError: ``search_dir`` holds no ``trials.db``.

    Example:
        >>> import keras_cnas as cnas, tempfile
        >>> space = cnas.spaces.CategoricalSpace([3, 3])
        >>> table = {space.from_decisions([a, b]).key(): {"acc": (a + b) / 4}
        ...          for a in range(3) for b in range(3)}
        >>> result = cnas.search(space, strategy=cnas.strategies.RandomSearch(num_samples=4),
        ...                      evaluator=cnas.training.TabularEvaluator(table, metric="acc"),
        ...                      search_dir=tempfile.mkdtemp(), verbose=False)
        >>> record = load_search(result.search_dir)
        >>> len(record.trials), record.objective, record.in_progress
        (4, 'acc', False)
    """
    root = pathlib.Path(search_dir)
    db = root / "trials.db"
    if not db.is_file():
        raise FileNotFoundError(f"search_dir: {root} holds no trials.db; pass the directory a "
                                "search wrote (the --search_dir of tools/search.py)")
    with TrialStore(db, read_only=True) as store:
        trials = store.trials()
        rejected = store.rejections()
        config = store.load_state("config") or {}
        stored_objective = store.load_state("objective")
    summary = _json(root / "summary.json")
    if stored_objective:
        objective, direction = stored_objective["name"], stored_objective["direction"]
    elif summary and summary.get("objective"):
        objective, direction = summary["objective"]["name"], summary["objective"]["direction"]
    else:  # a store from before the objective was recorded, still running: rank by score
        objective, direction = "score", "max"
    return SearchRecord(root, trials, rejected, config, objective, direction, summary,
                        _json(root / "best" / "metrics.json"), _json(root / "best" / "export.json"))


def _json(path: pathlib.Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # absent, or being rewritten right now
        return None


__all__ = ["SearchRecord", "load_search"]
