"""A search in TensorBoard: ``tensorboard --logdir SEARCH_DIR/tensorboard``.

Layout (one TensorBoard *run* per directory):

* ``trial_00005/``: one run per finished trial, which is also an HParams *session*: its
  hyperparameters are the spec's summary (architecture in words, key, layer counts...),
  fidelity and phase; its scalars (``score``, ``metrics/<name>``, ``costs/<name>``, at
  step = trial id) are the session's metrics; COMPLETED ends as success, FAILED and
  INFEASIBLE as failure. TensorBoard's HParams dashboard lists every trial with these
  columns, and its parallel-coordinates view shows accuracy against each cost.
* ``search/``: progress, one point per finished trial at step = trials finished so far:
  the trial's objective, accuracy and costs, and the best objective / accuracy so far at
  each fidelity (``best/<fidelity>/...``, the RCAS Figure 4 curve), status counts.

No experiment summary is written: TensorBoard infers the hyperparameter and metric columns
from the sessions, which stays right as new metrics appear (and across TensorBoard versions,
whose experiment enums differ). A trial is written once: its run directory is the marker,
so :meth:`TensorBoardWriter.catch_up` after a resume (or for a search that ran without
TensorBoard) adds exactly the missing trials. Pure Python; no TensorFlow.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pathlib
from typing import Iterable, Iterator

from keras_cnas._checks import is_finite_number
from keras_cnas import ranking
from keras_cnas.engine.callbacks import Progress, SearchCallback, SearchInfo
from keras_cnas.report import events
from keras_cnas.report.specs import HParamValue, spec_summary
from keras_cnas.trial import Trial, TrialStatus

logger = logging.getLogger(__name__)

#: The directory under a search_dir that TensorBoard should be pointed at.
LOGDIR_NAME = "tensorboard"
SEARCH_RUN = "search"


def trial_run_name(trial_id: int) -> str:
    return f"trial_{trial_id:05d}"


def trial_hparams(trial: Trial) -> dict[str, HParamValue]:
    """The HParams of one trial's session: the spec summary, fidelity and phase.

    Example:
        >>> from keras_cnas.spaces import CategoricalSpace
        >>> trial = Trial(3, CategoricalSpace([3, 3]).from_decisions([2, 0]), "full", "random")
        >>> trial_hparams(trial)
        {'architecture': 'decisions 20', 'spec_key': '20', 'd0': 2, 'd1': 0, 'fidelity': 'full', 'phase': 'random'}
    """
    return {**spec_summary(trial.spec), "fidelity": trial.fidelity, "phase": trial.phase or "-"}


@contextlib.contextmanager
def _locked(logdir: pathlib.Path) -> Iterator[None]:
    """Serialises writers of one logdir (the search and a ``tools/report.py`` catching up),
    so that no trial is written twice."""
    try:
        import fcntl
    except ImportError:  # not on POSIX: one writer at a time is then the user's call
        yield
        return
    with open(logdir / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class TensorBoardWriter:
    """Writes finished trials of one search as TensorBoard runs under ``logdir``.

    Args:
        logdir: usually ``search_dir / "tensorboard"``.
        objective: the evaluator's objective metric (logged as reported, not negated).
        direction: ``"min"`` or ``"max"``: which objective value is better.

    Call :meth:`catch_up` once with the trials already finished (to count them and write
    any that are missing), then :meth:`add` for each trial as it finishes.

    Example:
        >>> import tempfile
        >>> from keras_cnas.spaces import CategoricalSpace
        >>> spec = CategoricalSpace([3, 3]).from_decisions([1, 2])
        >>> trial = Trial(0, spec, status=TrialStatus.COMPLETED, score=0.9, metrics={"acc": 0.9},
        ...               costs={"params": 1200}, timings={"started": 1.0, "finished": 2.0})
        >>> writer = TensorBoardWriter(tempfile.mkdtemp(), objective="acc", direction="max")
        >>> writer.add(trial), writer.add(trial)  # written once
        (True, False)
        >>> writer.close()
        >>> sorted(p.name for p in writer.logdir.iterdir() if not p.name.startswith("."))
        ['search', 'trial_00000']
    """

    def __init__(self, logdir: str | os.PathLike[str], objective: str, direction: str = "max"):
        if direction not in ("min", "max"):
            raise ValueError(f"direction: expected 'min' or 'max', got {direction!r}")
        self.logdir = pathlib.Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.objective, self.direction = objective, direction
        self._finished = 0
        self._counts = {status: 0 for status in (TrialStatus.COMPLETED, TrialStatus.FAILED,
                                                 TrialStatus.INFEASIBLE)}
        self._best: dict[str, Trial] = {}  # fidelity -> best trial so far
        self._seen: set[int] = set()
        self._search: events.EventFileWriter | None = None

    # --- public API -------------------------------------------------------------------------

    def catch_up(self, trials: Iterable[Trial]) -> int:
        """Counts the finished ``trials`` (in the order they finished) and writes those that
        have no run yet. Returns how many were written."""
        done = sorted((t for t in trials if t.status.finished),
                      key=lambda t: (t.timings.get("finished", math.inf), t.id))
        with _locked(self.logdir):
            return sum(self._add(t) for t in done)

    def add(self, trial: Trial) -> bool:
        """Writes one finished trial (its run and a progress point); False if it already
        had a run (written by an earlier session) or is not finished."""
        if not trial.status.finished:
            return False
        with _locked(self.logdir):
            return self._add(trial)

    def close(self) -> None:
        if self._search is not None:
            self._search.close()
            self._search = None

    def __enter__(self) -> "TensorBoardWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -----------------------------------------------------------------------

    def _add(self, trial: Trial) -> bool:
        if trial.id in self._seen:
            return False
        self._seen.add(trial.id)
        self._finished += 1
        self._counts[trial.status] = self._counts.get(trial.status, 0) + 1
        if trial.ok:
            best = self._best.get(trial.fidelity)
            if best is None or (trial.score, -trial.id) > (best.score, -best.id):
                self._best[trial.fidelity] = trial
        run = self.logdir / trial_run_name(trial.id)
        if run.is_dir() and any(run.glob("events.out.tfevents.*")):
            return False  # written before (this search's earlier run, or a report)
        # Progress first, run last: the run directory marks the trial as written.
        self._write_progress(trial)
        self._write_trial(trial, run)
        return True

    def _objective(self, trial: Trial) -> float | None:
        value = trial.metrics.get(self.objective)
        return float(value) if is_finite_number(value) else None

    def _write_progress(self, trial: Trial) -> None:
        values = [events.scalar_value("trial/id", trial.id)]
        objective, accuracy = self._objective(trial), ranking.accuracy_of(trial, self.objective)
        if objective is not None:
            values.append(events.scalar_value(f"trial/{self.objective}", objective))
        if accuracy is not None and is_finite_number(accuracy):
            values.append(events.scalar_value("trial/accuracy", accuracy))
        if "seconds" in trial.timings and is_finite_number(trial.timings["seconds"]):
            values.append(events.scalar_value("trial/seconds", trial.timings["seconds"]))
        values += [events.scalar_value(f"costs/{name}", value)
                   for name, value in sorted(trial.costs.items()) if is_finite_number(value)]
        for fidelity, best in sorted(self._best.items()):
            best_objective, best_accuracy = self._objective(best), ranking.accuracy_of(
                best, self.objective)
            if best_objective is not None:
                values.append(events.scalar_value(f"best/{fidelity}/{self.objective}",
                                                  best_objective))
            if best_accuracy is not None and is_finite_number(best_accuracy):
                values.append(events.scalar_value(f"best/{fidelity}/accuracy", best_accuracy))
        values += [events.scalar_value(f"count/{status.value.lower()}", n)
                   for status, n in self._counts.items()]
        if self._search is None:
            self._search = events.EventFileWriter(self.logdir / SEARCH_RUN)
        self._search.write(events.summary_event(values, step=self._finished,
                                                wall_time=trial.timings.get("finished")))

    def _write_trial(self, trial: Trial, run: pathlib.Path) -> None:
        started = trial.timings.get("started", trial.timings.get("created", 0.0))
        finished = trial.timings.get("finished", started)
        values = []
        if trial.score is not None and is_finite_number(trial.score):
            values.append(events.scalar_value("score", trial.score))
        values += [events.scalar_value(f"metrics/{name}", value)
                   for name, value in sorted(trial.metrics.items()) if is_finite_number(value)]
        values += [events.scalar_value(f"costs/{name}", value)
                   for name, value in sorted(trial.costs.items()) if is_finite_number(value)]
        status = events.STATUS_SUCCESS if trial.ok else events.STATUS_FAILURE
        with events.EventFileWriter(run) as writer:
            writer.write(events.summary_event(
                [events.session_start_value(trial_hparams(trial), started)], step=0,
                wall_time=started))
            if values:
                writer.write(events.summary_event(values, step=trial.id, wall_time=finished))
            writer.write(events.summary_event([events.session_end_value(status, finished)],
                                              step=0, wall_time=finished))


class TensorBoardLogger(SearchCallback):
    """Search observer writing each finished trial to ``search_dir/tensorboard`` live
    (``keras_cnas.search(tensorboard=True)`` adds one): ``tensorboard --logdir
    search_dir/tensorboard``. A resumed search first catches up with the stored trials. A
    log directory that cannot be written (a full disk) turns the logging off with a
    warning; the search itself goes on.

    Args:
        logdir: where to write; default ``search_dir/tensorboard``.

    Example:
        >>> import keras_cnas as cnas                                   # doctest: +SKIP
        >>> cnas.search(space, data=data, tensorboard=False,
        ...             callbacks=[TensorBoardLogger("runs/tb")])       # doctest: +SKIP
    """

    def __init__(self, logdir: str | os.PathLike[str] | None = None):
        self.logdir = None if logdir is None else pathlib.Path(logdir)
        self._writer: TensorBoardWriter | None = None

    def on_search_begin(self, info: SearchInfo) -> None:
        logdir = self.logdir if self.logdir is not None else info.search_dir / LOGDIR_NAME
        try:
            self._writer = TensorBoardWriter(logdir, info.objective, info.direction)
            self._writer.catch_up(info.trials)
        except OSError as e:
            logger.warning("TensorBoard logging is off: cannot write %s: %s", logdir, e)
            self._writer = None

    def on_trial_end(self, trial: Trial, progress: Progress) -> None:
        if self._writer is None:
            return
        try:
            self._writer.add(trial)
        except OSError as e:  # a full disk loses the TensorBoard view, never the search
            logger.warning("TensorBoard logging is off from trial %d on: %s", trial.id, e)
            self._writer.close()
            self._writer = None

    def on_search_end(self, result: object) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def write_tensorboard(search_dir: str | os.PathLike[str]) -> tuple[pathlib.Path, int]:
    """Writes the finished trials of the search in ``search_dir`` that TensorBoard lacks.

    For a search that ran with ``tensorboard=False``, or one stopped before its last
    trials were written; safe while the search runs (writers share a lock).

    Returns:
        The log directory (``search_dir/tensorboard``) and how many trials were written.

    Example:
        >>> logdir, written = write_tensorboard("runs/demo")  # doctest: +SKIP
        >>> print(f"tensorboard --logdir {logdir}")             # doctest: +SKIP
    """
    from keras_cnas.report.record import load_search

    record = load_search(search_dir)
    logdir = record.search_dir / LOGDIR_NAME
    with TensorBoardWriter(logdir, record.objective, record.direction) as writer:
        written = writer.catch_up(record.trials)
    return logdir, written
