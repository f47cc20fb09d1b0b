"""B-ENAS pieces: the eq. 3 penalty, the RewardPenalty callback, the LSTM controller and
the Reinforce strategy (learning, hard bounds, resume, the engine on a table)."""

import json

import numpy as np
import pytest

import keras_cnas as cnas
from keras_cnas.costs import Constraints, CostPenalty, estimate, penalty
from keras_cnas.errors import UnknownCostError
from keras_cnas.spaces import CategoricalSpace
from keras_cnas.strategies import STRATEGIES, Reinforce, SearchContext
from keras_cnas.trial import Trial, TrialStatus

TARGET = [3, 1, 2, 0]


@pytest.mark.parametrize("beta, expected", [(1.0, [0.0, 0.0, 5.0, 10.0, 10.0]),
                                            (0.5, [0.0, 0.0, 3.0, 5.5, 5.5]),
                                            (2.0, [0.0, 0.0, 9.0, 19.0, 19.0])])
def test_penalty_at_multiples_of_the_bound(beta, expected):
    bound = 40_000.0
    values = [penalty(r * bound, bound, beta) for r in (0.5, 1.0, 5.0, 10.0, 20.0)]
    assert values == pytest.approx(expected)
    assert penalty(10 * bound, bound, beta) == pytest.approx(9 * beta + 1)  # meets the cap


def test_penalties_of_several_costs_add_and_missing_costs_are_named():
    rule = CostPenalty({"params": 100, "flops": 1000}, alpha=0.1)
    assert rule.terms({"params": 300, "flops": 500}) == {"params": 3.0, "flops": 0.0}
    assert rule.reward(0.8, {"params": 300, "flops": 2000}) == pytest.approx(0.8 - 0.1 * 5.0)
    with pytest.raises(UnknownCostError, match="the penalty bounds flops"):
        rule.penalty({"params": 1})
    with pytest.raises(ValueError, match="bounds: 'params': expected a positive upper bound"):
        CostPenalty({"params": -1})


def _digits_fit(callback, epochs=2):
    from keras_cnas._keras import keras

    data = cnas.data.load("digits")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(data.input_shape), keras.layers.Flatten(),
                              keras.layers.Dense(data.num_classes, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                        epochs=epochs, verbose=0, callbacks=[callback])
    return model, history.history


def test_reward_penalty_measures_and_penalises_training_time():
    from keras_cnas.training import RewardPenalty

    # A budget of 1 microsecond: any real training is over 10x it, so the penalty is the cap.
    slow = RewardPenalty({"train_seconds": 1e-6}, alpha=0.1)
    model, history = _digits_fit(slow)
    assert slow.train_seconds > 1e-5
    assert slow.penalty == pytest.approx(10.0)
    assert slow.reward == pytest.approx(history["val_accuracy"][-1] - 1.0)
    assert history["reward"][-1] == pytest.approx(slow.reward, abs=1e-6)
    assert len(history["penalty"]) == 2
    # A generous budget: no penalty, the reward is the accuracy; params are counted too.
    fast = RewardPenalty({"train_seconds": 3600, "params": model.count_params()})
    _digits_fit(fast)
    assert fast.penalty == 0.0 and fast.reward == pytest.approx(fast.accuracy)
    assert fast.costs["params"] == model.count_params()


def test_reward_penalty_with_an_injected_clock_is_exact():
    from keras_cnas.training import RewardPenalty

    ticks = iter(np.arange(0.0, 1000.0, 10.0))  # every clock read advances 10 s
    callback = RewardPenalty({"train_seconds": 5.0}, costs={"params": 1.0}, clock=lambda: next(ticks))
    _digits_fit(callback, epochs=1)
    # Read at construction, train begin, epoch end and train end: 20 s of training.
    assert callback.train_seconds == 20.0 and callback.penalty == pytest.approx(4.0)


def test_controller_concentrates_on_the_rewarded_sequence():
    from keras_cnas.strategies.controller import Controller

    controller = Controller([4, 4, 4, 4], lstm_size=32, learning_rate=5e-3, seed=0)
    rng = np.random.default_rng(0)
    baseline, start = None, controller.probabilities(TARGET)
    for step in range(400):
        decisions, _, _ = controller.sample(rng.random(4))
        reward = float(np.mean(np.equal(decisions, TARGET)))
        baseline = reward if baseline is None else 0.9 * baseline + 0.1 * reward
        controller.update([decisions], [reward - baseline])
        if controller.probabilities(TARGET) > 0.5:
            break
    assert start < 0.01
    assert controller.probabilities(TARGET) > 0.5, f"not learnt in {step + 1} updates"


def _tell_loop(strategy, n, score=lambda d: float(np.mean(np.equal(d, TARGET)))):
    for trial_id in range(n):
        candidate = strategy.ask()
        if candidate is None:
            return
        value = score(candidate.spec.decisions)
        strategy.tell(Trial(trial_id, candidate.spec, candidate.fidelity, candidate.phase,
                            TrialStatus.COMPLETED, score=value, metrics={"acc": value},
                            info=dict(candidate.info)))


def test_reinforce_resumes_exactly_from_its_json_state():
    space = CategoricalSpace([4] * 4)
    context = SearchContext(space, Constraints(), estimate)

    def fresh():
        strategy = Reinforce(num_trials=30, lstm_size=16, reward_metric="acc")
        strategy.setup(context, seed=3)
        return strategy

    original = fresh()
    _tell_loop(original, 8)
    state = json.loads(json.dumps(original.state_dict()))
    resumed = fresh()
    resumed.load_state_dict(state)
    for _ in range(3):
        a, b = original.ask(), resumed.ask()
        assert a.spec == b.spec and a.info == b.info
    assert resumed.probability(TARGET) == pytest.approx(original.probability(TARGET), rel=1e-6)


def test_reinforce_never_asks_for_infeasible_specs_but_learns_from_them():
    costs = {space_key: {"params": sum(d)} for space_key, d in
             ((CategoricalSpace([4] * 4).from_decisions(d).key(), d)
              for d in np.ndindex(4, 4, 4, 4))}
    space = CategoricalSpace([4] * 4, costs=costs)
    strategy = Reinforce(num_trials=20, lstm_size=16, reward_metric="acc")
    strategy.setup(SearchContext(space, Constraints(max_params=3), cnas.costs.Pricer(Constraints(max_params=3), space=space)), seed=0)
    asked = []
    for trial_id in range(20):
        candidate = strategy.ask()
        if candidate is None:
            break
        asked.append(candidate)
        strategy.tell(Trial(trial_id, candidate.spec, "full", "policy", TrialStatus.COMPLETED,
                            score=1.0, metrics={"acc": 1.0}, info=dict(candidate.info)))
    assert asked and all(sum(c.spec.decisions) <= 3 for c in asked)
    assert strategy.rejections > 0
    assert strategy.report()["policy_updates"] > len(asked)  # rejections trained it too


def test_reinforce_names_a_missing_reward_metric():
    space = CategoricalSpace([2, 2])
    strategy = Reinforce(num_trials=2, lstm_size=8)
    strategy.setup(SearchContext(space, Constraints(), estimate))
    candidate = strategy.ask()
    with pytest.raises(ValueError, match="reward_metric: trial 0 reports no 'val_accuracy'"):
        strategy.tell(Trial(0, candidate.spec, "full", "policy", TrialStatus.COMPLETED, score=1.0,
                            metrics={"acc": 1.0}, info=dict(candidate.info)))


def test_reinforce_through_the_engine_on_a_table_beats_its_first_samples():
    assert STRATEGIES.get("reinforce") is Reinforce
    space = CategoricalSpace([4] * 4)
    table = {space.from_decisions(d).key(): {"acc": 100.0 * float(np.mean(np.equal(d, TARGET)))}
             for d in np.ndindex(4, 4, 4, 4)}
    evaluator = cnas.training.TabularEvaluator(table, metric="acc")
    strategy = Reinforce(num_trials=60, lstm_size=32, learning_rate=5e-3, reward_metric="acc",
                         reward_scale=0.01)
    result = cnas.search(space, strategy=strategy, evaluator=evaluator, seed=0, verbose=False)
    scores = [t.metrics["acc"] for t in result.trials]
    assert np.mean(scores[-20:]) > np.mean(scores[:20])
    assert max(scores) >= 75.0
