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
