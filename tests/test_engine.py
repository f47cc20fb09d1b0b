"""The search engine: constraints, persistence, resume, runners, finishing."""

import dataclasses
import json
import threading

import numpy as np
import pytest

import keras_cnas as cnas
from keras_cnas.engine import InProcessRunner, ProcessPoolRunner, SearchDirError, TrialStore
from keras_cnas.spaces import CategoricalSpace
from keras_cnas.strategies import (
    RCAS,
    BayesOpt,
    LocalSearch,
    MonteCarlo,
    RandomSearch,
    RegularizedEvolution,
)
from keras_cnas.training.tabular import TabularEvaluator
from keras_cnas.trial import TrialStatus

SIZES = [4, 4, 4, 4]


def _table():
    """A separable toy benchmark: accuracy peaks at (3, 1, 2, 0); params grow with the sum."""
    space = CategoricalSpace(SIZES)
    table, costs = {}, {}
    for d in np.ndindex(*SIZES):
        key = space.from_decisions(list(d)).key()
        table[key] = {"acc": 1.0 - 0.05 * sum(abs(a - b) for a, b in zip(d, (3, 1, 2, 0)))}
        costs[key] = {"params": 1000 * (1 + sum(d)), "flops": 10.0 * (1 + d[0])}
    return table, costs


TABLE, COSTS = _table()


def _problem():
    return CategoricalSpace(SIZES, costs=COSTS), TabularEvaluator(TABLE, metric="acc")


def test_every_completed_trial_meets_the_hard_constraints(tmp_path):
    space, evaluator = _problem()
    budget = cnas.Constraints(max_params=6000)
    result = cnas.search(space, budget, strategy=RandomSearch(num_samples=40), evaluator=evaluator,
                         search_dir=tmp_path, verbose=False)
    assert len(result.trials) == 40
    assert all(t.status == TrialStatus.COMPLETED for t in result.trials)
    assert all(t.costs["params"] <= 6000 for t in result.trials)
    assert result.best.costs["params"] <= 6000 and result.best.metrics["acc"] == max(
        t.metrics["acc"] for t in result.trials)


def test_summary_json_has_best_pareto_front_counts_and_config(tmp_path):
    space, evaluator = _problem()
    cnas.search(space, cnas.Constraints(max_params=9000), strategy=RandomSearch(num_samples=30),
                evaluator=evaluator, search_dir=tmp_path, verbose=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["num_trials"] == 30 and summary["status_counts"] == {"COMPLETED": 30}
    assert summary["best"]["metrics"]["acc"] == max(
        t.metrics["acc"] for t in TrialStore(tmp_path / "trials.db").trials())
    front = summary["pareto_front"]["params"]
    assert [p["params"] for p in front] == sorted(p["params"] for p in front)
    assert [p["accuracy"] for p in front] == sorted(p["accuracy"] for p in front)
    assert summary["config"]["constraints"] == {"max_params": 9000}
    assert summary["config"]["strategy"]["name"] == "random"
    assert json.loads((tmp_path / "best" / "spec.json").read_text())["space"] == "categorical"


def test_max_trials_counts_evaluated_trials_and_defaults_to_the_strategys_phases(tmp_path):
    space, evaluator = _problem()
    result = cnas.search(space, strategy=MonteCarlo(num_random=5, num_adaptive=5, num_full=2),
                         evaluator=evaluator, search_dir=tmp_path / "a", verbose=False)
    assert len(result.trials) == 12
    result = cnas.search(space, strategy=MonteCarlo(num_random=5, num_adaptive=5, num_full=2),
                         evaluator=evaluator, max_trials=7, search_dir=tmp_path / "b", verbose=False)
    assert len(result.trials) == 7


@pytest.mark.parametrize("make", [RandomSearch, RegularizedEvolution, MonteCarlo, BayesOpt,
                                  LocalSearch, lambda: RCAS()])
def test_max_trials_is_each_strategys_budget_and_it_spends_all_of_it(tmp_path, make):
    space, evaluator = CategoricalSpace(SIZES, 0, costs=COSTS), TabularEvaluator(TABLE, metric="acc")
    result = cnas.search(space, strategy=make(), evaluator=evaluator, max_trials=120,
                         search_dir=tmp_path, verbose=False, tensorboard=False)
    assert len(result.trials) == 120
    assert json.loads((tmp_path / "summary.json").read_text())["ended_early"] is None


def test_montecarlo_with_three_trials_still_ends_at_full_fidelity(tmp_path):
    space, evaluator = _problem()
    result = cnas.search(space, strategy=MonteCarlo(), evaluator=evaluator, max_trials=3,
                         search_dir=tmp_path, verbose=False, tensorboard=False)
    assert [t.phase for t in result.trials] == ["random", "adaptive", "full"]
    assert result.best.fidelity == "full"


def test_a_strategy_that_ends_early_says_so_in_the_output_and_the_summary(tmp_path, capsys):
    space = CategoricalSpace([2, 2])  # 4 architectures, fewer than the budget
    table = {k: {"acc": 0.5} for k in ("00", "01", "10", "11")}
    cnas.search(space, strategy=RandomSearch(), evaluator=TabularEvaluator(table, metric="acc"),
                max_trials=10, search_dir=tmp_path, tensorboard=False)
    out = capsys.readouterr().out
    assert "random ended after 4 of 10 trials: no unseen feasible spec found" in out
    ended = json.loads((tmp_path / "summary.json").read_text())["ended_early"]
    assert ended["trials"] == 4 and ended["budget"] == 10 and "exhausted" in ended["reason"]


def test_montecarlo_finds_the_known_optimum_through_the_engine(tmp_path):
    space, evaluator = _problem()
    result = cnas.search(space, strategy=MonteCarlo(num_random=10, num_adaptive=40, num_full=0),
                         evaluator=evaluator, search_dir=tmp_path, verbose=False)
    assert result.best.spec.decisions == (3, 1, 2, 0)


def test_resumed_search_equals_the_uninterrupted_one(tmp_path):
    """Strategy state (RNG included) and trials persist, so stopping after 10 trials and
    resuming to 25 gives exactly the trials of one 25-trial run."""
    space, evaluator = _problem()
    budget = cnas.Constraints(max_params=8000)
    whole = cnas.search(space, budget, strategy=RegularizedEvolution(population_size=6, sample_size=3),
                        evaluator=evaluator, max_trials=25, search_dir=tmp_path / "whole", verbose=False)
    cnas.search(space, budget, strategy=RegularizedEvolution(population_size=6, sample_size=3),
                evaluator=evaluator, max_trials=10, search_dir=tmp_path / "split", verbose=False)
    resumed = cnas.search(space, budget, strategy=RegularizedEvolution(population_size=6, sample_size=3),
                          evaluator=evaluator, max_trials=25, search_dir=tmp_path / "split",
                          resume=True, verbose=False)
    assert [t.spec for t in resumed.trials] == [t.spec for t in whole.trials]
    assert [t.id for t in resumed.trials] == list(range(25))


def test_a_search_dir_holding_a_search_is_refused_without_resume_or_overwrite(tmp_path):
    space, evaluator = _problem()
    run = lambda **kw: cnas.search(space, strategy=RandomSearch(num_samples=5), evaluator=evaluator,
                                   search_dir=tmp_path, verbose=False, **kw)
    run()
    with pytest.raises(SearchDirError, match=r"already holds a search \(5 trials\); pass resume=True"):
        run()
    assert len(run(overwrite=True).trials) == 5
    with pytest.raises(SearchDirError, match=r"holds a different search \(its strategy\."):
        cnas.search(space, strategy=RandomSearch(num_samples=9), evaluator=evaluator,
                    search_dir=tmp_path, resume=True, verbose=False)


def test_impossible_constraints_stop_with_the_cheapest_cost_seen(tmp_path):
    space, evaluator = _problem()
    with pytest.raises(cnas.InfeasibleConstraintsError,
                       match=r"max_params.*cheapest costs seen: params 1,000 vs max_params=10"):
        cnas.search(space, cnas.Constraints(max_params=10), strategy=RandomSearch(),
                    evaluator=evaluator, search_dir=tmp_path, verbose=False)


def test_a_bound_on_a_cost_nothing_reports_lists_the_available_ones(tmp_path):
    space, evaluator = _problem()
    with pytest.raises(cnas.UnknownCostError, match=r"max_latency_ms.*available: max_flops, max_params"):
        cnas.search(space, cnas.Constraints(max_latency_ms=5), evaluator=evaluator,
                    search_dir=tmp_path, verbose=False)


def test_progress_lines_and_top_table_are_printed(tmp_path, capsys):
    space, evaluator = _problem()
    cnas.search(space, strategy=RandomSearch(num_samples=3), evaluator=evaluator, search_dir=tmp_path)
    out = capsys.readouterr().out
    assert "[1/3] trial 0 random/full: acc " in out and "ETA" in out
    assert "rank    id phase" in out and "best: trial" in out


# --- with real training on digits -------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return cnas.data.load("digits")


def _small_descriptor_space(digits):
    return cnas.spaces.DescriptorSpace(digits.input_shape, digits.num_classes, max_conv_layers=2,
                                       max_filters=8, max_fc_layers=1, max_hidden=16)


def test_measured_cost_over_its_bound_makes_the_trial_infeasible(tmp_path, digits):
    evaluator = cnas.training.KerasEvaluator(digits, traction_epochs=1, full_epochs=1)
    result = cnas.search(_small_descriptor_space(digits), cnas.Constraints(max_train_seconds=1e-3),
                         strategy=RandomSearch(num_samples=2), evaluator=evaluator,
                         search_dir=tmp_path, verbose=False)
    assert [t.status for t in result.trials] == [TrialStatus.INFEASIBLE] * 2
    assert all(t.error.startswith("measured: train_seconds = ") for t in result.trials)
    assert result.best is None


def test_a_trial_whose_loss_goes_nan_fails_and_the_search_completes(tmp_path, digits):
    # A learning rate of 1e30 makes every run diverge to a NaN loss within a few steps.
    evaluator = cnas.training.KerasEvaluator(digits, traction_epochs=2, full_epochs=2,
                                             learning_rate=1e30)
    result = cnas.search(_small_descriptor_space(digits), strategy=RandomSearch(num_samples=2),
                         evaluator=evaluator, search_dir=tmp_path, verbose=False)
    assert [t.status for t in result.trials] == [TrialStatus.FAILED] * 2
    assert all("nan" in t.error or "non-finite" in t.error for t in result.trials)
    assert json.loads((tmp_path / "summary.json").read_text())["status_counts"] == {"FAILED": 2}


def test_best_model_is_retrained_on_train_plus_validation_and_saved(tmp_path, digits):
    evaluator = cnas.training.KerasEvaluator(digits, traction_epochs=1, full_epochs=3, batch_size=32)
    result = cnas.search(_small_descriptor_space(digits), strategy=RandomSearch(num_samples=2),
                         evaluator=evaluator, search_dir=tmp_path, verbose=False)
    assert sorted(p.name for p in (tmp_path / "best").iterdir()) >= ["costs.json", "metrics.json",
                                                                     "model.keras", "spec.json"]
    model = result.best_model()
    assert model.count_params() == result.best.costs["params"]
    assert 0.0 <= result.best_metrics["test_accuracy"] <= 1.0


def test_process_pool_runs_trials_in_worker_processes(tmp_path, digits):
    evaluator = cnas.training.KerasEvaluator(digits, traction_epochs=1, full_epochs=1)
    result = cnas.search(_small_descriptor_space(digits), strategy=RandomSearch(num_samples=4),
                         evaluator=evaluator, runner=ProcessPoolRunner(workers=2),
                         search_dir=tmp_path, finalize=False, verbose=False)
    assert [t.status for t in result.trials] == [TrialStatus.COMPLETED] * 4
    for t in result.trials:  # each trial ran in its own worker, which left its log and result
        assert (tmp_path / "trials" / f"{t.id:05d}" / "result.json").is_file()
    assert (tmp_path / "cache").is_dir()  # the in-memory dataset reached the workers as .npz


def test_a_worker_killed_mid_trial_is_requeued_once(tmp_path, digits):
    evaluator = cnas.training.KerasEvaluator(digits, traction_epochs=3, full_epochs=3)
    runner = ProcessPoolRunner(workers=1, poll_seconds=0.05)
    killed = []

    def kill_first_worker():
        import os
        import signal
        import time

        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            for trial_id, pid in runner.pids().items():
                os.kill(pid, signal.SIGKILL)
                killed.append(trial_id)
                break
            time.sleep(0.05)

    thread = threading.Thread(target=kill_first_worker, daemon=True)
    thread.start()
    result = cnas.search(_small_descriptor_space(digits), strategy=RandomSearch(num_samples=2),
                         evaluator=evaluator, runner=runner, search_dir=tmp_path, finalize=False,
                         verbose=False)
    thread.join(timeout=5)
    assert killed == [0]
    assert [t.status for t in result.trials] == [TrialStatus.COMPLETED] * 2
    assert result.trials[0].attempts == 1 and result.trials[1].attempts == 0


def test_in_process_runner_is_deterministic_for_a_seed(tmp_path, digits):
    def run(path):
        evaluator = cnas.training.KerasEvaluator(digits, traction_epochs=1, full_epochs=1)
        return cnas.search(_small_descriptor_space(digits), strategy=RandomSearch(num_samples=2),
                           evaluator=evaluator, runner=InProcessRunner(), search_dir=path,
                           finalize=False, seed=3, verbose=False)

    a, b = run(tmp_path / "a"), run(tmp_path / "b")
    assert [t.spec for t in a.trials] == [t.spec for t in b.trials]
    assert [t.metrics["val_loss"] for t in a.trials] == pytest.approx(
        [t.metrics["val_loss"] for t in b.trials], rel=1e-5)


def test_ensemble_of_the_best_trials_votes_on_the_test_split(tmp_path, digits):
    evaluator = cnas.training.KerasEvaluator(digits, traction_epochs=2, full_epochs=2, batch_size=32,
                                             save_models=True)
    result = cnas.search(_small_descriptor_space(digits), strategy=RandomSearch(num_samples=3),
                         evaluator=evaluator, search_dir=tmp_path, finalize=False, verbose=False)
    ensemble = result.ensemble(2)
    assert len(ensemble) == 2
    assert 0.0 <= ensemble.evaluate(digits.x_test, digits.y_test)["accuracy"] <= 1.0
    assert ensemble.predict(digits.x_test[:5]).shape == (5,)


def test_ensemble_without_saved_models_says_how_to_save_them(tmp_path):
    space, evaluator = _problem()
    result = cnas.search(space, strategy=RandomSearch(num_samples=2), evaluator=evaluator,
                         search_dir=tmp_path, verbose=False)
    with pytest.raises(FileNotFoundError, match="save_models=True"):
        result.ensemble(2)


class _MeasuredTable(TabularEvaluator):
    """The toy table, with an 'arena' measured after each trial (100 bytes per decision)."""

    reported_costs = ("arena_bytes", "tflite_bytes")

    def evaluate(self, candidate, *, seed=0, workdir=None):
        result = super().evaluate(candidate, seed=seed, workdir=workdir)
        size = 1000 + 100 * sum(candidate.spec.decisions)
        return dataclasses.replace(result, costs={"arena_bytes": size, "tflite_bytes": 2 * size})


def test_a_search_where_no_trial_meets_a_measured_bound_says_which_and_the_closest(tmp_path):
    space = CategoricalSpace(SIZES, costs=COSTS)
    budget = cnas.Constraints(max_arena_bytes=900)
    result = cnas.search(space, budget, strategy=RandomSearch(num_samples=5),
                         evaluator=_MeasuredTable(TABLE, metric="acc"), search_dir=tmp_path,
                         verbose=False)
    assert result.best is None
    closest = min(result.trials, key=lambda t: t.costs["arena_bytes"])
    assert result.no_best.startswith("no trial met the bounds: 5 of 5 trials broke max_arena_bytes")
    assert f"the closest, trial {closest.id}, has arena_bytes = " in result.no_best
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["best"] is None and summary["no_best"] == result.no_best
    with pytest.raises(cnas.NoBestTrialError, match="has no best trial: no trial met the bounds"):
        result.best_model()


def test_bounded_arena_and_flash_are_shown_in_kib_and_get_pareto_fronts(tmp_path, capsys):
    space = CategoricalSpace(SIZES, costs=COSTS)
    budget = cnas.Constraints(max_arena_bytes=64 * 1024, max_tflite_bytes=256 * 1024)
    result = cnas.search(space, budget, strategy=RandomSearch(num_samples=3),
                         evaluator=_MeasuredTable(TABLE, metric="acc"), search_dir=tmp_path)
    out = capsys.readouterr().out
    first = result.trials[0].costs
    assert f"arena {first['arena_bytes'] / 1024:.1f}KiB flash {first['tflite_bytes'] / 1024:.1f}KiB" in out
    assert "eq6 w+a" in out and " memory" not in out and "mem " not in out
    assert {"arena_bytes", "tflite_bytes"} <= set(result.pareto_front)
    point = result.pareto_front["arena_bytes"][0]
    assert point["kib"] == round(point["arena_bytes"] / 1024, 3)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["bounded_costs"]["arena_bytes"]["bound_kib"] == 64.0
    assert summary["bounded_costs"]["tflite_bytes"]["best"] == result.best.costs["tflite_bytes"]
