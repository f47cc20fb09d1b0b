"""Runners execute trials: in this process, each in a fresh worker process, or (module
``ray_runner``) each as a Ray task on a cluster.

Both share one protocol: ``submit(trial, candidate_seed)`` while ``free_slots() > 0``,
then ``wait()`` for at least one finished ``(trial_id, EvaluationResult | None)``; None
means the worker died without a result (killed, OOM), which the engine re-queues once.
Every runner applies one split of errors (:mod:`keras_cnas.engine.guard`): a trial's own
exception makes it FAILED, an error that stops the search is raised from ``wait()``.
"""

from __future__ import annotations

import abc
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from keras_cnas._checks import is_int
from keras_cnas.engine import guard
from keras_cnas.registry import Registry
from keras_cnas.trial import EvaluationResult, Trial

RUNNERS: Registry[type["Runner"]] = Registry("runner")

Finished = tuple[int, EvaluationResult | None]


class Runner(abc.ABC):
    """Executes trials for the engine."""

    name: str
    workers: int = 1

    def start(self, evaluator: Any, search_dir: pathlib.Path | None) -> None:
        """Binds the runner to a search; called once before any submit."""
        self.evaluator = evaluator
        self.search_dir = search_dir

    @abc.abstractmethod
    def submit(self, trial: Trial, seed: int) -> None: ...

    @abc.abstractmethod
    def wait(self) -> list[Finished]:
        """Blocks until at least one submitted trial finishes; returns every finished one."""

    @abc.abstractmethod
    def running(self) -> int: ...

    def free_slots(self) -> int:
        return self.workers - self.running()

    def close(self) -> None:
        """Stops whatever is still running (the engine re-queues it on resume)."""

    def workdir(self, trial: Trial) -> pathlib.Path | None:
        if self.search_dir is None:
            return None
        path = self.search_dir / "trials" / f"{trial.id:05d}"
        path.mkdir(parents=True, exist_ok=True)
        return path


def portable_config(evaluator: Any, cache_dir: pathlib.Path) -> dict[str, Any]:
    """The evaluator's JSON config, from which a worker process rebuilds it.

    An in-memory dataset cannot travel as JSON: ``evaluator.portable`` writes it once to an
    ``.npz`` cache under ``cache_dir`` that the config names.
    """
    portable = evaluator.portable(cache_dir) if hasattr(evaluator, "portable") else evaluator
    config = portable.to_json_config()
    json.dumps(config)  # fails here, clearly, if the config is not JSON
    return config


@RUNNERS.register("inprocess")
class InProcessRunner(Runner):
    """Sequential, in this process: the same seed gives the same trials.

    Example:
        >>> runner = InProcessRunner()
        >>> runner.workers
        1
    """

    name = "inprocess"

    def __init__(self) -> None:
        self.workers = 1
        self._done: list[Finished] = []

    def submit(self, trial: Trial, seed: int) -> None:
        result = guard.evaluate(self.evaluator, trial.candidate, seed=seed,
                                workdir=self.workdir(trial))
        self._done.append((trial.id, result))

    def wait(self) -> list[Finished]:
        done, self._done = self._done, []
        return done

    def running(self) -> int:
        return len(self._done)


@RUNNERS.register("process")
class ProcessPoolRunner(Runner):
    """The MIT-LL asynchronous variant (§3.6): N workers, each trial in a fresh process.

    Whenever a worker is free it gets the next candidate. A fresh process per trial costs
    a TensorFlow import (a few seconds) but returns every byte a model leaked (TF keeps
    ~10 MB per model after ``clear_session``), and a crash or OOM kills only its trial.

    Args:
        workers: trials run at once (default: the machine's CPU count).
        threads_per_worker: TensorFlow intra/inter-op threads in each worker (default:
            CPUs // workers, at least 1), so N workers do not oversubscribe the cores.
        poll_seconds: how often to check the workers.

    Example:
        >>> ProcessPoolRunner(workers=2).workers
        2
    """

    name = "process"

    def __init__(self, workers: int | None = None, threads_per_worker: int | None = None,
                 poll_seconds: float = 0.2):
        cpus = os.cpu_count() or 1
        workers = cpus if workers is None else workers
        if not is_int(workers) or workers < 1:
            raise ValueError(f"workers: expected a positive integer, got {workers!r}")
        self.workers = workers
        self.threads_per_worker = threads_per_worker or max(1, cpus // workers)
        self.poll_seconds = poll_seconds
        self._procs: dict[int, tuple[subprocess.Popen, pathlib.Path, Any]] = {}
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._watchdog: tuple[int, int] | None = None

    def start(self, evaluator: Any, search_dir: pathlib.Path | None) -> None:
        super().start(evaluator, search_dir)
        # Workers read the read end; this process alone holds the write end, so its death
        # (even by SIGKILL) is end-of-file for every worker.
        self._watchdog = os.pipe()
        self._config = portable_config(evaluator,
                                       (search_dir or pathlib.Path(self._tempdir())) / "cache")

    def _tempdir(self) -> str:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="keras_cnas_")
        return self._tmp.name

    def submit(self, trial: Trial, seed: int) -> None:
        from keras_cnas.engine.worker import make_task

        workdir = self.workdir(trial)
        base = workdir if workdir is not None else pathlib.Path(self._tempdir()) / f"{trial.id:05d}"
        base.mkdir(parents=True, exist_ok=True)
        base = base.resolve()
        task_file, result_file = base / "task.json", base / "result.json"
        result_file.unlink(missing_ok=True)
        task_file.write_text(json.dumps(make_task(self._config, trial.candidate, seed,
                                                  str(base) if workdir else None)))
        env = dict(os.environ)
        package_root = str(pathlib.Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        env["TF_NUM_INTRAOP_THREADS"] = str(self.threads_per_worker)
        env["TF_NUM_INTEROP_THREADS"] = str(self.threads_per_worker)
        env["OMP_NUM_THREADS"] = str(self.threads_per_worker)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from keras_cnas.engine.worker import PARENT_PID_ENV, WATCHDOG_FD_ENV

        if self._watchdog is None:
            raise RuntimeError("ProcessPoolRunner.submit before start()")
        env[WATCHDOG_FD_ENV] = str(self._watchdog[0])
        env[PARENT_PID_ENV] = str(os.getpid())
        log = open(base / "worker.log", "w")
        # -P: the working directory is not put on sys.path (a user's concurrent.py there
        # would be imported by TensorFlow in every worker).
        proc = subprocess.Popen([sys.executable, "-P", "-m", "keras_cnas.engine.worker",
                                 str(task_file), str(result_file)],
                                stdout=log, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, pass_fds=(self._watchdog[0],),
                                process_group=0)
        self._procs[trial.id] = (proc, result_file, log)

    def wait(self) -> list[Finished]:
        while True:
            done: list[Finished] = []
            for trial_id, (proc, result_file, log) in list(self._procs.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del self._procs[trial_id]
                result = None
                if proc.returncode == 0 and result_file.exists():
                    data = json.loads(result_file.read_text())
                    guard.raise_stop(data)  # e.g. a DataError: stops the search here too
                    result = EvaluationResult.from_dict(data)
                done.append((trial_id, result))
            if done or not self._procs:
                return done
            time.sleep(self.poll_seconds)

    def running(self) -> int:
        return len(self._procs)

    def pids(self) -> dict[int, int]:
        """Trial id -> worker process id (for tests and operators)."""
        return {tid: proc.pid for tid, (proc, _, _) in self._procs.items()}

    def close(self) -> None:
        for proc, _, log in self._procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # the worker and any helper it started
                except ProcessLookupError:
                    pass
                proc.wait()
            log.close()
        self._procs.clear()
        if self._watchdog is not None:
            for fd in self._watchdog:
                os.close(fd)
            self._watchdog = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
