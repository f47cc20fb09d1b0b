"""HyperSpace: KerasTuner's hp API, discovery, named-value specs, costs from the built model."""

import json

import numpy as np
import pytest

import hypermodels
import keras_cnas as cnas
import test_strategies as toy
from keras_cnas.errors import InvalidSpecError, UnknownCostError
from keras_cnas.spaces import HyperParameters, HyperSpace, HyperSpec, spec_from_json
from keras_cnas.strategies import RandomSearch
from keras_cnas.trial import TrialStatus


# --- the hp object: KerasTuner's meaning ---------------------------------------------------

def test_first_call_defines_and_returns_the_default_later_calls_the_chosen_value():
    hp = HyperParameters()
    assert hp.Int("units", 32, 128, step=32) == 32          # KerasTuner: min_value
    assert hp.Float("rate", 0.1, 0.5) == 0.1
    assert hp.Choice("act", ["relu", "tanh"]) == "relu"     # the first value
    assert hp.Boolean("bn") is False
    assert hp.Fixed("classes", 10) == 10
    assert hp.Int("units", 32, 128, step=32) == 32 and hp["units"] == 32
    chosen = HyperParameters({"units": 96, "act": "tanh"})
    assert chosen.Int("units", 32, 128, step=32) == 96
    assert chosen.Choice("act", ["relu", "tanh"]) == "tanh"


def test_value_sets_follow_kerastuners_step_and_sampling_rules():
    hp = HyperParameters()
    hp.Int("a", 32, 128, step=32)
    hp.Int("b", 8, 64, step=2, sampling="log")        # log: step multiplies
    hp.Float("c", 1e-4, 1e-2, sampling="log")          # no step: a geometric grid
    hp.Float("d", 0.0, 0.5, step=0.1)
    hp.Choice("e", [3, 5, 7])
    hp.Choice("f", ["x", "y"])
    hp.Choice("g", [64, 16, 32], ordered=False)
    by = {h.name: h for h in hp.space}
    assert by["a"].values == (32, 64, 96, 128)
    assert by["b"].values == (8, 16, 32, 64)
    assert len(by["c"].values) == 10 and by["c"].values[0] == 1e-4 and by["c"].values[-1] == 1e-2
    assert np.allclose(np.diff(np.log(by["c"].values)), np.log(10) * 2 / 9)
    assert by["d"].values == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    assert [by[n].ordered for n in "abcdefg"] == [True, True, True, True, True, False, False]
    # A default inside the range but off the grid joins it, as KerasTuner accepts it.
    assert hp.Float("h", 0.0, 1.0, default=0.25) == 0.25
    assert 0.25 in {h.name: h for h in hp.space}["h"].values


def test_a_conditional_hyperparameter_is_none_while_its_parent_does_not_select_it():
    hp = HyperParameters({"model": "mlp"})
    hp.Choice("model", ["cnn", "mlp"])
    with hp.conditional_scope("model", ["cnn"]):
        assert hp.Int("filters", 8, 32, step=8) is None
    assert hp.Int("units", 8, 16, step=8, parent_name="model", parent_values=["mlp"]) == 8
    assert not hp.is_active("filters") and hp.is_active("units")


@pytest.mark.parametrize("call, message", [
    (lambda hp: hp.conditional_scope("nope", [1]).__enter__(), "'nope' is not defined yet"),
    (lambda hp: hp.Int("x", 5, 1), "max_value 1 is below min_value 5"),
    (lambda hp: hp.Int("x", 0, 9, sampling="log"), "needs min_value > 0"),
    (lambda hp: hp.Choice("x", [1, "a"]), "one type"),
    (lambda hp: hp.Choice("x", ["a", "b"], ordered=True), "ordered=True needs numeric"),
    (lambda hp: hp.Int("x", 1, 4, default=7), "7 is not one of"),
])
def test_bad_hyperparameters_say_what_is_wrong(call, message):
    with pytest.raises((ValueError, InvalidSpecError), match=message):
        call(HyperParameters())


# --- the space -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def space():
    return HyperSpace(hypermodels.build_small_cnn, input_shape=(8, 8, 1), num_classes=10)


def test_discovery_finds_hyperparameters_that_only_some_values_ask_for(space):
    names = [h.name for h in space.hyperparameters]
    # filters_1 only exists for conv_layers=2; rate only inside the dropout scope.
    assert names == ["conv_layers", "filters_0", "dropout", "units", "filters_1", "rate"]
    assert space.decision_sizes() == [2, 3, 2, 4, 3, 3]
    assert space.build_fn == "hypermodels:build_small_cnn"


def test_specs_hold_only_active_values_by_name_and_round_trip_through_json(space):
    spec = space.spec({"conv_layers": 1, "dropout": False, "filters_1": 16, "rate": 0.5})
    # As in KerasTuner, only a conditional scope makes a value inactive: filters_1 (asked
    # for in a loop) stays, rate (in the dropout scope) goes.
    assert spec.as_dict() == {"conv_layers": 1, "filters_0": 4, "dropout": False, "units": 16,
                              "filters_1": 16}
    assert spec == space.spec({"conv_layers": 1, "dropout": False, "filters_1": 16})
    assert json.loads(spec.to_json())["values"] == spec.as_dict()
    assert spec_from_json(spec.to_json()) == spec
    on = space.spec({"dropout": True, "rate": 0.3})
    assert on.as_dict()["rate"] == 0.3
    with pytest.raises(InvalidSpecError, match="unknown hyperparameter"):
        space.spec({"filterz": 3})
    with pytest.raises(InvalidSpecError, match="0.2 is not one of"):
        space.spec({"rate": 0.2})


def test_the_space_rebuilds_from_its_config_without_calling_the_function(space):
    again = cnas.spaces.Space.from_json(space.to_json())
    assert again == space and again.hyperparameters == space.hyperparameters


def test_mutations_step_ordered_values_and_change_one_active_decision(space):
    spec = space.spec({"conv_layers": 2, "filters_0": 8, "units": 32})
    details = {m.detail for m in space.mutations(spec, np.random.default_rng(0))}
    assert {"filters_0: 8 -> 4", "filters_0: 8 -> 16", "units: 32 -> 16", "units: 32 -> 48",
            "conv_layers: 2 -> 1"} <= details
    assert not any(d.startswith("rate") for d in details)  # inactive: dropout is off
    for m in space.mutations(spec, np.random.default_rng(0)):
        space.validate(m.spec)


def test_costs_come_from_the_built_model_exactly(space):
    from keras_cnas.builders import build_model
    from keras_cnas.compression import model_costs

    rng = np.random.default_rng(1)
    for _ in range(5):
        spec = space.sample(rng)
        model = build_model(spec)
        report = cnas.estimate(spec)
        assert report.params == model.count_params()
        assert report == model_costs(model)


def test_a_layer_the_cost_code_cannot_price_is_named_when_its_cost_is_bounded(tmp_path):
    lstm = HyperSpace(hypermodels.build_lstm, (8, 8, 1), 10)
    assert cnas.estimate(lstm.default_spec()).params > 0  # params are always known
    evaluator = cnas.training.KerasEvaluator(cnas.data.load("digits"), traction_epochs=1)
    with pytest.raises(UnknownCostError, match=r"max_madds.*layer 'lstm.*' \(LSTM\)"):
        cnas.search(lstm, cnas.Constraints(max_madds=1e5), evaluator=evaluator,
                    search_dir=tmp_path, verbose=False)


def _local_build_fn():
    def build(hp):
        return None
    return build


@pytest.mark.parametrize("fn, message", [
    (lambda hp: None, "a lambda cannot be imported"),
    (_local_build_fn(), "defined inside another function"),
    ("no_such_module_xyz:build", "cannot import 'no_such_module_xyz'"),
    ("hypermodels:no_such_fn", "has no 'no_such_fn'"),
    ("hypermodels", "expected 'module:attribute'"),
])
def test_build_functions_workers_cannot_import_are_refused_clearly(fn, message):
    with pytest.raises(ValueError, match=message):
        HyperSpace(fn, (8, 8, 1), 10)


def test_a_build_function_failing_with_its_defaults_says_so():
    with pytest.raises(ValueError, match="raised with its default values: ValueError"):
        HyperSpace("hypermodels:build_broken", (8, 8, 1), 10)


# --- searching it --------------------------------------------------------------------------

def test_a_params_cap_rejects_oversized_models_before_training(space, tmp_path):
    digits = cnas.data.load("digits")
    cap = 20000
    evaluator = cnas.training.KerasEvaluator(digits, traction_epochs=1, full_epochs=1,
                                             objective="val_accuracy")
    result = cnas.search(space, cnas.Constraints(max_params=cap),
                         strategy=RandomSearch(num_samples=3), evaluator=evaluator,
                         search_dir=tmp_path, finalize=False, verbose=False)
    assert [t.status for t in result.trials] == [TrialStatus.COMPLETED] * 3
    assert all(t.costs["params"] <= cap and t.metrics["params"] == t.costs["params"]
               for t in result.trials)
    assert result.summary["rejected_proposals"] > 0  # oversized samples were never trained
    assert result.summary["objective"] == {"name": "val_accuracy", "direction": "max"}
    scores = [t.score for t in result.trials]
    assert scores == [t.metrics["val_accuracy"] for t in result.trials]  # maximised as is
    best = result.get_best_specs(2)
    assert best[0] == max(result.trials, key=lambda t: t.score).spec
    text = result.summary()
    assert "objective: val_accuracy (maximised)" in text and "conv_layers=" in text


def test_a_compiled_build_function_keeps_its_optimizer_and_learning_rate(tmp_path):
    """KerasTuner's convention: build(hp) compiles, here with a searched learning rate."""
    space = HyperSpace(hypermodels.build_compiled, (8, 8, 1), 10)
    spec = space.spec({"lr": space.hyperparameters[2].values[-1], "units": 8})
    seen = hypermodels.LearningRateLog()
    evaluator = cnas.training.KerasEvaluator(cnas.data.load("digits"), traction_epochs=1,
                                             callbacks=[seen])
    result = evaluator.evaluate(cnas.trial.Candidate(spec, "traction"), seed=0)
    assert result.status == TrialStatus.COMPLETED, result.error
    assert seen.rates == [pytest.approx(0.01)]  # the hp value, not the evaluator's 5e-4


def test_keras_tuner_build_functions_and_hypermodels_work_when_it_is_installed():
    kt = pytest.importorskip("keras_tuner")
    space = HyperSpace("hypermodels:kt_hypermodel", (8, 8, 1), 10)
    assert [h.name for h in space.hyperparameters] == ["units"]
    assert isinstance(kt.HyperModel, type)
    model = cnas.build_model(space.spec({"units": 32}))
    assert model.count_params() == 8 * 8 * 32 + 32 + 33 * 10


def _hyper_objective(spec):
    """A toy score over the named values: best at units=48, filters_0=8, one conv layer."""
    v = spec.as_dict()
    return -((v["units"] - 48) / 16) ** 2 - (v["filters_0"] != 8) - v["conv_layers"]


@pytest.mark.parametrize("name", sorted(toy.SMALL))
def test_every_strategy_searches_a_hyperspace_within_its_cap(name, space, monkeypatch):
    """Through the categorical view: random samples, coordinate descent's ±1 steps, evolution's
    mutations, the REINFORCE controller's decisions, BayesOpt / TPE, every ask under the cap."""
    cap = 20_000
    monkeypatch.setitem(toy.PROBLEMS, "hyper", (lambda: space, _hyper_objective, cnas.estimate,
                                                cap, 10))
    strategy = toy.setup(toy.make(name), "hyper", max_params=cap, seed=1)
    trials = toy.Loop("hyper").run(strategy)
    assert len(trials) == strategy.planned_trials
    for trial in trials:
        space.validate(trial.spec)
        assert cnas.estimate(trial.spec).params <= cap
    assert len({(t.spec.key(), t.fidelity) for t in trials}) == len(trials)


def test_coordinate_descent_steps_ordered_values_and_jumps_unordered_ones():
    from keras_cnas.strategies.moves import moves_for

    space = HyperSpace(hypermodels.build_activation, (8, 8, 1), 10)
    assert space.ordered_decisions() == [True, False]
    moves = moves_for(space)
    spec = space.spec({"units": 8, "act": "relu"})
    found = {(m.kind, m.coordinate, m.delta, m.value) for m in moves.moves(spec)}
    assert found == {("step", "decisions[0]", 1, None), ("jump", "decisions[1]", None, 1),
                     ("jump", "decisions[1]", None, 2)}
    jumped = moves.apply(spec, next(m for m in moves.moves(spec) if m.value == 2), None)
    assert jumped.as_dict() == {"units": 8, "act": "elu"}
