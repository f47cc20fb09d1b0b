"""RayRunner: each trial a Ray task, on a local Ray or a cluster of any size.

Only the trials travel. The strategy, the TrialStore and the search loop stay on the
driver, exactly as with the other runners, so resume, constraints and the reports behave
the same; a trial is the same JSON task a :class:`~keras_cnas.engine.ProcessPoolRunner`
worker runs (``keras_cnas.engine.worker.run_task``), and its result comes back as the JSON
of an :class:`~keras_cnas.trial.EvaluationResult`. No pickled model or evaluator crosses a
process boundary.

By default each trial runs in a fresh Ray worker process (``max_calls=1``): TensorFlow keeps
~10 MB per model after ``clear_session``, and a crash or OOM then ends only that trial.
Ray's own task retries are off (``max_retries=0``): a worker that dies (killed, OOM, node
lost) is reported to the engine, which re-queues the trial once and then marks it FAILED,
as for the process pool.

``ray`` is an optional dependency (``pip install 'keras_cnas[ray]'``), imported when a
search starts, so that importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import tempfile
from typing import Any, Iterator, Mapping

from keras_cnas._checks import is_finite_number, is_int
from keras_cnas.engine import guard
from keras_cnas.engine.runners import RUNNERS, Finished, Runner, portable_config
from keras_cnas.trial import EvaluationResult, Trial, TrialStatus

logger = logging.getLogger(__name__)

#: Options the runner sets itself on every trial's task; ``ray_options`` may not override them.
_OWN_OPTIONS = ("num_cpus", "num_gpus", "max_retries", "retry_exceptions", "max_calls")
#: Evaluator config keys that name a data file the runner ships to nodes that lack it.
_SHIPPED_KEYS = ("npz_path",)
_MAX_ERROR_CHARS = 2000
#: Ray errors that say the trial cannot run as configured (not that its worker died): the
#: trial FAILS with Ray's reason instead of being re-queued. Looked up by name, as older
#: Ray versions lack some.
_SETUP_ERRORS = ("TaskUnschedulableError", "RuntimeEnvSetupError")


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError("RayRunner needs Ray, which is not installed; pip install "
                          "'keras_cnas[ray]' (or pass runner=ProcessPoolRunner(workers=N) to "
                          "run on this machine only)") from None
    return ray


def _positive_number(name: str, value: Any, *, allow_zero: bool = False, example: str) -> float:
    ok = (is_finite_number(value)
          and (value >= 0 if allow_zero else value > 0))
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected a number {bound} (e.g. {example}), got {value!r}")
    return float(value)


@RUNNERS.register("ray")
class RayRunner(Runner):
    """Runs each trial as a Ray task with ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs.

    Asynchronous, like :class:`~keras_cnas.engine.ProcessPoolRunner`: whenever a trial
    finishes, the strategy is told and the next candidate goes out.

    Args:
        address: the Ray cluster to join: ``"auto"`` (the one ``ray start`` runs on this
            machine), ``"ray://head:10001"`` or ``"host:6379"``. None: join the Ray this
            process already initialised, else start a local Ray with the machine's CPUs.
        cpus_per_trial: CPUs Ray reserves for each trial (fractions allowed).
        gpus_per_trial: GPUs Ray reserves for each trial. With 0, the trial's process sees
            no GPU (CUDA_VISIBLE_DEVICES is emptied), so concurrent CPU trials never contend
            for a GPU's memory.
        max_concurrent_trials: trials in flight at once (default: as many as the cluster's
            CPUs and GPUs hold when the search starts). Fewer in flight means each new
            candidate is asked for with more results known.
        threads_per_trial: TensorFlow intra/inter-op threads of a trial (default: the whole
            CPUs it reserves, at least 1), so trials do not oversubscribe a node.
        fresh_worker_per_trial: a new worker process per trial (see the module docstring);
            False reuses workers, which suits table lookups (TabularEvaluator) that train
            nothing.
        ray_options: more ``.options()`` of the trial task, e.g. ``{"memory": 2e9}``,
            ``{"resources": {"edge_tpu": 1}}`` or ``{"runtime_env": {...}}``.
        init_kwargs: more ``ray.init`` arguments when this runner initialises Ray (e.g.
            ``{"runtime_env": {"py_modules": [...]}}`` for a cluster without keras_cnas).
        wait_seconds: how long one ``ray.wait`` blocks before checking for an interrupt.

    On a cluster of several machines: trial metrics always come back through Ray, and an
    in-memory dataset's ``.npz`` cache is shipped to nodes that do not have it; files
    that trials write (their ``worker.log``, models saved with ``save_models=True``) stay on
    the node that ran them unless ``search_dir`` is on a shared filesystem.

    Example:
        >>> runner = RayRunner(cpus_per_trial=2, max_concurrent_trials=3)
        >>> runner.workers, runner.threads_per_trial
        (3, 2)
        >>> RayRunner(gpus_per_trial=-1)
        Traceback (most recent call last):
        ...
        ValueError: gpus_per_trial: expected a number >= 0 (e.g. 1 or 0.5), got -1

        A search on a local Ray (``ray`` must be installed)::

            result = cnas.search(space, budget, evaluator=evaluator, runner=RayRunner())
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, cpus_per_trial: float = 1,
                 gpus_per_trial: float = 0, max_concurrent_trials: int | None = None,
                 threads_per_trial: int | None = None, fresh_worker_per_trial: bool = True,
                 ray_options: Mapping[str, Any] | None = None,
                 init_kwargs: Mapping[str, Any] | None = None, wait_seconds: float = 1.0):
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise ValueError(f"address: expected a Ray address such as 'auto' or "
                             f"'ray://head:10001', or None for a local Ray; got {address!r}")
        self.address = address
        self.cpus_per_trial = _positive_number("cpus_per_trial", cpus_per_trial, example="1 or 0.5")
        self.gpus_per_trial = _positive_number("gpus_per_trial", gpus_per_trial, allow_zero=True,
                                               example="1 or 0.5")
        if max_concurrent_trials is not None and (not is_int(max_concurrent_trials)
                                                  or max_concurrent_trials < 1):
            raise ValueError(f"max_concurrent_trials: expected a positive integer or None (as "
                             f"many as the cluster holds), got {max_concurrent_trials!r}")
        self.max_concurrent_trials = max_concurrent_trials
        if threads_per_trial is not None and (not is_int(threads_per_trial)
                                              or threads_per_trial < 1):
            raise ValueError(f"threads_per_trial: expected a positive integer or None, got "
                             f"{threads_per_trial!r}")
        self.threads_per_trial = threads_per_trial or max(1, int(self.cpus_per_trial))
        if not isinstance(fresh_worker_per_trial, bool):
            raise ValueError(f"fresh_worker_per_trial: expected True or False, got "
                             f"{fresh_worker_per_trial!r}")
        self.fresh_worker_per_trial = fresh_worker_per_trial
        self.ray_options = dict(ray_options or {})
        clash = sorted(set(self.ray_options) & set(_OWN_OPTIONS))
        if clash:
            raise ValueError(f"ray_options: {', '.join(clash)} are set by the runner; use "
                             "cpus_per_trial / gpus_per_trial, fresh_worker_per_trial (the "
                             "engine itself re-queues a trial whose worker died)")
        self.init_kwargs = dict(init_kwargs or {})
        self.wait_seconds = _positive_number("wait_seconds", wait_seconds, example="1.0")
        self.workers = max_concurrent_trials or 1  # until start() sees the cluster
        self._refs: dict[Any, int] = {}  # ObjectRef -> trial id
        self._workdirs: dict[int, pathlib.Path] = {}
        self._owns_ray = False
        self._shipped: list[dict[str, Any]] = []
        self._tmp: tempfile.TemporaryDirectory | None = None
        #: Trial id -> why its last worker died (Ray's message), for diagnosis.
        self.deaths: dict[int, str] = {}

    # --- set-up ---------------------------------------------------------------------------

    def start(self, evaluator: Any, search_dir: pathlib.Path | None) -> None:
        ray = _import_ray()
        if search_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="keras_cnas_ray_")
            search_dir = pathlib.Path(self._tmp.name)
        super().start(evaluator, search_dir)
        self._config = portable_config(evaluator, search_dir / "cache")
        self._init_ray(ray)
        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
        if cpus < self.cpus_per_trial or gpus < self.gpus_per_trial:
            message = (f"cpus_per_trial={self.cpus_per_trial:g}, gpus_per_trial="
                       f"{self.gpus_per_trial:g}: the Ray cluster has {cpus:g} CPUs and {gpus:g} "
                       "GPUs, so no trial fits on it; lower them or add nodes")
            if self._owns_ray:  # a Ray started here cannot grow: waiting would hang
                self.close()
                raise ValueError(message)
            logger.warning("%s (waiting in case an autoscaler adds them)", message)
        if self.max_concurrent_trials is None:
            slots = cpus // self.cpus_per_trial
            if self.gpus_per_trial:
                slots = min(slots, gpus // self.gpus_per_trial)
            self.workers = max(1, int(slots))
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        # Another machine may not see this machine's files: ship the data cache through
        # Ray's object store (fetched by a trial only where the file is missing).
        if self.address is not None or len(nodes) > 1:
            files = [pathlib.Path(p) for p in _shipped_paths(self._config)]
            self._shipped = [{"path": str(f), "size": f.stat().st_size,
                              "ref": [ray.put(f.read_bytes())]} for f in files if f.is_file()]
        self._remote = ray.remote(max_calls=1 if self.fresh_worker_per_trial else 0,
                                  max_retries=0, retry_exceptions=False)(_ray_trial).options(
            num_cpus=self.cpus_per_trial, num_gpus=self.gpus_per_trial, **self.ray_options)
        logger.info("RayRunner: %d trial(s) at once, %g CPU(s) / %g GPU(s) each, on a cluster "
                    "of %d node(s) with %g CPUs and %g GPUs", self.workers, self.cpus_per_trial,
                    self.gpus_per_trial, len(nodes), cpus, gpus)

    def _init_ray(self, ray: Any) -> None:
        if ray.is_initialized():
            self._owns_ray = False  # the caller's Ray: leave it running at close()
            if self.address is not None:
                logger.info("RayRunner: Ray is already initialised in this process; its cluster "
                            "runs the trials (address=%r is not joined)", self.address)
            return
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  **self.init_kwargs}
        if self.address is None:
            kwargs.setdefault("num_cpus", os.cpu_count() or 1)
        try:
            ray.init(address=self.address, **kwargs)
        except ConnectionError as e:
            raise ConnectionError(
                f"address: no Ray cluster answers at {self.address!r} ({e}); start one with "
                "`ray start --head`, pass its address, or leave the address out to start a "
                "local Ray") from None
        self._owns_ray = True

    # --- the runner protocol -----------------------------------------------------------

    def submit(self, trial: Trial, seed: int) -> None:
        from keras_cnas.engine.worker import make_task

        workdir = self.workdir(trial)
        assert workdir is not None  # start() always sets a search_dir
        (workdir / "worker.pid").unlink(missing_ok=True)
        task = make_task(self._config, trial.candidate, seed, str(workdir))
        # Ray puts the driver's working directory on its workers' sys.path; the worker takes
        # it off again before the trial imports anything (see _ray_trial).
        task["driver_cwd"] = os.getcwd()
        ref = self._remote.remote(task, self.threads_per_trial, self.gpus_per_trial == 0,
                                  self._shipped)
        self._refs[ref] = trial.id
        self._workdirs[trial.id] = workdir

    def wait(self) -> list[Finished]:
        ray = _import_ray()
        while self._refs:
            # A bounded wait, so that Ctrl-C reaches Python between calls.
            ready, _ = ray.wait(list(self._refs), num_returns=1, timeout=self.wait_seconds)
            if ready:
                break
        if not self._refs:
            return []
        ready, _ = ray.wait(list(self._refs), num_returns=len(self._refs), timeout=0)
        done: list[Finished] = []
        for ref in ready:
            trial_id = self._refs.pop(ref)
            self._workdirs.pop(trial_id, None)
            done.append((trial_id, self._result(ray, ref, trial_id)))
        return done

    def _result(self, ray: Any, ref: Any, trial_id: int) -> EvaluationResult | None:
        errors = ray.exceptions
        try:
            data = ray.get(ref)
        except errors.RayTaskError as e:
            # The task ran and raised outside the evaluator (e.g. keras_cnas cannot be
            # imported on that node): this trial's outcome, with the reason.
            return EvaluationResult(status=TrialStatus.FAILED,
                                    error=f"Ray task failed: {str(e)[-_MAX_ERROR_CHARS:]}")
        except tuple(getattr(errors, n) for n in _SETUP_ERRORS if hasattr(errors, n)) as e:
            return EvaluationResult(status=TrialStatus.FAILED, error=(
                f"Ray could not run the trial: {str(e)[:_MAX_ERROR_CHARS]}"))
        except errors.RayError as e:  # the worker or its node died: the engine re-queues
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            self.deaths[trial_id] = reason
            logger.warning("trial %d: its Ray worker died (%s)", trial_id, reason)
            return None
        guard.raise_stop(data)  # an error that stops the search, as in the other runners
        return EvaluationResult.from_dict(data)

    def running(self) -> int:
        return len(self._refs)

    def pids(self) -> dict[int, int]:
        """Trial id -> process id of its Ray worker, for trials whose worker has started
        (read from ``worker.pid`` in the trial's directory: on a shared filesystem this
        includes other machines' processes). For tests and operators."""
        out = {}
        for trial_id, workdir in list(self._workdirs.items()):
            try:
                out[trial_id] = int((workdir / "worker.pid").read_text())
            except (FileNotFoundError, ValueError):  # not started yet, or being written
                continue
        return out

    def close(self) -> None:
        if self._refs:
            ray = _import_ray()
            for ref in self._refs:
                with contextlib.suppress(Exception):  # already finished or its node is gone
                    ray.cancel(ref, force=True)
            self._refs.clear()
            self._workdirs.clear()
        if self._owns_ray:
            _import_ray().shutdown()
            self._owns_ray = False
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


# --- what runs in the Ray worker ------------------------------------------------------------


def _ray_trial(task: dict[str, Any], threads: int, hide_gpus: bool,
               shipped: list[dict[str, Any]]) -> dict[str, Any]:
    """One trial in a Ray worker: the same task as ``python -m keras_cnas.engine.worker``."""
    # Before TensorFlow is imported (a fresh worker has not): its thread pools and devices
    # are fixed at first use.
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ[name] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if hide_gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import sys

    from keras_cnas.engine.worker import run_task_guarded

    # keras_cnas is imported by now (this function lives in it); nothing else may come from
    # the directory the user started the search in (a concurrent.py there, say).
    cwd = task.get("driver_cwd")
    if cwd:
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != cwd]

    task = localize(task, shipped)
    workdir = pathlib.Path(task["workdir"]) if task.get("workdir") else None
    with _worker_log(workdir):
        if workdir is not None:
            (workdir / "worker.pid").write_text(str(os.getpid()))
        result = run_task_guarded(task)  # a result, or {"stop": ...} (engine.guard)
        if result.get("error"):
            print(result["error"], file=sys.stderr)
    return result


@contextlib.contextmanager
def _worker_log(workdir: pathlib.Path | None) -> Iterator[None]:
    """The trial's stdout and stderr (Python's and TensorFlow's C++ logs) to
    ``workdir/worker.log``, as the process pool does; restored afterwards, so a reused
    worker's next trial logs to its own file."""
    if workdir is None:
        yield
        return
    import sys

    workdir.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(workdir / "worker.log", "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _shipped_paths(config: Any) -> list[str]:
    """Values of the data-file keys anywhere in an evaluator config."""
    found: list[str] = []
    if isinstance(config, Mapping):
        for key, value in config.items():
            if key in _SHIPPED_KEYS and isinstance(value, str):
                found.append(value)
            else:
                found += _shipped_paths(value)
    elif isinstance(config, (list, tuple)):
        for value in config:
            found += _shipped_paths(value)
    return found


def localize(task: dict[str, Any], shipped: list[dict[str, Any]],
             cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """``task`` with each shipped file that this node lacks written to a node-local cache
    (``cache_dir``, default ``$TMPDIR/keras_cnas_ray``) and its path rewritten.

    ``shipped`` holds ``{"path", "size", "ref": [ObjectRef or bytes]}`` entries; a file
    already present with the same size is used in place (a shared filesystem, or this
    machine). Cache files are named by the original's name, which for the engine's ``.npz``
    caches carries the data's fingerprint.

    Example:
        >>> import tempfile
        >>> task = {"evaluator": {"config": {"data": {"npz_path": "/elsewhere/d-1a2b.npz"}}}}
        >>> shipped = [{"path": "/elsewhere/d-1a2b.npz", "size": 3, "ref": [b"abc"]}]
        >>> here = localize(task, shipped, cache_dir=tempfile.mkdtemp())
        >>> local = here["evaluator"]["config"]["data"]["npz_path"]
        >>> local.endswith("d-1a2b.npz"), open(local, "rb").read()
        (True, b'abc')
    """
    moved: dict[str, str] = {}
    for entry in shipped:
        original = pathlib.Path(entry["path"])
        if original.is_file() and original.stat().st_size == entry["size"]:
            continue
        local = pathlib.Path(cache_dir or pathlib.Path(tempfile.gettempdir()) / "keras_cnas_ray")
        local = local / original.name
        if not (local.is_file() and local.stat().st_size == entry["size"]):
            data = entry["ref"][0]
            if not isinstance(data, (bytes, bytearray, memoryview)):
                data = _import_ray().get(data)
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(f"{local.name}.{os.getpid()}.tmp")
            tmp.write_bytes(bytes(data))
            os.replace(tmp, local)  # concurrent trials on this node never see half a file
        moved[entry["path"]] = str(local)
    return _replace_paths(task, moved) if moved else task


def _replace_paths(value: Any, moved: Mapping[str, str]) -> Any:
    if isinstance(value, Mapping):
        return {k: (moved.get(v, v) if k in _SHIPPED_KEYS and isinstance(v, str)
                    else _replace_paths(v, moved)) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_paths(v, moved) for v in value]
    return value
