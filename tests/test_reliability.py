"""Reliability and security (issue 14): one test per defect, each failing before its fix.

No code runs on load, workers import nothing from the working directory, one search per
directory, nothing of the user's deleted, best/ replaced atomically, strict resume, workers
end with their driver, one error split for every runner, bounded work on hostile input.
"""

import gzip
import io
import json
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import tarfile
import textwrap
import time

import numpy as np
import pytest

import keras_cnas as cnas
from keras_cnas.engine import (FinalizeError, ProcessPoolRunner, SearchDirError,
                               SearchInterrupted, TrialStore)
from keras_cnas.engine.search_dir import SearchDirLock
from keras_cnas.errors import DataError, InfeasibleConstraintsError, InvalidSpecError
from keras_cnas.spaces import CategoricalSpace, spec_from_json
from keras_cnas.strategies import FixedSpecs, RandomSearch
from keras_cnas.training.tabular import TabularEvaluator
from keras_cnas.trial import Candidate, Trial, TrialStatus

REPO = pathlib.Path(__file__).resolve().parents[1]
SIZES = [3, 3, 3]
SPACE = CategoricalSpace(SIZES)
TABLE = {SPACE.from_decisions(list(d)).key(): {"acc": sum(d) / 6} for d in np.ndindex(*SIZES)}
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get(
    "PYTHONPATH")]))}


def _search(search_dir, n=5, evaluator=None, strategy=None, **kw):
    return cnas.search(SPACE, strategy=strategy or RandomSearch(num_samples=n),
                       evaluator=evaluator or TabularEvaluator(TABLE, metric="acc"),
                       search_dir=search_dir, verbose=False, **kw)


class CountingEvaluator(TabularEvaluator):
    """A table whose finalize writes best/model.txt and counts (or fails) retrainings."""

    finalized: list[int] = []
    fail = False

    def finalize(self, candidate, out_dir, *, seed=0, epochs=None):
        (pathlib.Path(out_dir) / "model.txt").write_text(candidate.spec.key())
        if CountingEvaluator.fail:
            raise RuntimeError("retraining diverged: loss is NaN")
        CountingEvaluator.finalized.append(1)
        return {"test_accuracy": 0.5}


# --- 1. loading a model runs no code from the file -------------------------------------------


@pytest.fixture(scope="module")
def hostile_models(tmp_path_factory):
    """Two model files with a Lambda layer whose code writes a marker file when run: an
    HDF5 file named model.keras, and a Keras v3 archive."""
    from keras_cnas._keras import keras

    root = tmp_path_factory.mktemp("hostile")
    marker = root / "code_ran"
    code = f"lambda x: (open({str(marker)!r}, 'w').close(), x)[1]"
    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(eval(code)),
                              keras.layers.Dense(2, activation="softmax")])
    marker.unlink()  # building the model ran the lambda once
    (root / "h5").mkdir()
    model.save(root / "h5" / "model.h5")
    os.rename(root / "h5" / "model.h5", root / "h5" / "model.keras")
    (root / "v3").mkdir()
    model.save(root / "v3" / "model.keras")
    # The control: tf_keras's own loader does run the file's code for the HDF5 file.
    keras.models.load_model(root / "h5" / "model.keras")
    assert marker.exists(), "the fixture is not hostile: tf_keras did not run its Lambda"
    marker.unlink()
    return root, marker


@pytest.mark.parametrize("kind, why", [("h5", "legacy HDF5"), ("v3", "Lambda layer")])
def test_no_loader_runs_code_from_a_model_file(hostile_models, kind, why, tmp_path):
    from keras_cnas.export import load_saved_model
    from keras_cnas.training.ensemble import Ensemble
    from keras_cnas.export.model_file import ModelFileError

    root, marker = hostile_models
    model_dir = root / kind
    with pytest.raises(ModelFileError, match=why):
        load_saved_model(model_dir)
    with pytest.raises(ModelFileError, match=why):
        Ensemble.load([model_dir])
    best = tmp_path / "best"
    best.mkdir()
    (best / "model.keras").write_bytes((model_dir / "model.keras").read_bytes())
    from keras_cnas.trial import Trial, TrialStatus

    finished = Trial(0, cnas.spaces.reference.resnet_cifar(8), status=TrialStatus.COMPLETED)
    result = cnas.engine.SearchResult(finished, [finished], {}, {}, tmp_path)
    with pytest.raises(ModelFileError, match=why):
        result.best_model()
    assert not marker.exists()


def test_export_and_compress_binaries_refuse_the_file_before_running_it(hostile_models):
    root, marker = hostile_models
    for tool, args in (("export_tflite.py", [f"--model={root / 'h5'}", "--quantize=none"]),
                       ("compress.py", [f"--baseline={root / 'h5'}", f"--out_dir={root / 'c'}"])):
        proc = subprocess.run([sys.executable, str(REPO / "tools" / tool), *args], env=ENV,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode in (1, 2), proc.stderr
        assert "legacy HDF5" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


# --- 2. workers import nothing from the working directory ------------------------------------


def test_workers_do_not_import_modules_from_the_working_directory(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    marker = tmp_path / "imported"
    # json is imported by every worker; a json.py here would shadow it without -P.
    (cwd / "json.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise SystemExit(3)\n")
    (cwd / "concurrent.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(cwd)
    result = _search(tmp_path / "s", n=2, runner=ProcessPoolRunner(workers=2))
    assert [t.status for t in result.trials] == [TrialStatus.COMPLETED] * 2
    assert not marker.exists()


# --- 3. one search per directory ------------------------------------------------------------


def test_a_second_search_on_a_locked_dir_fails_at_once_naming_the_holder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from keras_cnas.engine.search_dir import SearchDirLock
            lock = SearchDirLock({str(tmp_path)!r})
            print("locked", flush=True)
            time.sleep(60)
        """)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(SearchDirError, match=rf"in use by another search \(process "
                                                 rf"{holder.pid} holds"):
            _search(tmp_path, resume=False)
        assert time.monotonic() - started < 5
        assert not (tmp_path / "trials.db").exists()
    finally:
        holder.kill()
        holder.wait()
    # The kernel drops a killed holder's lock: no stale lock to clean up by hand.
    assert len(_search(tmp_path).trials) == 5


def test_two_resumes_at_once_cannot_both_run(tmp_path):
    _search(tmp_path, n=3)
    with SearchDirLock(tmp_path):  # re-entrant here; another process is refused
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
            import keras_cnas as cnas
            from keras_cnas.engine.search_dir import SearchDirLock
            SearchDirLock({str(tmp_path)!r})
        """)], env=ENV, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and f"process {os.getpid()} holds" in proc.stderr


# --- 4. a search deletes only what it wrote ------------------------------------------------


def test_overwrite_keeps_the_users_own_files(tmp_path):
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "notes.md").write_text("mine")
    (tmp_path / "data.csv").write_text("mine too")
    _search(tmp_path)
    assert (tmp_path / "trials").is_dir() or (tmp_path / "summary.json").is_file()
    _search(tmp_path, overwrite=True)
    assert (tmp_path / "report" / "notes.md").read_text() == "mine"
    assert (tmp_path / "data.csv").read_text() == "mine too"
    assert json.loads((tmp_path / "written.json").read_text())["written"].count("report") == 0


def test_a_search_refuses_to_write_over_entries_it_did_not_write(tmp_path):
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "model.keras").write_text("the user's")
    with pytest.raises(SearchDirError, match="holds best that no search recorded writing"):
        _search(tmp_path)
    assert (tmp_path / "best" / "model.keras").read_text() == "the user's"


@pytest.mark.parametrize("bad", ["", ".", "./", "~"])
def test_an_empty_or_dot_like_search_dir_is_refused(bad, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "report").mkdir()
    with pytest.raises(SearchDirError, match="search_dir: "):
        _search(bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


# --- 5. best/ is replaced atomically, never retrained for nothing -----------------------------


def _fixed(n):
    # Later specs score higher: each new trial becomes the best.
    return FixedSpecs([SPACE.from_decisions([0, min(i, 2), max(0, i - 2)]) for i in range(n)])


def test_a_finished_search_is_not_retrained_on_resume(tmp_path):
    CountingEvaluator.finalized, CountingEvaluator.fail = [], False
    evaluator = CountingEvaluator(TABLE, metric="acc")
    first = _search(tmp_path, evaluator=evaluator, strategy=_fixed(3))
    again = _search(tmp_path, evaluator=evaluator, strategy=_fixed(3), resume=True)
    assert len(CountingEvaluator.finalized) == 1
    assert again.best.id == first.best.id and again.best_metrics == {"test_accuracy": 0.5}


def test_a_failed_retrain_keeps_the_old_best_and_writes_the_summary(tmp_path):
    CountingEvaluator.finalized, CountingEvaluator.fail = [], False
    evaluator = CountingEvaluator(TABLE, metric="acc")
    first = _search(tmp_path, evaluator=evaluator, strategy=_fixed(5), max_trials=2)
    old = (tmp_path / "best" / "model.txt").read_text()
    CountingEvaluator.fail = True
    with pytest.raises(FinalizeError, match="best/ is unchanged"):
        _search(tmp_path, evaluator=evaluator, strategy=_fixed(5), resume=True)
    assert (tmp_path / "best" / "model.txt").read_text() == old == first.best.spec.key()
    assert json.loads((tmp_path / "best" / "trial.json").read_text())["id"] == first.best.id
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["num_trials"] == 5 and "diverged" in summary["best"]["final_metrics"]["error"]
    assert not (tmp_path / "best.new").exists() and not (tmp_path / "best.old").exists()


def test_a_kill_between_the_renames_is_recovered(tmp_path):
    from keras_cnas.engine.search_dir import recover_dir, replace_dir

    replace_dir(tmp_path / "best", lambda d: (d / "f").write_text("old"))
    os.rename(tmp_path / "best", tmp_path / "best.old")  # killed after the first rename
    (tmp_path / "best.new").mkdir()
    (tmp_path / "best.new" / "f").write_text("half")
    recover_dir(tmp_path / "best")
    assert (tmp_path / "best" / "f").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


# --- 6. resume is strict ------------------------------------------------------------------------


def test_resume_on_nothing_is_an_error(tmp_path):
    with pytest.raises(SearchDirError, match="holds no search to resume"):
        _search(tmp_path, resume=True)
    assert not (tmp_path / "trials.db").exists()


def test_resume_without_the_strategy_state_is_an_error(tmp_path):
    _search(tmp_path, n=3)
    with sqlite3.connect(tmp_path / "trials.db") as db:
        db.execute("DELETE FROM state WHERE key='strategy'")
    with pytest.raises(SearchDirError, match="3 trials but no strategy state"):
        _search(tmp_path, n=3, resume=True, max_trials=6)
    assert TrialStore(tmp_path / "trials.db", read_only=True).count() == 3


def test_resume_with_another_scoring_is_refused(tmp_path):
    _search(tmp_path, n=3)
    other = {k: {"acc": v["acc"], "acc2": 1 - v["acc"]} for k, v in TABLE.items()}
    with pytest.raises(SearchDirError, match=r"its scoring\.config\.table"):
        _search(tmp_path, n=3, resume=True, evaluator=TabularEvaluator(other, metric="acc"))


def test_the_keras_evaluators_identity_covers_training_and_data():
    from keras_cnas.data.cache import DataSource
    from keras_cnas.training.evaluator import KerasEvaluator

    def identity(lr=5e-4, epochs=30, split=0.1, max_train=None, verbose=0):
        source = DataSource.registered("digits", validation_split=split,
                                       max_train_examples=max_train)
        return KerasEvaluator(source, learning_rate=lr, full_epochs=epochs,
                              verbose=verbose).identity()

    base = identity()
    assert identity(verbose=1) == base  # logging changes no score
    for changed in (identity(lr=1e-3), identity(epochs=5), identity(split=0.2),
                    identity(max_train=500)):
        assert changed != base


# --- 7. workers end with their driver ------------------------------------------------------------


def _driver_with_a_busy_worker(tmp_path):
    """A driver process whose one worker trains a digits model for 10**6 epochs."""
    script = textwrap.dedent(f"""
        import pathlib, time
        import keras_cnas as cnas
        from keras_cnas.engine import ProcessPoolRunner
        from keras_cnas.training import DataSource, KerasEvaluator
        from keras_cnas.trial import Candidate, Trial

        evaluator = KerasEvaluator(DataSource.registered("digits"), full_epochs=10**6)
        runner = ProcessPoolRunner(workers=1)
        runner.start(evaluator, pathlib.Path({str(tmp_path / "s")!r}))
        spec = cnas.spaces.DescriptorSpace((8, 8, 1), 10, max_conv_layers=1).sample(
            __import__("numpy").random.default_rng(0))
        runner.submit(Trial.from_candidate(0, Candidate(spec, "full")), 0)
        print(list(runner.pids().values())[0], flush=True)
        time.sleep(120)
    """)
    driver = subprocess.Popen([sys.executable, "-c", script], env=ENV, stdout=subprocess.PIPE,
                              text=True)
    return driver, int(driver.stdout.readline())


def _gone(pid, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[1].startswith("Z"):  # exited, awaiting its reaper
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_end_with_their_driver(tmp_path, sig):
    driver, worker = _driver_with_a_busy_worker(tmp_path)
    try:
        assert not _gone(worker, 1.0)
        os.kill(driver.pid, sig)
        driver.wait(10)
        assert _gone(worker), f"worker {worker} outlived its driver ({sig.name})"
    finally:
        driver.kill()
        driver.wait()


# --- 8. one split of errors for every runner ---------------------------------------------------


class _RaisingEvaluator(TabularEvaluator):
    def __init__(self, error, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.error = error

    def evaluate(self, candidate, *, seed=0, workdir=None):
        if candidate.spec.key().endswith("1"):
            raise self.error
        return super().evaluate(candidate, seed=seed, workdir=workdir)


def test_a_trials_own_exception_fails_only_that_trial_in_process(tmp_path):
    evaluator = _RaisingEvaluator(TypeError("no such layer"), TABLE, metric="acc")
    strategy = FixedSpecs([SPACE.from_decisions(d) for d in ([0, 0, 0], [0, 0, 1], [1, 2, 1],
                                                              [2, 2, 2])])
    result = _search(tmp_path, evaluator=evaluator, strategy=strategy)
    failed = [t for t in result.trials if t.status == TrialStatus.FAILED]
    assert len(failed) == 2 and len(result.trials) == 4 and result.best.spec.key() == "222"
    assert all(t.error.splitlines()[0] == "TypeError: no such layer" for t in failed)


def test_a_data_error_stops_the_search_in_process(tmp_path):
    evaluator = _RaisingEvaluator(DataError("data: gone"), TABLE, metric="acc")
    with pytest.raises(DataError, match="data: gone"):
        _search(tmp_path, n=27, strategy=RandomSearch(num_samples=27), evaluator=evaluator)


class _Config:
    """What ProcessPoolRunner.start reads of an evaluator: its JSON config."""

    def __init__(self, config):
        self.config = config

    def to_json_config(self):
        return self.config


def _one_worker_trial(config, tmp_path):
    runner = ProcessPoolRunner(workers=1)
    runner.start(_Config(config), tmp_path / "s")
    try:
        runner.submit(Trial.from_candidate(0, Candidate(SPACE.from_decisions([0, 1, 2]))), 0)
        return runner.wait()
    finally:
        runner.close()


def test_a_data_error_in_a_worker_stops_the_search_in_the_driver(tmp_path):
    from keras_cnas.data.cache import DataSource
    from keras_cnas.training.evaluator import KerasEvaluator

    config = KerasEvaluator(DataSource.registered("mnist", tmp_path / "missing")).to_json_config()
    with pytest.raises(DataError, match="missing"):
        _one_worker_trial(config, tmp_path)


def test_a_failed_worker_trial_says_why_on_its_first_line(tmp_path):
    config = TabularEvaluator(TABLE, metric="acc").to_json_config()
    config["config"]["metric"] = "nope"  # rebuilding it in the worker raises ValueError

    [(_, result)] = _one_worker_trial(config, tmp_path)
    assert result.status == TrialStatus.FAILED
    assert result.error.splitlines()[0].startswith("ValueError: metric: 'nope'")


def test_an_infeasible_search_does_not_retrain_its_best(tmp_path):
    CountingEvaluator.finalized, CountingEvaluator.fail = [], False

    class GivesUp(FixedSpecs):
        def ask(self):
            if self.next >= 2:
                raise InfeasibleConstraintsError("no feasible candidate left")
            return super().ask()

    strategy = GivesUp([SPACE.from_decisions([0, 0, i]) for i in range(3)])
    with pytest.raises(InfeasibleConstraintsError):
        _search(tmp_path, strategy=strategy, evaluator=CountingEvaluator(TABLE, metric="acc"))
    assert CountingEvaluator.finalized == [] and not (tmp_path / "best").exists()
    assert json.loads((tmp_path / "summary.json").read_text())["num_trials"] == 2


# --- 9. Ctrl-C: a resume hint, nothing lost ------------------------------------------------------


def test_ctrl_c_says_how_many_trials_finished_and_how_to_resume(tmp_path):
    evaluator = _RaisingEvaluator(KeyboardInterrupt(), TABLE, metric="acc")
    strategy = FixedSpecs([SPACE.from_decisions([0, 0, i]) for i in (0, 2, 1, 2)])
    with pytest.raises(SearchInterrupted, match=r"interrupted after 2 trials; continue with "
                                                r"--resume"):
        _search(tmp_path, strategy=strategy, evaluator=evaluator)
    assert TrialStore(tmp_path / "trials.db", read_only=True).count(TrialStatus.COMPLETED) == 2


# --- 10. bounded work on hostile input ----------------------------------------------------------


@pytest.mark.parametrize("text, match", [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"space": "descriptor", "x": ' + "9" * 5000 + "}", "cannot parse"),
    (json.dumps({"space": "descriptor", "input_shape": [28, 28, 1], "num_classes": 10,
                 "version": 1, "fc_layers": [],
                 "conv_layers": [{"filt_x": 1, "filt_y": 1, "n_filters": 2, "pool_x": 1,
                                  "pool_y": 1, "sub_x": 1, "sub_y": 1}] * 100_000}),
     "conv_layers: 100,000 entries, more than the limit of 256"),
    (json.dumps({"space": "enas_cell", "cell": [[0, "sep3x3", 0, "avg3x3"]] * 1000,
                 "filters": 20, "input_shape": [32, 32, 3], "num_classes": 10,
                 "num_layers": 3, "reduction_layers": [1, 2], "version": 1}),
     "cell: 1,000 entries"),
    (json.dumps({"space": "descriptor", "input_shape": [28, 28, 1], "num_classes": 10,
                 "version": 1, "fc_layers": [{"n_hidden": 10**9}], "conv_layers": []}),
     r"fc_layers\[0\].n_hidden: 1000000000 exceeds the limit of 65,536"),
    (json.dumps({"space": "descriptor", "input_shape": [60000, 60000, 3], "num_classes": 10,
                 "version": 1, "fc_layers": [], "conv_layers": []}),
     "input_shape: .* more than the limit of 2,147,483,647"),
])
def test_hostile_specs_are_refused_before_any_work(text, match):
    started = time.monotonic()
    with pytest.raises(InvalidSpecError, match=match):
        spec_from_json(text)
    assert time.monotonic() - started < 2.0


def test_an_archive_member_is_size_checked_before_it_is_read(tmp_path):
    from keras_cnas.data import load
    from keras_cnas.data.limits import MAX_FILE_BYTES

    tarball = tmp_path / "cifar-10-python.tar.gz"
    size = MAX_FILE_BYTES + 1

    class Zeros(io.RawIOBase):
        def __init__(self):
            self.left = size

        def readable(self):
            return True

        def readinto(self, buffer):
            n = min(len(buffer), self.left)
            buffer[:n] = bytes(n)
            self.left -= n
            return n

    with gzip.open(tarball, "wb", compresslevel=1) as raw, tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = size
        tar.addfile(info, io.BufferedReader(Zeros(), 1 << 20))
    assert tarball.stat().st_size < 2 * 2**20  # a small file declaring a huge member
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match=rf"data_batch_1 is {size:,} bytes, more than the"):
        load("cifar10", tarball)
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 100 * 1024  # the 256 MiB member was never read into memory


def test_a_gzip_bomb_is_read_no_further_than_the_limit(tmp_path):
    from keras_cnas.data.limits import MAX_FILE_BYTES
    from keras_cnas.data.mnist import read_idx_images

    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(np.array([2051, 1, 1, 1], ">u4").tobytes())
        chunk = bytes(1 << 20)
        for _ in range(MAX_FILE_BYTES // len(chunk) + 1):
            f.write(chunk)
    with pytest.raises(DataError, match="more than the"):
        read_idx_images(path)
