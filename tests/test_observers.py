"""Search observers: the loop reports each trial to callbacks; the display is one of them."""

import logging

import numpy as np
import pytest

import keras_cnas as cnas
from keras_cnas.engine import ProcessPoolRunner, ProgressPrinter, SearchCallback
from keras_cnas.report import TensorBoardLogger
from keras_cnas.spaces import CategoricalSpace
from keras_cnas.strategies import MonteCarlo, RandomSearch
from keras_cnas.training.tabular import TabularEvaluator
from keras_cnas.trial import TrialStatus

SPACE = CategoricalSpace([3, 3, 3])
TABLE = {SPACE.from_decisions(list(d)).key(): {"acc": sum(d) / 6} for d in np.ndindex(3, 3, 3)}


class Recorder(SearchCallback):
    """Remembers every hook call, in order."""

    def __init__(self):
        self.calls, self.trials, self.progress, self.info, self.result = [], [], [], None, "unset"

    def on_search_begin(self, info):
        self.calls.append("begin")
        self.info = info

    def on_trial_end(self, trial, progress):
        self.calls.append("trial")
        self.trials.append(trial)
        self.progress.append(progress)

    def on_search_end(self, result):
        self.calls.append("end")
        self.result = result


def _search(tmp_path, callbacks, n=6, **kw):
    return cnas.search(SPACE, strategy=RandomSearch(num_samples=n),
                       evaluator=TabularEvaluator(TABLE, metric="acc"), search_dir=tmp_path,
                       callbacks=callbacks, verbose=False, tensorboard=False, **kw)


def test_a_user_callback_sees_every_finished_trial_in_order(tmp_path):
    recorder = Recorder()
    result = _search(tmp_path, [recorder])
    assert recorder.calls == ["begin"] + ["trial"] * 6 + ["end"]
    assert [t.id for t in recorder.trials] == [t.id for t in result.trials]
    assert all(t.status == TrialStatus.COMPLETED and t.score is not None for t in recorder.trials)
    assert [p.finished for p in recorder.progress] == [1, 2, 3, 4, 5, 6]
    assert recorder.progress[-1].budget == 6
    assert recorder.info.objective == "acc" and recorder.info.search_dir == tmp_path
    assert recorder.result is result


def test_a_user_callback_sees_every_trial_run_in_worker_processes(tmp_path):
    recorder = Recorder()
    result = _search(tmp_path, [recorder], n=4, runner=ProcessPoolRunner(workers=2))
    assert sorted(t.id for t in recorder.trials) == [t.id for t in result.trials] == [0, 1, 2, 3]
    assert all((tmp_path / "trials" / f"{t.id:05d}" / "result.json").is_file()
               for t in recorder.trials)  # they really ran in workers


def test_a_resumed_search_tells_observers_the_stored_trials(tmp_path):
    strategy = MonteCarlo(num_random=3, num_adaptive=0, num_full=0)
    cnas.search(SPACE, strategy=strategy, evaluator=TabularEvaluator(TABLE, metric="acc"),
                search_dir=tmp_path, max_trials=2, verbose=False, tensorboard=False)
    recorder = Recorder()
    cnas.search(SPACE, strategy=MonteCarlo(num_random=3, num_adaptive=0, num_full=0),
                evaluator=TabularEvaluator(TABLE, metric="acc"), search_dir=tmp_path,
                max_trials=3, resume=True, callbacks=[recorder], verbose=False, tensorboard=False)
    assert [t.id for t in recorder.info.trials] == [0, 1]
    assert [t.id for t in recorder.trials] == [2]
    assert recorder.progress[0].finished == 3


def test_an_interrupted_search_ends_its_observers_with_no_result(tmp_path):
    class Stop(SearchCallback):
        def on_trial_end(self, trial, progress):
            if progress.finished == 2:
                raise KeyboardInterrupt

    recorder = Recorder()
    with pytest.raises(cnas.engine.SearchInterrupted):
        _search(tmp_path, [recorder, Stop()])
    assert recorder.calls == ["begin", "trial", "trial", "end"] and recorder.result is None


def test_verbose_builds_the_progress_printer_and_callbacks_can_replace_it(tmp_path, capsys):
    _search(tmp_path / "quiet", [])
    assert capsys.readouterr().out == ""
    cnas.search(SPACE, strategy=RandomSearch(num_samples=3),
                evaluator=TabularEvaluator(TABLE, metric="acc"), search_dir=tmp_path / "loud",
                tensorboard=False)
    out = capsys.readouterr().out
    assert "[3/3] trial 2" in out and "best: trial" in out and "rank" in out
    _search(tmp_path / "given", [ProgressPrinter(verbose=True)])  # verbose=False, printer given
    assert "[6/6] trial 5" in capsys.readouterr().out  # the user's printer replaced the quiet one
    assert not (tmp_path / "given" / "tensorboard").exists()


def test_quiet_progress_goes_to_logging(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="keras_cnas.engine.callbacks"):
        _search(tmp_path, [], n=2)
    assert any("[2/2] trial 1" in r.getMessage() for r in caplog.records)


def test_tensorboard_is_an_observer(tmp_path):
    _search(tmp_path / "a", [TensorBoardLogger(tmp_path / "tb")], n=3)
    assert sorted(p.name for p in (tmp_path / "tb").iterdir() if not p.name.startswith(".")) == [
        "search", "trial_00000", "trial_00001", "trial_00002"]
    assert not (tmp_path / "a" / "tensorboard").exists()
    cnas.search(SPACE, strategy=RandomSearch(num_samples=2),
                evaluator=TabularEvaluator(TABLE, metric="acc"), search_dir=tmp_path / "b",
                verbose=False)  # tensorboard=True: the default logger
    assert (tmp_path / "b" / "tensorboard" / "trial_00001").is_dir()


def test_a_callback_that_is_not_an_observer_is_refused(tmp_path):
    with pytest.raises(TypeError, match=r"callbacks\[0\]: expected a keras_cnas.engine.SearchCallback"):
        _search(tmp_path, [print])


def test_the_engine_imports_no_display():
    import pathlib

    engine = pathlib.Path(cnas.__file__).parent / "engine"
    for path in engine.glob("*.py"):
        text = path.read_text()
        assert "keras_cnas.report" not in text.replace("keras_cnas.report.tensorboard.TensorBoardLogger", ""), path
