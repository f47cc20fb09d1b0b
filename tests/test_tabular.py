"""Table-backed evaluation and categorical cost tables: NAS-Bench-Macro, Channel-Bench-Macro."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from keras_cnas.costs import Constraints, estimate
from keras_cnas.errors import DataError, InvalidSpecError
from keras_cnas.spaces import CategoricalSpace, DescriptorSpace, Space, reference
from keras_cnas.training import (
    EVALUATORS,
    TABULAR_BENCHMARKS,
    Evaluator,
    TabularEvaluator,
    load_table,
    tabular_problem,
)
from keras_cnas.trial import Candidate, TrialStatus

TABLE = {"00": {"acc": 0.5, "runs": [0.4, 0.6], "params": 10},
         "01": {"acc": 0.7, "runs": [0.6, 0.8], "params": 20},
         "11": {"acc": 0.9, "runs": [0.8, 1.0], "params": 40}}
SPACE = CategoricalSpace([2, 2])


def _candidate(*decisions, space=SPACE):
    return Candidate(space.from_decisions(list(decisions)), "traction")


# --- TabularEvaluator --------------------------------------------------------------------


def test_lookup_returns_the_rows_numbers_as_metrics():
    ev = TabularEvaluator(TABLE, metric="acc")
    result = ev.evaluate(_candidate(0, 1))
    assert result.status == TrialStatus.COMPLETED
    assert result.metrics == {"acc": 0.7, "runs": 0.6, "params": 20}
    assert ev.score(result.metrics) == 0.7
    assert EVALUATORS.get("tabular") is TabularEvaluator


def test_list_fields_give_one_training_run_per_seed():
    ev = TabularEvaluator(TABLE, metric="runs")
    assert [ev.evaluate(_candidate(1, 1), seed=s).metrics["runs"] for s in range(3)] == [0.8, 1.0, 0.8]


def test_direction_min_negates_the_score():
    ev = TabularEvaluator(TABLE, metric="params", direction="min")
    assert ev.score(ev.evaluate(_candidate(1, 1)).metrics) == -40


def test_missing_key_is_a_failed_trial_naming_it():
    result = TabularEvaluator(TABLE, metric="acc").evaluate(_candidate(1, 0))
    assert result.status == TrialStatus.FAILED
    assert result.error == ("spec key '10' is not in the in-memory table (3 architectures); the "
                            "space and the table disagree: check decision_sizes and key_offset")


def test_config_is_json_and_rebuilds_inline_and_path_tables(tmp_path):
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"11": TABLE["00"], "12": TABLE["01"], "22": TABLE["11"]}))
    for ev in (TabularEvaluator(TABLE, metric="acc"),
               TabularEvaluator(table_path=path, metric="acc", key_offset=1)):
        again = Evaluator.from_json_config(json.loads(json.dumps(ev.to_json_config())))
        assert again.get_config() == ev.get_config()
        assert again.evaluate(_candidate(0, 1)).metrics["acc"] == 0.7
    assert TabularEvaluator(table_path=path, metric="acc", key_offset=1).get_config() == {
        "metric": "acc", "direction": "max", "table_path": str(path), "key_offset": 1}


@pytest.mark.parametrize("kwargs, error, match", [
    ({}, ValueError, "give exactly one of table= .* got neither"),
    ({"table": TABLE, "table_path": "t.json"}, ValueError, "got both"),
    ({"table": TABLE, "metric": "accuracy"}, ValueError,
     r"metric: 'accuracy' is not a field of the table's rows; row '00' has \['acc', 'params', "
     r"'runs'\]; pass one of those"),
    ({"table": TABLE, "metric": "acc", "direction": "up"}, ValueError,
     r"direction: expected one of \('min', 'max'\), got 'up'"),
    ({"table": {}, "metric": "acc"}, DataError, "must be a non-empty JSON object"),
    ({"table": TABLE, "metric": "acc", "key_offset": 1}, DataError,
     "key '00' has a choice below key_offset=1"),
    ({"table_path": "/nonexistent/t.json"}, FileNotFoundError, "table: no file at /nonexistent/t.json"),
])
def test_tabular_evaluator_validates_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        TabularEvaluator(**kwargs)


def test_load_table_rekeys_and_selects_fields(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"41": {"acc": 1.0, "flops": 5}, "12": {"acc": 2.0, "flops": 6}}))
    assert load_table(path, key_offset=1, fields=["flops"]) == {"30": {"flops": 5},
                                                                 "01": {"flops": 6}}
    with pytest.raises(DataError, match=r"table\['41'\]: has no field 'params'; its fields are"):
        load_table(path, fields=["params"])
    path.write_text("{not json")
    with pytest.raises(DataError, match="is not valid JSON"):
        load_table(path)


def test_tabular_modules_do_not_import_tensorflow():
    code = ("import sys, keras_cnas.training.tabular, keras_cnas.training;"
            "print('tensorflow' in sys.modules, 'tf_keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# --- CategoricalSpace cost tables --------------------------------------------------------


def test_categorical_costs_answer_estimate_and_constraints():
    space = CategoricalSpace([2, 2], costs=TABLE, cost_fields=["params"])
    spec = space.from_decisions([1, 1])
    assert estimate(spec, space=space).params == 40
    assert estimate(space=space, spec=spec).as_dict() == {"params": 40}
    assert not Constraints(max_params=30).satisfied(estimate(space=space, spec=spec))
    assert space.cost_table == {"00": {"params": 10}, "01": {"params": 20}, "11": {"params": 40}}


def test_categorical_costs_errors_name_the_fix():
    space = CategoricalSpace([2, 2], costs=TABLE, cost_fields=["params"])
    with pytest.raises(InvalidSpecError, match=r"key '10' is not in the space's cost table \(3 rows\)"):
        estimate(space=space, spec=space.from_decisions([1, 0]))
    plain = CategoricalSpace([2, 2])
    with pytest.raises(InvalidSpecError,
                       match=r"no analytic cost model.*pass space=CategoricalSpace\(\.\.\., costs="):
        estimate(plain.from_decisions([0, 0]))
    assert estimate(space=plain, spec=plain.from_decisions([0, 0])).as_dict() == {}  # no table: no costs
    with pytest.raises(InvalidSpecError, match=r"spec.sizes: \[3, 3\] differ"):
        estimate(space=space, spec=CategoricalSpace([3, 3]).from_decisions([0, 0]))


@pytest.mark.parametrize("kwargs, match", [
    ({"costs": TABLE}, r"costs\['00'\]\['runs'\]: expected a finite number, got \[0.4, 0.6\]; "
                       r"pass cost_fields="),
    ({"costs": {"012": {"p": 1}}}, "key '012' has 3 decisions but the space has 2"),
    ({"costs": {"21": {"p": 1}}}, r"key '21' gives decision 0 the choice '2' .* not in \[0, 1\]"
                                  r"; if the table numbers choices from 1, pass key_offset=1"),
    ({"costs": 7}, "costs: expected a mapping key -> {cost: value} or the path"),
    ({"key_offset": 1}, "cost_fields / key_offset: they describe a cost table"),
    ({"costs": TABLE, "key_offset": -1}, "key_offset: expected a non-negative integer"),
    ({"costs": TABLE, "cost_fields": "params"}, "cost_fields: expected a list of field names"),
])
def test_categorical_costs_are_checked_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CategoricalSpace([2, 2], **kwargs)


def test_categorical_space_with_costs_round_trips_through_json(tmp_path):
    path = tmp_path / "costs.json"
    path.write_text(json.dumps({"11": {"flops": 1.5}, "22": {"flops": 3.0}}))
    for space in (CategoricalSpace([2, 2], costs=TABLE, cost_fields=["params"]),
                  CategoricalSpace([2, 2], 0, costs=path, key_offset=1)):
        again = Space.from_json(space.to_json())
        assert again == space and again.cost_table == space.cost_table
    assert CategoricalSpace([2, 2], costs=path, key_offset=1).get_config() == {
        "decision_sizes": [2, 2], "empty_choice": None, "costs": str(path), "key_offset": 1}
    assert CategoricalSpace([2, 2]).get_config() == {"decision_sizes": [2, 2], "empty_choice": None}


def test_network_spaces_estimate_analytically():
    space = DescriptorSpace((32, 32, 3), 10)
    spec = reference.vgg19((32, 32, 3), 10)
    assert estimate(space=space, spec=spec) == estimate(spec) == estimate(spec, space=space)


# --- the published benchmark tables ------------------------------------------------------


def test_every_benchmark_is_covered_here():
    assert sorted(TABULAR_BENCHMARKS) == ["channel-bench-macro-mobilenet",
                                          "channel-bench-macro-resnet", "nas-bench-macro"]


def test_nas_bench_macro_problem(shared_data):
    space, ev = tabular_problem("nas-bench-macro", shared_data)
    assert space.decision_sizes() == [3] * 8 and space.empty_choice == 0
    spec = space.from_decisions([0, 2, 0, 1, 2, 1, 0, 0])
    result = ev.evaluate(Candidate(spec))
    assert result.metrics["mean_acc"] == pytest.approx(89.19666544596355)
    assert result.metrics["test_acc"] == pytest.approx(89.47000122070312)  # run 0 for seed 0
    assert ev.score(result.metrics) == pytest.approx(89.19666544596355)
    costs = estimate(space=space, spec=spec)
    assert (costs.params, costs.flops) == (890666, 47327744)
    # The table's params/flops are the analytic model's trainable params and MAdds.
    analytic = estimate(reference.nas_bench_macro_space().genotype([0, 2, 0, 1, 2, 1, 0, 0]))
    assert (analytic.trainable_params, analytic.madds) == (costs.params, costs.flops)


@pytest.mark.parametrize("name", ["channel-bench-macro-mobilenet", "channel-bench-macro-resnet"])
def test_channel_bench_macro_maps_decisions_0_to_3_onto_digits_1_to_4(shared_data, name):
    space, ev = tabular_problem(name, shared_data)
    assert space.decision_sizes() == [4] * 7 and space.empty_choice is None
    raw = json.loads((shared_data / TABULAR_BENCHMARKS.get(name).path).read_text())
    spec = space.from_decisions([3, 3, 2, 1, 1, 0, 3])  # the table's key "4432214"
    assert ev.evaluate(Candidate(spec)).metrics["mean"] == raw["4432214"]["mean"]
    assert estimate(space=space, spec=spec).params == raw["4432214"]["params"]
    assert len(space.cost_table) == len(ev.table) == 4 ** 7


@pytest.mark.parametrize("name", sorted(TABULAR_BENCHMARKS.names()))
def test_every_architecture_of_a_benchmark_space_is_in_its_table(shared_data, name):
    space, ev = tabular_problem(name, shared_data)
    rng = np.random.default_rng(0)
    for _ in range(200):
        candidate = Candidate(space.sample(rng))
        assert ev.evaluate(candidate).status == TrialStatus.COMPLETED
        assert estimate(space=space, spec=candidate.spec).flops > 0
    again = Evaluator.from_json_config(json.loads(json.dumps(ev.to_json_config())))
    assert again.get_config() == ev.get_config()
    assert Space.from_json(space.to_json()) == space


def test_tabular_problem_errors(shared_data, tmp_path):
    with pytest.raises(KeyError, match="unknown tabular benchmark 'nasbench'; known tabular "
                                       "benchmarks: channel-bench-macro-mobilenet"):
        tabular_problem("nasbench", shared_data)
    with pytest.raises(FileNotFoundError, match="data_dir: no nas-bench-macro/"):
        tabular_problem("nas-bench-macro", tmp_path)


# --- benchmarks/tabular.py -----------------------------------------------------------------


@pytest.fixture(scope="module")
def bench():
    """The benchmark program as a module (its absl flags are defined once)."""
    import importlib.util

    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "tabular.py"
    spec = importlib.util.spec_from_file_location("tabular_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shuffled_copy_relabels_each_decision_and_keeps_the_empty_choice(bench, shared_data, tmp_path):
    copy = bench.shuffled_copy("nas-bench-macro", str(shared_data), tmp_path, seed=0)
    assert copy.ordered is False and copy.empty_choice == 0
    space, evaluator = copy.problem(shared_data)
    original_space, original = tabular_problem("nas-bench-macro", shared_data)
    assert not any(space.ordered_decisions()) and all(original_space.ordered_decisions())
    rows = sorted(json.dumps(r, sort_keys=True) for r in evaluator.table.values())
    assert rows == sorted(json.dumps(r, sort_keys=True) for r in original.table.values())
    assert evaluator.table["00000000"] == original.table["00000000"]  # empty stays empty
    moved = sum(evaluator.table[k] != original.table[k] for k in original.table)
    assert moved > len(original.table) // 2


def test_anytime_strategies_first_n_trials_equal_a_run_with_max_trials_n(bench, shared_data):
    """Why the benchmark may run an ANYTIME strategy once at the largest N."""
    _, _, bound, _ = bench.budgets("nas-bench-macro", str(shared_data))[1]
    for strategy in sorted(bench.ANYTIME - {"reinforce"}):  # reinforce: a TF LSTM, slow here
        runs = {}
        for n in (15, 30):
            job = ("nas-bench-macro", "original", str(shared_data), "", "params", bound, strategy, n, 3)
            runs[n] = bench.run_one(job)[1]
        assert len(runs[30]) == 30 and runs[30][:15] == runs[15], strategy


def test_from_json_merges_runs_and_refuses_ones_that_disagree(bench, tmp_path):
    """--from_json puts earlier runs side by side; the reference both ran must agree."""
    def figure(strategy, regret):
        return {"table": "t", "labels": "original", "cost": "params", "quantile": 0.1,
                "bound": 10.0, "best_feasible": 1.0, "queries": 50, "strategy": strategy,
                "mean_regret": regret, "ci95": 0.1, "seeds": 20, "mean_trials": 50.0}

    paths = []
    for i, figures in enumerate(([figure("random", 0.4), figure("evolution", 0.3)],
                                 [figure("random", 0.4), figure("bayesopt", 0.1)],
                                 [figure("random", 0.5)],
                                 [{**figure("random", 0.45), "seeds": 8}])):
        paths.append(tmp_path / f"run{i}.json")
        paths[-1].write_text(json.dumps(figures))
    merged = bench.merge_figures([str(p) for p in (paths[0], paths[1], paths[3])])
    assert sorted(f["strategy"] for f in merged) == ["bayesopt", "evolution", "random"]
    # Over fewer seeds a figure may differ; the one over more seeds is kept.
    assert [f["mean_regret"] for f in merged if f["strategy"] == "random"] == [0.4]
    with pytest.raises(bench.app.UsageError, match="--from_json: .*run2.json disagrees"):
        bench.merge_figures([str(p) for p in paths[:3]])


def test_runs_log_resumes_a_stopped_run_and_reports_its_complete_seeds(shared_data, tmp_path):
    """A rerun skips the searches in --runs_log; --report_only reports the seeds it has."""
    program = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "tabular.py"
    log = tmp_path / "runs.jsonl"

    def run(*flags):
        done = subprocess.run(
            [sys.executable, str(program), f"--data_dir={shared_data}", "--queries=20",
             "--problems=nas-bench-macro", "--strategies=random", "--copies=original",
             "--workers=1", f"--runs_log={log}", *flags],
            capture_output=True, text=True, timeout=300, check=True)
        return done.stdout

    assert run("--seeds=1").startswith("6 searches on 1 processes (0 of 6 in")
    assert len(log.read_text().splitlines()) == 6
    assert run("--seeds=1").startswith("0 searches on 1 processes (6 of 6 in")
    report = run("--seeds=2", "--report_only")
    assert '"seeds": {"random": 1}' in report and "over 1 seeds" in report
    assert len(log.read_text().splitlines()) == 6
