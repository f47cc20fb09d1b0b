"""OptimizerRecipe: the RCAS §4.1 SGD recipe, its step decay, weight decay on kernels only,
CPU scaling, and its use by KerasEvaluator and tools/search.py's flags."""

import numpy as np
import pytest
from absl import app

from keras_cnas.cli import search as cli
from keras_cnas.spaces import ConvLayer, Descriptor, FcLayer
from keras_cnas.training import RCAS_RECIPE, KerasEvaluator, OptimizerRecipe
from keras_cnas.trial import Candidate, TrialStatus


def test_rcas_recipe_is_the_papers():
    assert (RCAS_RECIPE.optimizer, RCAS_RECIPE.learning_rate, RCAS_RECIPE.momentum) == \
        ("sgd_nesterov", 0.1, 0.9)
    assert RCAS_RECIPE.weight_decay == 4e-5
    rates = [RCAS_RECIPE.learning_rate_at(e) for e in range(10)]
    assert rates == [0.1] * 4 + [0.01] * 3 + [0.001] * 2 + [0.0001]


@pytest.mark.parametrize("epochs, expected", [(10, (4, 7, 9)), (5, (2, 4)), (20, (8, 14, 18)),
                                              (3, (1, 2)), (1, ())])
def test_scaling_moves_decay_points_with_the_epoch_count(epochs, expected):
    assert RCAS_RECIPE.scaled(from_epochs=10, to_epochs=epochs).lr_decay_epochs == expected


@pytest.mark.parametrize("kwargs, message", [
    ({"optimizer": "rmsprop"}, "optimizer: unknown optimizer 'rmsprop'"),
    ({"learning_rate": 0}, "learning_rate: expected a number in (0, inf)"),
    ({"momentum": 1.0}, "momentum: expected a number in [0, 1)"),
    ({"weight_decay": -1e-4}, "weight_decay"),
    ({"lr_decay_epochs": (7, 4)}, "lr_decay_epochs: expected increasing epochs"),
    ({"lr_decay_epochs": (0,)}, "lr_decay_epochs: expected a list of positive epoch numbers"),
    ({"lr_decay_factor": 2.0}, "lr_decay_factor"),
])
def test_bad_recipes_name_the_argument(kwargs, message):
    with pytest.raises(ValueError) as e:
        OptimizerRecipe(**kwargs)
    assert message in str(e.value)


def test_config_round_trips():
    assert OptimizerRecipe.from_config(RCAS_RECIPE.get_config()) == RCAS_RECIPE


def test_the_schedule_reaches_training_and_weight_decay_spares_batch_norm():
    from keras_cnas._keras import keras

    recipe = OptimizerRecipe("sgd_nesterov", 0.5, momentum=0.0, weight_decay=0.1,
                             lr_decay_epochs=(1, 2), lr_decay_factor=0.5)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense"),
                              keras.layers.BatchNormalization(name="bn")])
    # A loss with zero gradient: every change of the weights is weight decay.
    model.compile(optimizer=recipe.make_optimizer(), loss=lambda y, p: 0.0 * keras.backend.sum(p))
    kernel = model.get_layer("dense").kernel.numpy()
    x = np.ones((8, 4), np.float32)
    history = model.fit(x, x[:, :3], batch_size=8, epochs=3, verbose=0,
                        callbacks=recipe.callbacks())
    assert history.history["lr"] == pytest.approx([0.5, 0.25, 0.125])
    shrink = (1 - 0.5 * 0.1) * (1 - 0.25 * 0.1) * (1 - 0.125 * 0.1)
    np.testing.assert_allclose(model.get_layer("dense").kernel.numpy(), kernel * shrink, rtol=1e-5)
    np.testing.assert_array_equal(model.get_layer("bn").gamma.numpy(), np.ones(3, np.float32))
    np.testing.assert_array_equal(model.get_layer("dense").bias.numpy(), np.zeros(3, np.float32))


def test_keras_evaluator_trains_with_the_rcas_recipe():
    recipe = RCAS_RECIPE.scaled(from_epochs=10, to_epochs=4).get_config()
    evaluator = KerasEvaluator({"name": "digits"}, batch_size=64, full_epochs=4, patience=4,
                               **recipe)
    assert evaluator.get_config()["optimizer"] == "sgd_nesterov"
    assert evaluator.get_config()["lr_decay_epochs"] == [2, 3]
    spec = Descriptor((8, 8, 1), 10, (ConvLayer(16), ConvLayer(16)), (FcLayer(32),))
    result = evaluator.evaluate(Candidate(spec, "full"), seed=0)
    assert result.status == TrialStatus.COMPLETED, result.error
    assert result.metrics["val_accuracy"] > 0.8


def test_search_flags_select_the_recipe():
    flags = {"full_epochs": 5, "learning_rate": 5e-4, "optimizer": "adam", "momentum": 0.9,
             "weight_decay": 0.0, "lr_decay_epochs": [], "lr_decay_factor": 0.1}
    assert cli.optimizer_kwargs(flags)["optimizer"] == "adam"
    rcas = cli.optimizer_kwargs({**flags, "rcas_recipe": True})
    assert (rcas["optimizer"], rcas["learning_rate"], rcas["lr_decay_epochs"]) == \
        ("sgd_nesterov", 0.1, [2, 4])
    with pytest.raises(app.UsageError, match="--lr_decay_epochs: expected comma-separated"):
        cli.optimizer_kwargs({**flags, "lr_decay_epochs": ["four"]})
    with pytest.raises(app.UsageError, match="--lr_decay_epochs: expected increasing"):
        cli.optimizer_kwargs({**flags, "lr_decay_epochs": ["7", "4"]})


# --- the evaluator's typed pieces ---------------------------------------------------------------


def test_keras_evaluator_from_typed_pieces_equals_the_flat_keywords():
    from keras_cnas.training import Fidelity, KerasEvaluator, Measurement

    pieces = KerasEvaluator({"name": "digits"}, recipe=RCAS_RECIPE,
                            fidelity=Fidelity(traction_epochs=1, full_epochs=4, patience=2),
                            measurement=Measurement(("tflite_bytes",), quantize="none"))
    flat = KerasEvaluator({"name": "digits"}, **RCAS_RECIPE.get_config(), traction_epochs=1,
                          full_epochs=4, patience=2, measure=("tflite_bytes",),
                          export_quantize="none")
    assert pieces.get_config() == flat.get_config()
    assert pieces.get_config()["full_epochs"] == 4 and pieces.get_config()["optimizer"] == "sgd_nesterov"
    assert pieces.reported_costs == ("train_seconds", "tflite_bytes")
    assert pieces.export_target.quantize == "none"
    from keras_cnas.training import Evaluator

    rebuilt = Evaluator.from_json_config(pieces.to_json_config())
    assert rebuilt.fidelity == pieces.fidelity and rebuilt.measurement == pieces.measurement
    assert rebuilt.recipe == RCAS_RECIPE


def test_a_piece_and_its_flat_fields_together_or_an_unknown_field_are_refused():
    from keras_cnas.training import Fidelity, KerasEvaluator

    with pytest.raises(ValueError, match="full_epochs: set in fidelity=Fidelity"):
        KerasEvaluator({"name": "digits"}, fidelity=Fidelity(), full_epochs=3)
    with pytest.raises(TypeError, match="unknown argument\\(s\\) full_epoch;"):
        KerasEvaluator({"name": "digits"}, full_epoch=3)
    with pytest.raises(ValueError, match="fidelity: expected a Fidelity, got dict"):
        KerasEvaluator({"name": "digits"}, fidelity={"full_epochs": 3})
    with pytest.raises(ValueError, match="patience: expected a non-negative integer, got -1"):
        Fidelity(patience=-1)


def test_a_devices_measurement_is_what_its_board_runs():
    from keras_cnas.training import Measurement

    phone = Measurement.for_device("phone")
    assert "latency_ms" in phone.costs and phone.quantize == "int8" and not phone.int8_io
    board = Measurement.for_device("rp2040")
    assert board.costs == ("tflite_bytes", "arena_bytes") and board.int8_io


def test_compression_training_builds_its_optimizer_through_the_same_recipe():
    from keras_cnas.compression.training import TrainingConfig

    config = TrainingConfig(learning_rate=0.05, optimizer="sgd_nesterov")
    assert config.recipe == OptimizerRecipe("sgd_nesterov", 0.05)
    optimizer = config.recipe.make_optimizer()
    assert optimizer.nesterov and float(optimizer.momentum) == pytest.approx(0.9)
