"""Training callbacks: traction (early score), NaN guard and time limit, on real models."""

import math
import re

import numpy as np
import pytest

import keras_cnas as cnas
from keras_cnas._keras import keras
from keras_cnas.spaces import ConvLayer, Descriptor
from keras_cnas.training import NanGuard, TractionCallback, TrialTimeLimit

SPEC = Descriptor((8, 8, 1), 10, (ConvLayer(8, 3, 3, 2, 2, 2, 2),))
BATCH = 64


@pytest.fixture(scope="module")
def digits():
    return cnas.data.load("digits")


def _fit(digits, callbacks, *, epochs=20, learning_rate=1e-2, x_train=None):
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = cnas.build_model(SPEC)
    model.compile(keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x = digits.x_train if x_train is None else x_train
    history = model.fit(x, digits.y_train, batch_size=BATCH, epochs=epochs, verbose=0,
                        validation_data=(digits.x_val, digits.y_val), callbacks=callbacks)
    return history.history


def test_traction_stops_after_k_epochs_and_reports_the_last_validation_score(digits):
    traction = TractionCallback(epochs=2)
    history = _fit(digits, [traction])
    assert len(history["loss"]) == 2 and traction.epochs_run == 2 and traction.stopped
    assert traction.score == pytest.approx(history["val_loss"][-1])
    assert traction.logs["val_accuracy"] == pytest.approx(history["val_accuracy"][-1])


def test_traction_stops_after_k_steps_and_still_validates(digits):
    traction = TractionCallback(steps=3)
    history = _fit(digits, [traction])
    assert traction.steps_run == 3 < math.ceil(len(digits.y_train) / BATCH)
    assert len(history["loss"]) == 1 and traction.epochs_run == 1
    assert traction.score is not None and math.isfinite(traction.score)


def test_traction_with_both_limits_stops_at_the_first_reached(digits):
    steps_per_epoch = math.ceil(len(digits.y_train) / BATCH)
    traction = TractionCallback(epochs=5, steps=steps_per_epoch + 2)
    history = _fit(digits, [traction])
    assert len(history["loss"]) == 2 and traction.steps_run == steps_per_epoch + 2


def test_traction_monitor_can_name_another_log(digits):
    traction = TractionCallback(epochs=1, monitor="val_accuracy")
    history = _fit(digits, [traction])
    assert traction.score == pytest.approx(history["val_accuracy"][-1])


def test_nan_guard_stops_a_diverging_run_at_once_and_says_why(digits):
    guard = NanGuard()
    # A learning rate of 1e20 really drives the weights, logits and loss to NaN.
    history = _fit(digits, [guard], epochs=5, learning_rate=1e20)
    assert guard.reason is not None
    assert guard.reason.startswith("loss became nan at epoch 1, step ")
    step = int(guard.reason.rsplit(" ", 1)[1])
    assert step < math.ceil(len(digits.y_train) / BATCH)  # stopped mid-epoch 1
    assert len(history["loss"]) == 1 and math.isnan(history["loss"][0])


def test_nan_guard_catches_nan_weights_behind_a_finite_loss(digits):
    # NaN inputs make the gradients and then the weights NaN, but Keras clips the
    # probabilities before the log, so the reported loss stays finite: only the weight
    # check at the end of the epoch notices the dead model.
    x = digits.x_train.copy()
    x[:BATCH] = np.nan
    loss_only, guard = NanGuard(check_weights=False), NanGuard()
    history = _fit(digits, [loss_only], epochs=2, x_train=x)
    assert loss_only.reason is None and np.isfinite(history["loss"]).all()
    history = _fit(digits, [guard], epochs=3, x_train=x)
    assert guard.reason is not None
    assert re.fullmatch(r"weight \S+ became non-finite in epoch 1", guard.reason)
    assert len(history["loss"]) == 1


def test_nan_guard_stays_quiet_on_a_healthy_run(digits):
    guard = NanGuard()
    history = _fit(digits, [guard], epochs=2)
    assert guard.reason is None and len(history["loss"]) == 2


def test_time_limit_stops_training_and_records_it(digits):
    limit = TrialTimeLimit(0.001)
    history = _fit(digits, [limit], epochs=50)
    assert len(history["loss"]) == 1
    assert limit.reason is not None
    assert limit.reason.startswith("time limit of 0.001 s reached after ")
    assert limit.reason.endswith("(epoch 1, step 1)")


def test_time_limit_uses_the_clock_it_is_given(digits):
    ticks = iter(range(10_000))
    limit = TrialTimeLimit(5, clock=lambda: float(next(ticks)))  # one "second" per check
    history = _fit(digits, [limit], epochs=50)
    assert limit.reason is not None and "after 5.0 s" in limit.reason
    assert len(history["loss"]) == 1


@pytest.mark.parametrize("make, match", [
    (lambda: TractionCallback(), "give epochs= or steps="),
    (lambda: TractionCallback(epochs=0), "epochs: expected a positive integer or None, got 0"),
    (lambda: TractionCallback(steps=2.5), "steps: expected a positive integer or None, got 2.5"),
    (lambda: TractionCallback(epochs=1, monitor=""), "monitor: expected a log name"),
    (lambda: TrialTimeLimit(0), "seconds: expected a positive number of seconds"),
    (lambda: TrialTimeLimit(float("inf")), "seconds: expected a positive number"),
])
def test_callbacks_validate_their_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()
