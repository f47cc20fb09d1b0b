"""TrialStore: one SQLite file, trial and strategy state written together."""

import json
import sqlite3

import pytest

from keras_cnas.engine.store import TrialStore
from keras_cnas.spaces import CategoricalSpace
from keras_cnas.trial import Candidate, EvaluationResult, Trial, TrialStatus

SPACE = CategoricalSpace([3, 3])


def _candidate(a=0, b=1, fidelity="traction"):
    return Candidate(SPACE.from_decisions([a, b]), fidelity, "random", {"move": "sample"})


def test_created_trials_get_sequential_ids_and_are_running(tmp_path):
    with TrialStore(tmp_path / "trials.db") as store:
        ids = [store.create(_candidate(a)).id for a in range(3)]
        assert ids == [0, 1, 2]
        assert [t.status for t in store.trials()] == [TrialStatus.RUNNING] * 3
        assert store.get(1).spec == SPACE.from_decisions([1, 1])
        assert store.get(1).info == {"move": "sample"} and store.get(1).fidelity == "traction"


def test_finished_trial_round_trips_every_field(tmp_path):
    with TrialStore(tmp_path / "trials.db") as store:
        trial = store.create(_candidate())
        trial.status, trial.score = TrialStatus.COMPLETED, -0.25
        trial.metrics = {"objective": 0.25, "val_accuracy": 0.9}
        trial.costs = {"params": 123, "train_seconds": 1.5}
        trial.timings["seconds"] = 1.5
        store.update(trial, strategy_state={"best": 0})
    with TrialStore(tmp_path / "trials.db") as store:  # reopened: all on disk
        again = store.get(trial.id)
        assert again.to_dict() == trial.to_dict()
        assert store.load_state("strategy") == {"best": 0}
        assert store.count(TrialStatus.COMPLETED) == 1 and store.count() == 1


def test_nan_metrics_are_stored_as_null_not_invalid_json(tmp_path):
    with TrialStore(tmp_path / "trials.db") as store:
        trial = store.create(_candidate())
        trial.status, trial.metrics, trial.error = TrialStatus.FAILED, {"loss": float("nan")}, "NaN loss"
        store.update(trial)
        assert store.get(trial.id).metrics == {"loss": None}


def test_unfinished_trials_are_those_still_running_after_a_stop(tmp_path):
    path = tmp_path / "trials.db"
    with TrialStore(path) as store:
        done = store.create(_candidate(0))
        store.create(_candidate(1))
        done.status = TrialStatus.COMPLETED
        store.update(done)
    with TrialStore(path) as store:
        assert [t.id for t in store.unfinished()] == [1]


def test_strategy_state_and_trial_are_written_in_one_transaction(tmp_path):
    """A failure inside the transaction leaves neither the trial nor the state changed."""
    with TrialStore(tmp_path / "trials.db") as store:
        trial = store.create(_candidate(), strategy_state={"step": 1})
        trial.status = TrialStatus.COMPLETED
        with pytest.raises(TypeError):
            store.update(trial, strategy_state={"step": object()})  # not JSON
        assert store.get(trial.id).status == TrialStatus.RUNNING
        assert store.load_state("strategy") == {"step": 1}


def test_other_processes_can_read_while_a_search_writes(tmp_path):
    path = tmp_path / "trials.db"
    with TrialStore(path) as store:
        store.create(_candidate())
        reader = sqlite3.connect(path)
        assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = reader.execute("SELECT id, status, spec_json, metrics_json, costs_json FROM trials").fetchall()
        assert rows[0][0] == 0 and json.loads(rows[0][2])["space"] == "categorical"
        reader.close()


def test_update_of_an_unknown_trial_is_an_error(tmp_path):
    with TrialStore(tmp_path / "trials.db") as store:
        with pytest.raises(KeyError, match="trial 7 is not in"):
            store.update(Trial(7, SPACE.from_decisions([0, 0])))


def test_evaluation_result_json_round_trip():
    result = EvaluationResult({"objective": 1.0}, {"train_seconds": 2.0}, TrialStatus.FAILED, "why")
    assert EvaluationResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
