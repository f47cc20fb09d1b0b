"""fit_and_evaluate: the MIT-LL training recipe on a Dataset."""

import numpy as np
import pytest

import keras_cnas as cnas
from keras_cnas.spaces import ConvLayer, Descriptor, FcLayer


@pytest.fixture(scope="module")
def digits():
    return cnas.data.load("digits")


def test_fit_and_evaluate_learns_digits_and_reports_every_split(digits):
    spec = Descriptor(digits.input_shape, digits.num_classes,
                      (ConvLayer(16, 3, 3, 2, 2, 2, 2), ConvLayer(32)), (FcLayer(64),))
    metrics = cnas.training.fit_and_evaluate(cnas.build_model(spec), digits, epochs=10,
                                             batch_size=32)
    assert metrics["epochs"] == 10
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
            "test_accuracy", "train_seconds"} <= set(metrics)
    assert metrics["test_accuracy"] > 0.8  # chance is 0.1


def test_fit_and_evaluate_without_validation_or_test_split():
    rng = np.random.default_rng(0)
    data = cnas.data.from_arrays(rng.random((40, 4, 4, 1), dtype=np.float32),
                                 rng.integers(0, 2, 40), validation_split=0.0)
    model = cnas.build_model(Descriptor((4, 4, 1), 2, (ConvLayer(2),)))
    metrics = cnas.training.fit_and_evaluate(model, data, epochs=1)
    assert "val_accuracy" not in metrics and "test_accuracy" not in metrics
    assert np.isfinite(metrics["train_loss"])


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 0}, "epochs: expected a positive integer, got 0"),
    ({"batch_size": 2.5}, "batch_size: expected a positive integer, got 2.5"),
    ({"learning_rate": float("nan")}, "learning_rate: expected a positive number"),
])
def test_fit_and_evaluate_rejects_bad_arguments(digits, kwargs, match):
    model = cnas.build_model(Descriptor((8, 8, 1), 10, (ConvLayer(2),)))
    with pytest.raises(ValueError, match=match):
        cnas.training.fit_and_evaluate(model, digits, **kwargs)
