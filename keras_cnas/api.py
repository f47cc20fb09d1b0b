"""``keras_cnas.search``: the engine's loop with the default observers.

The engine (:mod:`keras_cnas.engine.search`) runs trials and reports to observers; it
imports no display. This module sits above both the engine and the report package and
assembles them: ``verbose`` becomes a :class:`~keras_cnas.engine.callbacks.ProgressPrinter`,
``tensorboard`` a :class:`~keras_cnas.report.tensorboard.TensorBoardLogger`, the keywords a
validated :class:`~keras_cnas.engine.search.SearchConfig`.
"""

from __future__ import annotations

import pathlib
from typing import Any, Mapping, Sequence

from keras_cnas.costs import Constraints
from keras_cnas.engine.callbacks import CallbackList, ProgressPrinter, SearchCallback
from keras_cnas.engine.runners import Runner
from keras_cnas.engine.search import SearchConfig, SearchResult, default_evaluator, run_search
from keras_cnas.spaces.base import Space
from keras_cnas.strategies.base import Strategy
from keras_cnas.training.base import Evaluator

__all__ = ["search"]


def search(space: Space, constraints: Constraints | None = None, *,
           strategy: Strategy | None = None, evaluator: Evaluator | None = None,
           data: Any = None, objective: Any = None, max_trials: int | None = None,
           search_dir: str | pathlib.Path | None = None, runner: Runner | None = None,
           seed: int = 0, resume: bool = False, overwrite: bool = False,
           finalize: bool = True, verbose: bool = True, tensorboard: bool = True,
           callbacks: Sequence[SearchCallback] = (),
           config_extra: Mapping[str, Any] | None = None,
           price_deployment: bool = True) -> SearchResult:
    """Searches ``space`` for the best architecture that meets ``constraints``.

    Args:
        space: the search space.
        constraints: hard upper bounds (analytic ones are checked before a candidate is
            evaluated; measured ones, such as ``train_seconds``, on the result).
        strategy: default ``BayesOpt()`` (Gaussian-process Bayesian optimisation; the
            tabular benchmark in ``docs/results.md`` chose it).
        evaluator: how candidates are scored; default ``KerasEvaluator(data)``.
        data: the default evaluator's data: a ``keras_cnas.data.Dataset``, ``(x, y)`` NumPy
            arrays, a ``tf.data.Dataset`` (or ``(train, validation)`` pipelines) or an image
            folder's path (see ``keras_cnas.data.as_dataset``).
        objective: the default evaluator's objective: ``"J"`` (MIT-LL, the default),
            ``"val_accuracy"``, ``"val_loss"`` or ``(metric, "min" | "max")``; with
            ``evaluator=``, set it there.
        max_trials: evaluated trials to run in total (resumed ones included): the
            strategy's budget, which it scales its own phases to (``set_budget``); default:
            the strategy's own phase counts decide. A strategy that ends before it (the
            space exhausted, a converged policy) says why in the progress output and in
            ``summary.json["ended_early"]``.
        search_dir: where ``trials.db``, ``summary.json`` and ``best/`` go; a new temporary
            directory if None. A directory holding a search is refused unless ``resume``
            or ``overwrite``; so are an empty path, the current directory, home and ``/``.
            The search holds an exclusive lock on it until it returns.
        runner: default ``InProcessRunner()``; ``ProcessPoolRunner(workers=N)`` for the
            asynchronous variant.
        seed: seeds the strategy and every trial (trial ``i`` uses ``seed + i``).
        resume: continue the search stored in ``search_dir``; trials that were running
            when it stopped are re-queued. Refused when there is no search to resume, or
            when anything that changes a score differs: space, constraints, strategy,
            seed, the evaluator's training settings, or the data (name, split sizes,
            contents' fingerprint).
        overwrite: delete what an earlier search wrote in ``search_dir`` (recorded in its
            ``written.json``; nothing else) and start over.
        finalize: retrain the best architecture on train + validation and save it.
        verbose: print one line per finished trial and the table of top trials (a
            :class:`~keras_cnas.engine.ProgressPrinter`); False logs the lines instead.
        tensorboard: write each finished trial to ``search_dir/tensorboard`` (scalars and
            an HParams session per trial, progress curves), live: ``tensorboard --logdir
            search_dir/tensorboard`` (a :class:`~keras_cnas.report.TensorBoardLogger`).
        callbacks: more observers (:class:`~keras_cnas.engine.SearchCallback`), called
            after the default ones with ``on_search_begin`` / ``on_trial_end`` /
            ``on_search_end``; a ``ProgressPrinter`` or ``TensorBoardLogger`` given here
            replaces the default one. They run in this process whatever the runner.
        config_extra: JSON-compatible settings recorded in ``summary.json`` (e.g. flags).
        price_deployment: price ``arena_bytes`` / ``tflite_bytes`` from the spec for the
            evaluator's export (``evaluator.export_target``), so that their bounds are
            checked before a candidate is trained. False checks them only on the measured
            artifact after training (how searches ran before; ``benchmarks/device_budget.py``
            compares the two).

    Returns:
        A :class:`SearchResult`.

    Raises:
        InfeasibleConstraintsError: the strategy found no feasible candidate (finished
            trials stay in ``search_dir``).
        UnknownCostError: a constraint bounds a cost nothing in this search reports.
        SearchDirError: ``search_dir`` holds a search and neither resume nor overwrite,
            another process is using it, or ``resume`` finds nothing (or another search).
        SearchInterrupted: Ctrl-C; the finished trials are stored, resume continues.
        FinalizeError: retraining the best failed; ``summary.json`` is written first.

    Example:
        >>> import keras_cnas as cnas
        >>> space = cnas.spaces.CategoricalSpace([3, 3, 3])
        >>> table = {space.from_decisions([a, b, c]).key(): {"acc": (a + b + c) / 6}
        ...          for a in range(3) for b in range(3) for c in range(3)}
        >>> result = cnas.search(space, strategy=cnas.strategies.RandomSearch(num_samples=10),
        ...                      evaluator=cnas.training.TabularEvaluator(table, metric="acc"),
        ...                      verbose=False)
        >>> len(result.trials), result.best.metrics["acc"] <= 1.0
        (10, True)
    """
    if objective is not None and evaluator is not None:
        raise ValueError("objective: pass it to the evaluator you give "
                         "(KerasEvaluator(..., objective=...)), not to search()")
    config = SearchConfig(max_trials=max_trials, search_dir=search_dir, seed=seed,
                          resume=resume, overwrite=overwrite, finalize=finalize,
                          price_deployment=price_deployment, config_extra=config_extra or {})
    if evaluator is None:
        evaluator = default_evaluator(data, objective)
    return run_search(space, constraints, strategy=strategy, evaluator=evaluator, runner=runner,
                      config=config, callbacks=default_callbacks(verbose, tensorboard, callbacks))


def default_callbacks(verbose: bool = True, tensorboard: bool = True,
                      callbacks: Sequence[SearchCallback] = ()) -> list[SearchCallback]:
    """The progress printer and the TensorBoard logger (unless ``callbacks`` holds its own),
    then ``callbacks``.

    Example:
        >>> [type(c).__name__ for c in default_callbacks(verbose=False)]
        ['ProgressPrinter', 'TensorBoardLogger']
    """
    from keras_cnas.report.tensorboard import TensorBoardLogger

    callbacks = CallbackList(callbacks or ()).callbacks  # checked as the user numbered them
    defaults: list[SearchCallback] = []
    if not any(isinstance(c, ProgressPrinter) for c in callbacks):
        defaults.append(ProgressPrinter(verbose=verbose))
    if tensorboard and not any(isinstance(c, TensorBoardLogger) for c in callbacks):
        defaults.append(TensorBoardLogger())
    return defaults + callbacks
