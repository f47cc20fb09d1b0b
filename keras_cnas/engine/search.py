"""``keras_cnas.search``: run a strategy against an evaluator under hard constraints.

The loop: while a runner slot is free, ask the strategy for a candidate (re-queued trials
first) and submit it; wait for finished trials; check their measured costs against the
constraints; tell the strategy; write trial + strategy state in one transaction. At the
end: the best trial is finalized (retrained on train + validation and saved under
``search_dir/best/``, replaced atomically), ``summary.json`` is written and a table of the
observers told (:mod:`keras_cnas.engine.callbacks`: the engine prints nothing itself;
``keras_cnas.search`` adds the progress printer and TensorBoard). The whole search holds an exclusive lock on ``search_dir`` and deletes
only what a search wrote there (:mod:`keras_cnas.engine.search_dir`).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import numbers
import pathlib
import tempfile
import time
from typing import Any, Mapping, Sequence

import numpy as np

from keras_cnas._checks import is_int
from keras_cnas.costs import Constraints
from keras_cnas.costs.deployment import DEPLOYMENT_COSTS
from keras_cnas.costs.pricer import Pricer
from keras_cnas import ranking
from keras_cnas.engine import display
from keras_cnas.engine.callbacks import CallbackList, Progress, SearchCallback, SearchInfo
from keras_cnas.engine.runners import InProcessRunner, Runner
from keras_cnas.engine.search_dir import (ENTRIES, Manifest, SearchDirError, SearchDirLock, check_path,
                                          recover_dir, replace_dir)
from keras_cnas.engine.store import TrialStore
from keras_cnas.errors import (InfeasibleConstraintsError, KerasCnasError, NoBestTrialError,
                               UnknownCostError)
from keras_cnas.spaces.base import Space, Spec
from keras_cnas.strategies.base import SearchContext, Strategy
from keras_cnas.training.base import Evaluator
from keras_cnas.trial import EvaluationResult, Trial, TrialStatus

logger = logging.getLogger(__name__)

#: A worker that dies without a result gets this many attempts before its trial FAILS.
MAX_ATTEMPTS = 2


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM in the binaries) stopped a search; finished trials are stored."""


class FinalizeError(KerasCnasError, RuntimeError):
    """Retraining the best trial failed; the trials, ``summary.json`` and any earlier
    ``best/`` are kept."""


class SearchSummary(dict):
    """``summary.json`` as a dict; calling it gives the text KerasTuner's
    ``results_summary()`` prints: objective, status counts, the best trial, the top table.

    Example:
        >>> print(result.summary())          # doctest: +SKIP
        >>> result.summary["status_counts"]  # doctest: +SKIP
        {'COMPLETED': 20}
    """

    def __init__(self, data: Mapping[str, Any], text: str = ""):
        super().__init__(data)
        self._text = text

    def __call__(self) -> str:
        return self._text


@dataclasses.dataclass
class SearchResult:
    """What a search returns.

    Attributes:
        best: the best trial (highest score at the highest fidelity), or None.
        trials: every trial, in id order.
        pareto_front: cost name -> non-dominated trials (accuracy vs that cost).
        summary: the contents of ``summary.json``.
        search_dir: where everything is stored.
        best_metrics: metrics of the finalized best model (test accuracy after retraining).
        no_best: why there is no best trial (the bound every trial broke and the closest
            trial, or why all failed); None when there is one.
        evaluator: the search's evaluator (retrains models for :meth:`get_best_models`).
    """

    best: Trial | None
    trials: list[Trial]
    pareto_front: dict[str, list[dict[str, Any]]]
    summary: dict[str, Any]
    search_dir: pathlib.Path
    best_metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    no_best: str | None = None
    evaluator: Any = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def best_dir(self) -> pathlib.Path:
        return self.search_dir / "best"

    def ranked(self) -> list[Trial]:
        """Successful trials, best first, at the highest fidelity reached (one per spec)."""
        ranked = sorted(ranking.comparable(self.trials), key=lambda t: (-t.score, t.id))
        seen: set[str] = set()
        return [t for t in ranked if not (t.spec.key() in seen or seen.add(t.spec.key()))]

    def get_best_specs(self, n: int = 1) -> list[Spec]:
        """The ``n`` best distinct specs, best first (KerasTuner's
        ``get_best_hyperparameters``: a ``HyperSpec``'s ``as_dict()`` holds the values).

        Example:
            >>> [s.as_dict() for s in result.get_best_specs(3)]   # doctest: +SKIP
            [{'filters_0': 32, 'units': 64}, ...]
        """
        return [t.spec for t in self.ranked()[:_count(n)]]

    def get_best_models(self, n: int = 1) -> list[Any]:
        """The ``n`` best models, best first, as trained tf_keras models.

        The best is the finalized one (``best/``, retrained on train + validation); for the
        others, a model already under ``top/`` (``finalize_top``) or saved by its trial
        (``KerasEvaluator(save_models=True)``) is loaded, else the trial is retrained on
        train + validation like the best (needs the search's evaluator) and saved under
        ``top/<rank>-<id>/``.
        """
        from keras_cnas._keras import keras

        out = []
        for rank, trial in enumerate(self.ranked()[:_count(n)], start=1):
            path = self._model_path(rank, trial)
            if path is None:
                path = self.finalize_top(rank)[-1] / "model.keras"
            out.append(keras.models.load_model(path))
        return out

    def finalize_top(self, n: int) -> list[pathlib.Path]:
        """Directories holding the ``n`` best models retrained on train + validation:
        ``best/`` for the first, ``top/<rank>-<id>/`` for the others (trained now unless
        there already). Each holds ``model.keras``, ``spec.json`` and ``metrics.json``."""
        dirs = []
        for rank, trial in enumerate(self.ranked()[:_count(n)], start=1):
            out = self.best_dir if rank == 1 and self.best is not None \
                and trial.id == self.best.id else self.search_dir / "top" / f"{rank:02d}-{trial.id:05d}"
            if not (out / "model.keras").is_file():
                if self.evaluator is None:
                    raise FileNotFoundError(
                        f"{out} holds no model and this result has no evaluator to retrain "
                        f"trial {trial.id}; call it on the result search() returned")
                best_epoch = trial.metrics.get("best_epoch") if trial.fidelity == "full" else None
                metrics = self.evaluator.finalize(trial.candidate, out, seed=trial.id,
                                                  epochs=int(best_epoch) if best_epoch else None)
                (out / "trial.json").write_text(trial.to_json() + "\n")
                logger.info("retrained trial %d (rank %d): %s", trial.id, rank, metrics)
            dirs.append(out)
        return dirs

    def _model_path(self, rank: int, trial: Trial) -> pathlib.Path | None:
        candidates = [self.search_dir / "top" / f"{rank:02d}-{trial.id:05d}" / "model.keras",
                      self.search_dir / "trials" / f"{trial.id:05d}" / "model.keras"]
        if self.best is not None and trial.id == self.best.id:
            candidates.insert(0, self.best_dir / "model.keras")
        return next((p for p in candidates if p.is_file()), None)

    def best_model(self):
        """The finalized best model (``search_dir/best/model.keras``) as a tf_keras.Model.

        Raises:
            NoBestTrialError: the search has no best trial; the message says why (e.g.
                every trial broke ``max_arena_bytes``, and which came closest).
            FileNotFoundError: there is a best trial but no saved model (a table-backed
                evaluator, or ``finalize=False``).
        """
        if self.best is None:
            raise NoBestTrialError(f"best_model: the search in {self.search_dir} has no best "
                                   f"trial: {self.no_best or 'no trial succeeded'}; relax the "
                                   "bounds or search longer")
        from keras_cnas.export.model_file import load_model_file

        path = self.best_dir / "model.keras"
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: the evaluator saved no model "
                                    "(table-backed searches have none) or finalize was off")
        return load_model_file(path)

    def ensemble(self, n: int = 5):
        """The paper's "Async Ensemble": the ``n`` best trained trials voting by majority.

        Needs the trials' saved models (``KerasEvaluator(..., save_models=True)`` saves
        each one under ``search_dir/trials/<id>/``). Uses the best ``n`` successful trials
        at the highest fidelity that have a saved model.

        Example:
            >>> ensemble = result.ensemble(3)                     # doctest: +SKIP
            >>> ensemble.evaluate(data.x_test, data.y_test)       # doctest: +SKIP
            {'accuracy': 0.97...}
        """
        from keras_cnas.training.ensemble import Ensemble

        if not is_int(n) or n < 1:
            raise ValueError(f"n: expected a positive number of models, got {n!r}")
        ranked = sorted(ranking.comparable(self.trials), key=lambda t: (-t.score, t.id))
        dirs = [d for d in (self.search_dir / "trials" / f"{t.id:05d}" for t in ranked)
                if (d / "model.keras").is_file()][:n]
        if not dirs:
            raise FileNotFoundError(
                f"no trial under {self.search_dir / 'trials'} saved its model; search with "
                "KerasEvaluator(..., save_models=True) (--ensemble_size on the command line)")
        return Ensemble.load(dirs)


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """How one search runs, validated in one place (``keras_cnas.search``'s keywords).

    Attributes:
        max_trials: evaluated trials in total (resumed ones included), or None: the
            strategy's own phase counts decide.
        search_dir: where the search is stored; None: a new temporary directory.
        seed: seeds the strategy and every trial (trial ``i`` uses ``seed + i``).
        resume: continue the search stored in ``search_dir``.
        overwrite: delete what an earlier search wrote in ``search_dir`` and start over.
        finalize: retrain the best architecture on train + validation and save it.
        price_deployment: price ``arena_bytes`` / ``tflite_bytes`` from the spec before
            training (False: checked only on the measured artifact).
        config_extra: JSON-compatible settings recorded in ``summary.json["config"]``.

    Example:
        >>> SearchConfig(max_trials=0)
        Traceback (most recent call last):
        ...
        ValueError: max_trials: expected a positive integer or None, got 0
    """

    max_trials: int | None = None
    search_dir: pathlib.Path | None = None
    seed: int = 0
    resume: bool = False
    overwrite: bool = False
    finalize: bool = True
    price_deployment: bool = True
    config_extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_trials is not None and (isinstance(self.max_trials, bool)
                                            or not isinstance(self.max_trials, numbers.Integral)
                                            or self.max_trials < 1):
            raise ValueError(f"max_trials: expected a positive integer or None, got {self.max_trials!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or self.seed < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {self.seed!r}")
        for name in ("resume", "overwrite", "finalize", "price_deployment"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite: pass at most one of them")
        if not isinstance(self.config_extra, Mapping):
            raise ValueError(f"config_extra: expected a mapping of JSON-compatible settings, got "
                             f"{type(self.config_extra).__name__}")
        if self.search_dir is not None:
            object.__setattr__(self, "search_dir", check_path(self.search_dir))
        object.__setattr__(self, "config_extra", dict(self.config_extra))


def run_search(space: Space, constraints: Constraints | None = None, *,
               strategy: Strategy | None = None, evaluator: Evaluator,
               runner: Runner | None = None, config: SearchConfig = SearchConfig(),
               callbacks: Sequence[SearchCallback] = ()) -> SearchResult:
    """The search loop with its observers; ``keras_cnas.search`` builds the default ones
    (progress printer, TensorBoard) and calls this. It prints nothing itself: pass a
    :class:`~keras_cnas.engine.callbacks.ProgressPrinter` to see progress.

    A strategy with a ``driver`` (B-ENAS, which trains shared weights before any trial) is
    handed the whole search: ``driver(space, constraints, strategy=, evaluator=, runner=,
    config=, callbacks=)``, which runs this loop itself for its trials.

    Returns and raises as :func:`keras_cnas.search`.
    """
    if strategy is not None and strategy.driver is not None:
        from keras_cnas._imports import import_object

        drive = import_object(strategy.driver, argument=f"{type(strategy).__name__}.driver")
        return drive(space, constraints, strategy=strategy, evaluator=evaluator, runner=runner,
                     config=config, callbacks=callbacks)
    return _Search(space, constraints or Constraints(), strategy, evaluator, runner, config,
                   CallbackList(callbacks)).run()


class _Search:
    def __init__(self, space: Space, constraints: Constraints, strategy: Strategy | None,
                 evaluator: Evaluator, runner: Runner | None, config: SearchConfig,
                 callbacks: CallbackList):
        self.space, self.constraints, self.seed = space, constraints, config.seed
        self.callbacks = callbacks
        self.strategy = strategy if strategy is not None else _default_strategy()
        # What identifies the search is the strategy as configured, not its budget: a
        # resume may raise max_trials (the strategy then plans for the new budget).
        self.strategy_config = self.strategy.get_config()
        if config.max_trials is not None:
            self.strategy.set_budget(config.max_trials)
        self.evaluator = evaluator
        self.runner = runner if runner is not None else InProcessRunner()
        self.max_trials, self.finalize = config.max_trials, config.finalize
        self.resume, self.overwrite = config.resume, config.overwrite
        self.search_dir = config.search_dir if config.search_dir is not None else pathlib.Path(
            tempfile.mkdtemp(prefix="keras_cnas_search_"))
        self.config_extra = config.config_extra
        self._config: dict[str, Any] | None = None
        self.ended_early: dict[str, Any] | None = None
        self._ended = False  # on_search_end was called
        # One pricer for the whole search: the strategy's checks, the rejection log and
        # each trial's recorded costs price a spec once, for the export the evaluator ships.
        target = self.evaluator.export_target if config.price_deployment else None
        self.pricer = Pricer(constraints, target=target, space=space)

    # --- set-up ---------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """What identifies this search: a resumed search must match it. ``scoring`` is
        everything that changes a trial's score besides the spec (the evaluator's training
        settings and the data's identity), so trials of different training never rank
        together."""
        if self._config is None:  # once: the data's fingerprint hashes every array
            identity = getattr(self.evaluator, "identity", self.evaluator.to_json_config)
            self._config = {
                "space": json.loads(self.space.to_json()), "constraints": self.constraints.to_dict(),
                "strategy": {"name": self.strategy.name, "config": self.strategy_config},
                "seed": self.seed, "scoring": identity()}
        return self._config

    def open_store(self) -> TrialStore:
        """The trial store, after the overwrite / resume rules (the caller holds the lock)."""
        db = self.search_dir / "trials.db"
        manifest = Manifest(self.search_dir)
        if self.overwrite:
            removed = manifest.remove_written()
            if removed:
                self._say(f"overwrite: removed {', '.join(sorted(removed))} from {self.search_dir}")
        elif self.resume and not db.exists():
            raise SearchDirError(
                f"search_dir: {self.search_dir} holds no search to resume (no trials.db); drop "
                "resume (--resume) to start a new one there, or pass the directory of the "
                "search to continue")
        elif db.exists() and not self.resume:
            with TrialStore(db, read_only=True) as old:
                n = old.count()
            raise SearchDirError(
                f"search_dir: {self.search_dir} already holds a search ({n} trials); pass "
                "resume=True (--resume) to continue it, overwrite=True (--overwrite) to start "
                "over, or another search_dir")
        if not db.exists():
            manifest.start()  # refuses entries someone else wrote; records what we will write
        else:
            manifest.claim_absent(ENTRIES)
        recover_dir(self.search_dir / "best")  # a kill while best/ was being swapped
        store = TrialStore(db)
        try:
            self._check_stored(store)
        except BaseException:
            store.close()
            raise
        return store

    def _check_stored(self, store: TrialStore) -> None:
        """A resumed store must hold this search, with its strategy's state."""
        config, stored = self.config(), store.load_state("config")
        if stored is None:
            if store.count():
                raise SearchDirError(
                    f"search_dir: {store.path} holds {store.count()} trials but no search "
                    "configuration (the file was edited or damaged); start over with "
                    "overwrite=True (--overwrite) or use another search_dir")
            store.save_state("config", config)
            return
        if stored != config:
            diff = _differences(stored, config)
            raise SearchDirError(
                f"search_dir: {self.search_dir} holds a different search (its "
                f"{', '.join(diff[:6])}{' ...' if len(diff) > 6 else ''} differ from this one's); "
                "resume it with the same settings, pass overwrite=True (--overwrite) to start "
                "over, or use another search_dir")
        if store.count() and store.load_state("strategy") is None:
            raise SearchDirError(
                f"search_dir: {store.path} holds {store.count()} trials but no strategy state "
                "(the file was edited or damaged), so resuming would not continue the same "
                "search; start over with overwrite=True (--overwrite) or use another search_dir")

    def check_costs_available(self) -> None:
        # Any spec reports the same analytic cost names; a throwaway RNG keeps the
        # strategy's own RNG untouched.
        sample = self.space.sample(np.random.default_rng(0))
        available = self.pricer.available(sample) | set(self.evaluator.reported_costs)
        try:
            self.constraints.check_available(available)
        except UnknownCostError as e:
            reason = getattr(self.space, "unpriced", None)  # a HyperSpace names the layer
            if reason is None:
                raise
            raise UnknownCostError(f"{e.args[0]}; {reason}") from None

    # --- the loop ---------------------------------------------------------------------------

    def run(self) -> SearchResult:
        self.check_costs_available()
        self.search_dir.mkdir(parents=True, exist_ok=True)
        with SearchDirLock(self.search_dir):
            store = self.open_store()
            try:
                return self._run(store)
            finally:
                store.close()

    def _run(self, store: TrialStore) -> SearchResult:
        strategy, runner = self.strategy, self.runner
        # The strategy checks proposals through the pricer, which keeps the costs of the
        # ones the constraints reject for the report (the strategy only counts them).
        pricer = self.pricer
        strategy.setup(SearchContext(self.space, self.constraints, pricer), seed=self.seed)
        # Readers of a running search (tools/report.py) need the objective before summary.json.
        store.save_state("objective", {"name": self.evaluator.objective,
                                       "direction": self.evaluator.direction})
        saved = store.load_state("strategy")
        if saved is not None:
            strategy.load_state_dict(saved)
        queue = collections.deque(store.unfinished())  # running when the last run stopped
        total = self.max_trials if self.max_trials is not None else strategy.planned_trials
        self.callbacks.on_search_begin(SearchInfo(
            self.search_dir, self.evaluator.objective, self.evaluator.direction,
            self.constraints, strategy.name, total, store.trials()))
        if queue:
            self._say(f"resuming: re-queuing trial(s) {[t.id for t in queue]} that were running")
        finished = store.count(TrialStatus.COMPLETED, TrialStatus.FAILED, TrialStatus.INFEASIBLE)
        in_flight: dict[int, Trial] = {}
        started, exhausted = time.time(), False
        # Recent durations: phases differ in cost (traction vs full), so the ETA follows
        # the current phase rather than the whole run's average.
        recent: collections.deque[float] = collections.deque(maxlen=10)
        error: BaseException | None = None
        runner.start(self.evaluator, self.search_dir)
        try:
            while True:
                while runner.free_slots() > 0:
                    if queue:
                        trial = queue.popleft()
                    elif exhausted or (self.max_trials is not None
                                       and finished + len(in_flight) >= self.max_trials):
                        break
                    else:
                        with pricer.recording():
                            candidate = strategy.ask()
                        if candidate is None:
                            store.add_rejections(pricer.take_rejections())
                            # Nothing to propose now: finished, unless the strategy waits
                            # for running trials (a sequential step such as lazy greedy's).
                            exhausted = not in_flight
                            break
                        trial = store.create(candidate, strategy.state_dict(), pricer.take_rejections())
                    trial.timings["started"] = time.time()
                    in_flight[trial.id] = trial
                    runner.submit(trial, self.seed + trial.id)
                if not in_flight:
                    break
                for trial_id, result in runner.wait():
                    trial = in_flight.pop(trial_id)
                    if result is None:
                        trial.attempts += 1
                        if trial.attempts < MAX_ATTEMPTS:
                            self._say(f"trial {trial.id}: worker died without a result; re-queued")
                            store.update(trial)
                            queue.append(trial)
                            continue
                        result = EvaluationResult(status=TrialStatus.FAILED, error=(
                            f"worker process died {trial.attempts} times without a result "
                            "(killed, out of memory, or crashed); see its worker.log"))
                    self.record(trial, result)
                    strategy.tell(trial)
                    store.update(trial, strategy.state_dict())
                    finished += 1
                    recent.append(trial.timings["seconds"])
                    self.callbacks.on_trial_end(trial, Progress(
                        finished, total, time.time() - started,
                        sum(recent) / len(recent) / max(1, runner.workers)))
        except InfeasibleConstraintsError as e:
            store.add_rejections(pricer.take_rejections())  # what made the search give up
            error = e
        except KeyboardInterrupt:
            runner.close()  # running trials are re-queued on resume
            self._end(None)
            raise SearchInterrupted(
                f"interrupted after {finished} trials; continue with --resume (resume=True) "
                f"and the same settings, search_dir {self.search_dir}") from None
        except BaseException:
            runner.close()  # running trials are re-queued on resume
            self._end(None)
            raise
        runner.close()
        try:
            self.ended_early = self._ended_early(store, total) if error is None else None
            if self.ended_early is not None:
                self._say(f"{strategy.name} ended after {self.ended_early['trials']} of "
                          f"{self.ended_early['budget']} trials: {self.ended_early['reason']}",
                          logging.WARNING)
            # A search that gave up does not spend a retraining on its best: it failed.
            result = self.finish(store, finalize=self.finalize and error is None)
        except BaseException:
            self._end(None)
            raise
        if error is not None:
            raise error
        return result

    def _end(self, result: SearchResult | None) -> None:
        """Tells the observers the search is over, once."""
        if not self._ended:
            self._ended = True
            self.callbacks.on_search_end(result)

    def _ended_early(self, store: TrialStore, total: int | None) -> dict[str, Any] | None:
        """Trials short of the budget when the strategy stopped proposing, and why."""
        done = store.count()
        if total is None or done >= total:
            return None
        return {"trials": done, "budget": total,
                "reason": self.strategy.stop_reason or "the strategy proposed nothing more"}

    def record(self, trial: Trial, result: EvaluationResult) -> None:
        """Fills a finished trial: status, metrics, analytic + measured costs, score."""
        trial.timings["finished"] = time.time()
        trial.timings["seconds"] = trial.timings["finished"] - trial.timings.get("started", time.time())
        trial.metrics = dict(result.metrics)
        trial.costs = _with_estimate_errors(self.pricer.costs(trial.spec).as_dict(), result.costs)
        trial.status, trial.error = result.status, result.error
        if trial.status == TrialStatus.COMPLETED:
            violations = self.constraints.violations(trial.costs)
            if violations:  # a measured cost broke a hard bound
                trial.status = TrialStatus.INFEASIBLE
                trial.error = "measured: " + "; ".join(map(str, violations))
        trial.score = self.evaluator.score(trial.metrics) if trial.status == TrialStatus.COMPLETED else None
        if trial.status == TrialStatus.COMPLETED and trial.score is None:
            trial.status = TrialStatus.FAILED
            trial.error = trial.error or f"objective {self.evaluator.objective!r} missing or not finite"

    # --- the end ----------------------------------------------------------------------------

    def finish(self, store: TrialStore, finalize: bool = True) -> SearchResult:
        trials = store.trials()
        best = ranking.best_trial(trials)
        best_metrics: dict[str, Any] = {}
        failure: BaseException | None = None
        if best is not None and finalize:
            try:
                best_metrics = self.finalize_best(best)
            except Exception as e:  # noqa: BLE001  the trials and summary must still be kept
                failure = e
                best_metrics = {"error": f"{type(e).__name__}: {e}"}
        objective = self.evaluator.objective
        fronts = ranking.pareto_fronts(trials, objective, self.constraints)
        counts = collections.Counter(t.status.value for t in trials)
        no_best = ranking.no_best_reason(trials, self.constraints)
        summary = {
            "best": None if best is None else {
                "id": best.id, "spec": best.spec.to_dict(), "metrics": best.metrics,
                "costs": best.costs, "final_metrics": best_metrics},
            "no_best": no_best,
            "bounded_costs": ranking.bounded_costs(best, self.constraints),
            "pareto_front": fronts,
            "num_trials": len(trials),
            "status_counts": dict(counts),
            "rejected_proposals": self.strategy.rejections,
            "ended_early": self.ended_early,
            "strategy_report": self.strategy.report(),
            "objective": {"name": objective, "direction": self.evaluator.direction},
            "config": {**self.config(), "evaluator": self.evaluator.to_json_config(),
                       "max_trials": self.max_trials, "runner": self.runner.name,
                       "workers": self.runner.workers, **self.config_extra},
        }
        (self.search_dir / "summary.json").write_text(
            json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
        text = display.results_text(summary, trials, objective)
        result = SearchResult(best, trials, fronts, SearchSummary(summary, text), self.search_dir,
                              best_metrics, no_best, self.evaluator)
        self._end(result)
        if failure is not None:
            raise FinalizeError(
                f"finalize: retraining trial {best.id} failed ({failure}); its trials and "
                f"{self.search_dir / 'summary.json'} are kept and best/ is unchanged") from failure
        return result

    def finalize_best(self, best: Trial) -> dict[str, Any]:
        """Retrains ``best`` into ``best/``, replaced atomically; a ``best/`` that already
        holds this trial (a resumed search with nothing left to do) is kept as it is."""
        out = self.search_dir / "best"
        saved = _saved_best(out)
        if saved is not None and saved[0] == json.loads(best.to_json()):
            self._say(f"best trial {best.id} is already finalized in {out}")
            return saved[1]
        self._say(f"finalizing trial {best.id}: retraining on train + validation")
        # No validation split is left to stop on: retrain for the epochs the best
        # full-fidelity run found best.
        best_epoch = best.metrics.get("best_epoch") if best.fidelity == "full" else None

        def write(tmp: pathlib.Path) -> dict[str, Any]:
            metrics = self.evaluator.finalize(best.candidate, tmp, seed=self.seed,
                                              epochs=int(best_epoch) if best_epoch else None)
            (tmp / "spec.json").write_text(best.spec.to_json(indent=2) + "\n")
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
            (tmp / "costs.json").write_text(json.dumps(best.costs, indent=2, sort_keys=True) + "\n")
            # Written last: its presence marks a complete best/ (see _saved_best).
            (tmp / "trial.json").write_text(best.to_json() + "\n")
            return metrics

        return replace_dir(out, write)

    def _say(self, line: str, level: int = logging.INFO) -> None:
        self.callbacks.on_message(line, level)


def _with_estimate_errors(priced: Mapping[str, float], measured: Mapping[str, float]) -> dict[str, Any]:
    """Priced costs overridden by measured ones; where a deployment cost was both priced
    and measured, the priced value is kept as ``<cost>_priced`` and a difference between
    them as ``<cost>_error`` (measured - priced: both are exact, so any difference means
    the model of the converter or of TFLite Micro is wrong)."""
    costs = {**priced, **measured}
    for name in DEPLOYMENT_COSTS:
        if priced.get(name) is None or measured.get(name) is None:
            continue
        costs[f"{name}_priced"] = priced[name]
        error = measured[name] - priced[name]
        if error:
            costs[f"{name}_error"] = error
            logger.warning("measured %s = %s differs from the priced %s (%+d)", name,
                           measured[name], priced[name], error)
    return costs


def _saved_best(out: pathlib.Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(trial, metrics)`` of a complete ``best/``, or None."""
    try:
        return (json.loads((out / "trial.json").read_text()),
                json.loads((out / "metrics.json").read_text()))
    except (OSError, ValueError):
        return None


def _differences(stored: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ, e.g. ``scoring.training.learning_rate``."""
    if isinstance(stored, dict) and isinstance(current, dict):
        out: list[str] = []
        for key in sorted(set(stored) | set(current)):
            if stored.get(key) != current.get(key):
                name = f"{prefix}{key}"
                if key in stored and key in current:
                    out += _differences(stored[key], current[key], name + ".")
                else:
                    out.append(name)
        return out
    return [prefix.rstrip(".")] if stored != current else []


def _default_strategy() -> Strategy:
    from keras_cnas.strategies import BayesOpt

    return BayesOpt()


def default_evaluator(data: Any, objective: Any = None) -> Evaluator:
    """``KerasEvaluator(data)`` (with ``objective`` if given): ``search(data=...)``'s."""
    if data is None:
        raise ValueError("search: pass evaluator=... or data=... (a keras_cnas.data.Dataset, "
                         "(x, y) arrays or a tf.data.Dataset, e.g. keras_cnas.data.load('digits'))")
    from keras_cnas.training.evaluator import KerasEvaluator

    return KerasEvaluator(data=data, **({} if objective is None else {"objective": objective}))


def _count(n: Any) -> int:
    if not is_int(n) or n < 1:
        raise ValueError(f"n: expected a positive number of models, got {n!r}")
    return n
