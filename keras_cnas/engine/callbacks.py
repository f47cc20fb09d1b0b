"""Observers of a search: the loop reports to them, they display or record.

The engine calls each :class:`SearchCallback` in order (as keras-tuner calls its display):
``on_search_begin`` once the trial store is open, ``on_message`` for the engine's notes
(resume, re-queue, finalizing), ``on_trial_end`` after each finished trial is stored, and
``on_search_end`` last (also when the search is interrupted or fails, with ``result=None``).
Callbacks run in the driver process whatever the runner, so they see every trial, including
trials run in worker processes or on Ray.

The progress printer lives here (plain text from :mod:`keras_cnas.engine.display`); the
TensorBoard observer is :class:`keras_cnas.report.tensorboard.TensorBoardLogger`, above the
engine: ``keras_cnas.search(verbose=..., tensorboard=...)`` builds both.

Example:
    >>> import keras_cnas as cnas
    >>> class Ids(cnas.engine.SearchCallback):
    ...     def __init__(self):
    ...         self.ids = []
    ...     def on_trial_end(self, trial, progress):
    ...         self.ids.append(trial.id)
    >>> space = cnas.spaces.CategoricalSpace([2, 2])
    >>> table = {space.from_decisions([a, b]).key(): {"acc": (a + b) / 2}
    ...          for a in range(2) for b in range(2)}
    >>> ids = Ids()
    >>> _ = cnas.search(space, strategy=cnas.strategies.RandomSearch(num_samples=3),
    ...                 evaluator=cnas.training.TabularEvaluator(table, metric="acc"),
    ...                 callbacks=[ids], verbose=False, tensorboard=False)
    >>> ids.ids
    [0, 1, 2]
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
from typing import TYPE_CHECKING, Any, Sequence

from keras_cnas.costs import Constraints
from keras_cnas.engine import display
from keras_cnas.trial import Trial

if TYPE_CHECKING:  # the result type is defined by the loop, which imports this module
    from keras_cnas.engine.search import SearchResult

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SearchInfo:
    """What an observer learns when a search begins.

    Attributes:
        search_dir: where the search is stored.
        objective: the evaluator's objective metric; ``direction`` is ``"min"`` or ``"max"``.
        constraints: the hard bounds.
        strategy_name: the strategy's registered name.
        budget: trials planned in total (``max_trials`` or the strategy's plan), or None.
        trials: trials stored before this run (a resumed search's), in id order.
    """

    search_dir: pathlib.Path
    objective: str
    direction: str
    constraints: Constraints
    strategy_name: str
    budget: int | None
    trials: Sequence[Trial] = ()


@dataclasses.dataclass(frozen=True)
class Progress:
    """Where the search stands when a trial ends.

    Attributes:
        finished: trials finished so far (resumed ones included).
        budget: trials planned in total, or None.
        elapsed: seconds since this run of the search began.
        seconds_per_trial: recent wall seconds per trial (over the runner's workers), for an ETA.
    """

    finished: int
    budget: int | None
    elapsed: float
    seconds_per_trial: float | None


class SearchCallback:
    """Base class of search observers; override the hooks you need (each does nothing)."""

    def on_search_begin(self, info: SearchInfo) -> None:
        """The trial store is open; ``info.trials`` holds what a resumed search had."""

    def on_message(self, line: str, level: int = logging.INFO) -> None:
        """A note from the engine (resuming, a re-queued trial, finalizing, ended early)."""

    def on_trial_end(self, trial: Trial, progress: Progress) -> None:
        """``trial`` finished (COMPLETED, FAILED or INFEASIBLE) and is stored."""

    def on_search_end(self, result: "SearchResult | None") -> None:
        """The search is over: ``result`` as ``search()`` returns it (also when it then
        raises ``InfeasibleConstraintsError`` or ``FinalizeError``), or None when it was
        interrupted or crashed (the finished trials are stored)."""


class ProgressPrinter(SearchCallback):
    """The console display: one line per finished trial with an ETA, the engine's notes,
    and the table of top trials at the end.

    Args:
        verbose: print; False sends the notes and trial lines to ``logging`` (INFO, an early
            end as WARNING) and prints nothing, as ``search(verbose=False)`` does.
    """

    def __init__(self, verbose: bool = True):
        self.verbose = bool(verbose)
        self._info: SearchInfo | None = None

    def on_search_begin(self, info: SearchInfo) -> None:
        self._info = info

    def on_message(self, line: str, level: int = logging.INFO) -> None:
        if self.verbose:
            print(line, flush=True)
        else:
            logger.log(level, line)

    def on_trial_end(self, trial: Trial, progress: Progress) -> None:
        info = self._info
        self.on_message(display.progress_line(
            trial, progress.finished, progress.budget, progress.elapsed,
            progress.seconds_per_trial, info.objective if info else "score",
            info.constraints if info else None))

    def on_search_end(self, result: "SearchResult | None") -> None:
        if not self.verbose or result is None:
            return
        info = self._info
        objective = info.objective if info else result.summary.get("objective", {}).get("name", "score")
        print(f"\n{display.top_table(result.trials, objective, constraints=info and info.constraints)}\n")
        if result.best is not None:
            print(f"best: trial {result.best.id}; summary in {result.search_dir / 'summary.json'}")
        elif result.no_best:
            print(f"no best trial: {result.no_best}")


class CallbackList(SearchCallback):
    """Calls each callback's hook in order. An observer that raises stops the search as any
    error in the loop would (finished trials stay stored)."""

    def __init__(self, callbacks: Sequence[SearchCallback] = ()):
        callbacks = list(callbacks)
        for i, callback in enumerate(callbacks):
            if not isinstance(callback, SearchCallback):
                raise TypeError(f"callbacks[{i}]: expected a keras_cnas.engine.SearchCallback, got "
                                f"{type(callback).__name__}; subclass SearchCallback and override "
                                "on_trial_end (or another hook)")
        self.callbacks = callbacks

    def on_search_begin(self, info: SearchInfo) -> None:
        for callback in self.callbacks:
            callback.on_search_begin(info)

    def on_message(self, line: str, level: int = logging.INFO) -> None:
        for callback in self.callbacks:
            callback.on_message(line, level)

    def on_trial_end(self, trial: Trial, progress: Progress) -> None:
        for callback in self.callbacks:
            callback.on_trial_end(trial, progress)

    def on_search_end(self, result: Any) -> None:
        for callback in self.callbacks:
            callback.on_search_end(result)
