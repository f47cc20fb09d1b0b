"""RayRunner on a real local Ray (2 CPUs): same trials as in-process, resume, killed workers,
the --runner=ray flag of tools/search.py."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import ray

import keras_cnas as cnas
from keras_cnas.engine import RUNNERS, InProcessRunner, RayRunner, TrialStore
from keras_cnas.engine.ray_runner import localize
from keras_cnas.spaces import CategoricalSpace
from keras_cnas.strategies import RandomSearch
from keras_cnas.training.tabular import TabularEvaluator
from keras_cnas.trial import TrialStatus

REPO = pathlib.Path(__file__).resolve().parents[1]
SIZES = [3, 3, 3, 3]


def _problem():
    space = CategoricalSpace(SIZES)
    table = {space.from_decisions(list(d)).key(): {"acc": 1.0 - 0.04 * sum(d), "runs": [0.5, 0.6]}
             for d in np.ndindex(*SIZES)}
    return space, TabularEvaluator(table, metric="acc")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module: starting one costs seconds."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


# --- without a running Ray ---------------------------------------------------------------


def test_ray_is_a_registered_runner_and_importing_keras_cnas_does_not_import_ray():
    assert RUNNERS.get("ray") is RayRunner
    code = "import sys, keras_cnas; print('ray' in sys.modules, 'tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.split() == ["False", "False"], out.stderr


@pytest.mark.parametrize("kwargs, message", [
    ({"cpus_per_trial": 0}, r"cpus_per_trial: expected a number > 0 \(e.g. 1 or 0.5\), got 0"),
    ({"gpus_per_trial": float("nan")}, r"gpus_per_trial: expected a number >= 0"),
    ({"max_concurrent_trials": 0}, r"max_concurrent_trials: expected a positive integer or None"),
    ({"address": ""}, r"address: expected a Ray address such as 'auto'"),
    ({"ray_options": {"num_cpus": 4, "memory": 1e9}},
     r"ray_options: num_cpus are set by the runner; use cpus_per_trial"),
])
def test_bad_arguments_name_the_argument_and_the_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RayRunner(**kwargs)


# --- on the local Ray ---------------------------------------------------------------------


def test_a_ray_search_gives_the_trials_of_an_in_process_search(tmp_path, local_ray):
    space, evaluator = _problem()

    def run(runner, path):
        return cnas.search(space, strategy=RandomSearch(num_samples=10), evaluator=evaluator,
                           runner=runner, search_dir=path, seed=4, verbose=False)

    here = run(InProcessRunner(), tmp_path / "here")
    there = run(RayRunner(fresh_worker_per_trial=False), tmp_path / "ray")
    # RandomSearch asks without looking at results, and a trial's seed is seed + id, so the
    # asynchronous runner must reproduce every trial, the list-valued "runs" field included.
    assert [(t.spec, t.status, t.metrics) for t in there.trials] == [
        (t.spec, t.status, t.metrics) for t in here.trials]
    assert there.summary["config"]["runner"] == "ray"
    assert there.summary["config"]["workers"] == 2  # as many as the 2 CPUs hold
    assert there.best.id == here.best.id


def test_a_ray_search_resumes_to_exactly_the_requested_trials(tmp_path, local_ray):
    space, evaluator = _problem()

    def run(path, max_trials, **kw):
        return cnas.search(space, strategy=RandomSearch(num_samples=20), evaluator=evaluator,
                           runner=RayRunner(fresh_worker_per_trial=False), search_dir=path,
                           max_trials=max_trials, verbose=False, **kw)

    whole = run(tmp_path / "whole", 9)
    first = run(tmp_path / "split", 4)
    resumed = run(tmp_path / "split", 9, resume=True)
    assert [t.id for t in resumed.trials] == list(range(9))
    assert [t.spec for t in resumed.trials] == [t.spec for t in whole.trials]
    assert [t.to_dict() for t in resumed.trials[:4]] == [t.to_dict() for t in first.trials]


# End to end on a real local Ray cluster (~1-2 min on 2 cores): `make test-all`.
@pytest.mark.slow
def test_killing_workers_mid_trial_loses_nothing_finished(tmp_path, local_ray):
    """Trial A's worker is killed twice (FAILED: re-queued once, then given up), trial B's
    once (re-queued, then COMPLETED); the trials finished before the kills are untouched.

    Four trials: even if the first two finish together, two are left to be A and B."""
    data = cnas.data.load("digits")
    space = cnas.spaces.DescriptorSpace(data.input_shape, data.num_classes, max_conv_layers=2,
                                        max_filters=8, max_fc_layers=1, max_hidden=16)
    evaluator = cnas.training.KerasEvaluator(data, traction_epochs=2, batch_size=64)
    runner = RayRunner(threads_per_trial=1)
    plan: dict[int, int] = {}  # trial id -> kills wanted: the first chosen twice, the next once
    kills: dict[int, list[int]] = {}  # trial id -> pids killed
    finished_before: dict[int, dict] = {}

    def wants(trial_id: int) -> bool:
        if trial_id not in plan and len(plan) < 2:
            plan[trial_id] = 1 if plan else 2
        return len(kills.get(trial_id, [])) < plan.get(trial_id, 0)

    def killer():
        deadline = time.time() + 240
        while time.time() < deadline and not (
                len(plan) == 2 and all(len(kills.get(t, [])) == n for t, n in plan.items())):
            time.sleep(0.05)
            try:
                with TrialStore(tmp_path / "trials.db", read_only=True) as store:
                    done = {t.id: t.to_dict() for t in store.trials() if t.status.finished}
            except Exception:  # noqa: BLE001  the store is not created yet
                continue
            if not done:
                continue  # first let a trial finish, to check that the kills leave it alone
            for trial_id, pid in runner.pids().items():
                if pid in kills.get(trial_id, []) or not wants(trial_id):
                    continue  # a pid file of a worker killed already, or not a target
                for tid, row in done.items():
                    finished_before.setdefault(tid, row)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:  # it finished in between: not a kill
                    continue
                kills.setdefault(trial_id, []).append(pid)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    result = cnas.search(space, strategy=RandomSearch(num_samples=4, fidelity="traction"),
                         evaluator=evaluator, runner=runner, search_dir=tmp_path, finalize=False,
                         verbose=False)
    thread.join(timeout=5)
    assert sorted(len(pids) for pids in kills.values()) == [1, 2], kills
    killed_twice, killed_once = sorted(kills, key=lambda tid: -len(kills[tid]))
    by_id = {t.id: t for t in result.trials}
    assert by_id[killed_twice].status == TrialStatus.FAILED
    assert by_id[killed_twice].attempts == 2 and "died 2 times" in by_id[killed_twice].error
    assert by_id[killed_once].status == TrialStatus.COMPLETED and by_id[killed_once].attempts == 1
    assert len(result.trials) == 4
    assert all(t.status == TrialStatus.COMPLETED for t in result.trials if t.id not in kills)
    assert finished_before
    assert all(by_id[tid].to_dict() == row for tid, row in finished_before.items())
    assert "WorkerCrashedError" in runner.deaths[killed_once]
    # The worker's output went to the trial's log, as with the process pool.
    assert (tmp_path / "trials" / f"{killed_once:05d}" / "worker.log").is_file()


def test_a_node_without_the_data_cache_fetches_it_from_the_object_store(tmp_path, local_ray):
    """What a trial on another machine does: the driver's .npz path does not exist there."""
    payload = b"npz bytes" * 100
    missing = tmp_path / "driver-only" / "digits-0123abcd.npz"
    task = {"evaluator": {"config": {"data": {"npz_path": str(missing)}}}, "workdir": None}
    shipped = [{"path": str(missing), "size": len(payload), "ref": [ray.put(payload)]}]
    here = localize(task, shipped, cache_dir=tmp_path / "node")
    local = pathlib.Path(here["evaluator"]["config"]["data"]["npz_path"])
    assert local == tmp_path / "node" / "digits-0123abcd.npz" and local.read_bytes() == payload
    missing.parent.mkdir()
    missing.write_bytes(payload)  # a shared filesystem: the file is used where it is
    assert localize(task, shipped, cache_dir=tmp_path / "node") == task


# End to end on a real local Ray cluster (~1-2 min on 2 cores): `make test-all`.
@pytest.mark.slow
def test_tools_search_runs_trials_on_ray(tmp_path, local_ray):
    address = ray.get_runtime_context().gcs_address
    search_dir = tmp_path / "run"
    out = subprocess.run(
        [sys.executable, "tools/search.py", "--dataset=digits", "--space=descriptor",
         "--max_conv_layers=1", "--max_filters=4", "--max_fc_layers=0", "--full_epochs=1",
         "--patience=0", "--batch_size=128", "--strategy=random", "--num_random=2", "--nofinalize",
         "--runner=ray", f"--ray_address={address}", f"--search_dir={search_dir}"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((search_dir / "summary.json").read_text())
    assert summary["config"]["runner"] == "ray" and summary["status_counts"] == {"COMPLETED": 2}
    flags_json = json.loads((search_dir / "flags.json").read_text())
    assert flags_json["runner"] == "ray" and flags_json["ray_address"] == address


def test_ray_flags_without_runner_ray_are_refused(tmp_path):
    out = subprocess.run([sys.executable, "tools/search.py", "--ray_address=auto",
                          f"--search_dir={tmp_path}"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "--ray_address only apply to --runner=ray; add --runner=ray" in out.stderr


@pytest.mark.slow
def test_a_trial_that_fits_no_node_of_a_local_ray_is_refused_before_the_search(tmp_path):
    """A Ray the runner starts cannot grow: asking for a GPU it lacks would wait forever."""
    code = (
        "import keras_cnas as cnas, numpy as np\n"
        "from keras_cnas.engine import RayRunner\n"
        "from keras_cnas.training.tabular import TabularEvaluator\n"
        "space = cnas.spaces.CategoricalSpace([2])\n"
        "table = {space.from_decisions([d]).key(): {'acc': 0.5} for d in range(2)}\n"
        "try:\n"
        "    cnas.search(space, strategy=cnas.strategies.RandomSearch(num_samples=2),\n"
        "                evaluator=TabularEvaluator(table, metric='acc'), verbose=False,\n"
        f"                runner=RayRunner(gpus_per_trial=1), search_dir={str(tmp_path)!r})\n"
        "except ValueError as e:\n"
        "    print('REFUSED', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         timeout=300)
    assert re.search(r"REFUSED cpus_per_trial=1, gpus_per_trial=1: the Ray cluster has \d+ CPUs "
                     r"and 0 GPUs, so no trial fits on it; lower them or add nodes", out.stdout), (
        out.stdout + out.stderr[-2000:])


class _Config:
    """What a runner's start() reads of an evaluator: its JSON config."""

    def __init__(self, config):
        self.config = config

    def to_json_config(self):
        return self.config


def test_a_data_error_on_ray_stops_the_search_in_the_driver(tmp_path, local_ray):
    # Issue 14: on Ray every exception used to become a FAILED trial, so a missing dataset
    # quietly failed every trial; the engine's one split (engine.guard) re-raises it here.
    from keras_cnas.errors import DataError
    from keras_cnas.data.cache import DataSource
    from keras_cnas.training.evaluator import KerasEvaluator
    from keras_cnas.trial import Candidate, Trial

    config = KerasEvaluator(DataSource.registered("mnist", tmp_path / "missing")).to_json_config()
    runner = RayRunner()
    runner.start(_Config(config), tmp_path / "s")
    try:
        spec = CategoricalSpace(SIZES).from_decisions([0, 1, 2, 0])
        runner.submit(Trial.from_candidate(0, Candidate(spec)), 0)
        with pytest.raises(DataError, match="missing"):
            while True:
                if runner.wait():
                    break
    finally:
        runner.close()
