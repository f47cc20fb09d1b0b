"""objective="J" | "val_accuracy" | "val_loss" | metric + direction; user callbacks."""

import pathlib

import numpy as np
import pytest

import hypermodels
import keras_cnas as cnas
from keras_cnas._keras import keras, tf
from keras_cnas.strategies import RandomSearch
from keras_cnas.training.objective import Objective
from keras_cnas.trial import Candidate, TrialStatus


@pytest.mark.parametrize("given, expected", [
    ("J", ("J", "min", "objective", "val_loss")),
    ("val_accuracy", ("val_accuracy", "max", "val_accuracy", "val_accuracy")),
    ("val_loss", ("val_loss", "min", "val_loss", "val_loss")),
    (("val_custom", "max"), ("val_custom", "max", "val_custom", "val_custom")),
    ("val_auc", ("val_auc", "max", "val_auc", "val_auc")),
    ("val_mean_squared_error", ("val_mean_squared_error", "min", "val_mean_squared_error",
                                "val_mean_squared_error")),
])
def test_objectives_resolve_to_a_metric_a_direction_and_what_early_stopping_watches(given, expected):
    goal = Objective.resolve(given)
    assert (goal.name, goal.direction, goal.metric, goal.monitor) == expected


def test_objectives_like_keras_tuners_and_the_flag_form():
    class KtObjective:  # keras_tuner.Objective's attributes
        name, direction = "val_precision", "max"

    assert Objective.resolve(KtObjective()) == Objective("val_precision", "max")
    assert Objective.parse("val_custom:min") == Objective("val_custom", "min")
    with pytest.raises(ValueError, match="cannot tell whether 'val_custom'"):
        Objective.resolve("val_custom")
    with pytest.raises(ValueError, match="J = val_loss .* is minimised"):
        Objective.resolve("J", "max")


def _spec(data):
    return cnas.spaces.Descriptor(data.input_shape, data.num_classes, [cnas.spaces.ConvLayer(4)])


def test_val_accuracy_is_maximised_and_survives_the_json_config(tmp_path):
    data = cnas.data.load("digits")
    evaluator = cnas.training.KerasEvaluator(data, objective="val_accuracy", full_epochs=3,
                                             patience=3)
    assert (evaluator.objective, evaluator.direction) == ("val_accuracy", "max")
    result = evaluator.evaluate(Candidate(_spec(data), "full"), seed=0)
    assert result.status == TrialStatus.COMPLETED
    assert evaluator.score(result.metrics) == result.metrics["val_accuracy"]
    again = cnas.training.Evaluator.from_json_config(
        evaluator.portable(tmp_path).to_json_config())
    assert (again.objective, again.direction) == ("val_accuracy", "max")


def test_an_objective_the_model_does_not_log_fails_the_trial_naming_what_was_logged():
    data = cnas.data.load("digits")
    evaluator = cnas.training.KerasEvaluator(data, objective=("val_auc", "max"), traction_epochs=1)
    result = evaluator.evaluate(Candidate(_spec(data), "traction"), seed=0)
    assert result.status == TrialStatus.FAILED
    assert "objective 'val_auc' was not logged" in result.error and "val_accuracy" in result.error


def test_search_takes_a_tf_data_pipeline_an_objective_and_callbacks_by_path(tmp_path):
    digits = cnas.data.load("digits")
    pipeline = tf.data.Dataset.from_tensor_slices(digits.arrays("train")).batch(64)
    space = cnas.spaces.HyperSpace(hypermodels.build_small_cnn, (8, 8, 1), 10)
    before = hypermodels.EPOCHS.epochs
    evaluator = cnas.training.KerasEvaluator(pipeline, objective="val_accuracy", traction_epochs=1,
                                             full_epochs=1, callbacks=["hypermodels:EPOCHS"])
    result = cnas.search(space, strategy=RandomSearch(num_samples=2), evaluator=evaluator,
                         search_dir=tmp_path, finalize=False, verbose=False)
    assert [t.status for t in result.trials] == [TrialStatus.COMPLETED] * 2
    assert hypermodels.EPOCHS.epochs - before == 2  # the user's callback saw every epoch
    with pytest.raises(ValueError, match="pass it to the evaluator you give"):
        cnas.search(space, evaluator=evaluator, objective="val_loss", search_dir=tmp_path / "x")


def test_callback_objects_work_in_process_and_are_refused_for_workers_with_the_fix(tmp_path):
    data = cnas.data.load("digits")
    seen = []
    inline = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(epoch))
    evaluator = cnas.training.KerasEvaluator(data, traction_epochs=2, callbacks=[inline])
    assert evaluator.evaluate(Candidate(_spec(data), "traction"), seed=0).status == TrialStatus.COMPLETED
    assert seen == [0, 1]
    with pytest.raises(ValueError, match="callbacks: LambdaCallback is an object made in this process"):
        evaluator.portable(tmp_path)
    config = cnas.training.KerasEvaluator(data, callbacks=["hypermodels:EPOCHS"]).portable(
        tmp_path).get_config()["callbacks"]
    # The module's directory travels with the path: a worker's working directory is its own.
    assert config == [{"path": "hypermodels:EPOCHS", "root": str(pathlib.Path(__file__).parent)}]
    with pytest.raises(ValueError, match=r"callbacks\[0\]: expected a Keras callback"):
        cnas.training.KerasEvaluator(data, callbacks=[np.zeros(3)])


def test_search_builds_the_default_evaluator_from_arrays_and_an_objective(tmp_path):
    """README's first screen: search(space, budget, data=(x, y), objective="val_accuracy")."""
    x, y = cnas.data.load("digits").arrays("train")
    space = cnas.spaces.HyperSpace(hypermodels.build_small_cnn, (8, 8, 1), 10)
    result = cnas.search(space, cnas.Constraints(max_params=20_000), data=(x, y),
                         objective="val_accuracy",
                         strategy=cnas.strategies.MonteCarlo(num_random=1, num_adaptive=0,
                                                             num_full=0),
                         search_dir=tmp_path, finalize=False, verbose=False)
    assert result.summary["objective"] == {"name": "val_accuracy", "direction": "max"}
    assert result.trials[0].status == TrialStatus.COMPLETED
    assert result.evaluator.dataset.name == "arrays"


def test_a_callback_path_that_does_not_import_is_refused_when_the_evaluator_is_made():
    with pytest.raises(ValueError, match=r"callbacks\[0\]: cannot import 'no_such_module_xyz'"):
        cnas.training.KerasEvaluator({"name": "digits"}, callbacks=["no_such_module_xyz:Log"])
