"""KerasEvaluator: J = val_loss + beta*R(A), traction and full fidelity, failures as results,
JSON configs that rebuild it in a worker process, npz data caches and finalize."""

import dataclasses
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import keras_cnas as cnas
from keras_cnas.data import Dataset
from keras_cnas.errors import DataError
from keras_cnas.spaces import CategoricalSpace, ConvLayer, Descriptor, FcLayer
from keras_cnas.training import (
    EVALUATORS,
    REGULARIZERS,
    DataSource,
    Evaluator,
    KerasEvaluator,
    load_npz,
    save_npz,
)
from keras_cnas.trial import Candidate, TrialStatus

SPEC = Descriptor((8, 8, 1), 10, (ConvLayer(8, 3, 3, 2, 2, 2, 2), ConvLayer(16)), (FcLayer(16),))
FAST = {"batch_size": 64, "traction_epochs": 1, "full_epochs": 6, "patience": 1}


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return cnas.data.load("digits")


@pytest.fixture(scope="module")
def evaluator() -> KerasEvaluator:
    return KerasEvaluator({"name": "digits"}, **FAST)


def test_keras_evaluator_is_registered_and_minimises_the_objective():
    assert EVALUATORS.get("keras") is KerasEvaluator
    ev = KerasEvaluator({"name": "digits"})
    assert (ev.objective, ev.direction, ev.reported_costs) == ("objective", "min", ("train_seconds",))
    assert ev.score({"objective": 0.5}) == -0.5


def test_defaults_are_the_papers():
    config = KerasEvaluator({"name": "digits"}).get_config()
    assert config["learning_rate"] == 5e-4 and config["batch_size"] == 128
    assert config["beta"] == 5e-5 and config["regularizer"] == "params_k"
    assert config["augment"] is True


def test_traction_trial_reports_objective_metrics_and_train_seconds(evaluator):
    result = evaluator.evaluate(Candidate(SPEC, "traction"), seed=3)
    assert result.status == TrialStatus.COMPLETED and result.error is None
    m = result.metrics
    assert {"objective", "val_loss", "val_accuracy", "train_loss", "train_accuracy", "epochs",
            "best_epoch", "regularizer", "params"} <= set(m)
    assert m["epochs"] == 1
    params = cnas.estimate(SPEC).params
    assert m["params"] == params and m["regularizer"] == pytest.approx(params / 1e3)
    assert m["objective"] == pytest.approx(m["val_loss"] + 5e-5 * params / 1e3)
    assert result.costs["train_seconds"] > 0
    assert evaluator.score(m) == -m["objective"]


def test_traction_steps_end_the_first_epoch_early():
    ev = KerasEvaluator({"name": "digits"}, batch_size=64, traction_epochs=None, traction_steps=3)
    result = ev.evaluate(Candidate(SPEC, "traction"))
    assert result.status == TrialStatus.COMPLETED and result.metrics["epochs"] == 1


def test_same_seed_same_result_different_seed_different_result(evaluator):
    a = evaluator.evaluate(Candidate(SPEC, "traction"), seed=5).metrics
    b = evaluator.evaluate(Candidate(SPEC, "traction"), seed=5).metrics
    c = evaluator.evaluate(Candidate(SPEC, "traction"), seed=6).metrics
    assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-6)
    assert a["val_loss"] != pytest.approx(c["val_loss"], rel=1e-6)


def test_full_fidelity_stops_early_and_reports_the_best_epoch():
    ev = KerasEvaluator({"name": "digits"}, batch_size=64, full_epochs=8, patience=1,
                        learning_rate=3e-2)
    result = ev.evaluate(Candidate(SPEC, "full"))
    m = result.metrics
    assert result.status == TrialStatus.COMPLETED
    assert 1 <= m["best_epoch"] <= m["epochs"] <= 8
    # Early stopping with patience 1 runs at most one epoch past the best one.
    assert m["epochs"] == 8 or m["epochs"] == m["best_epoch"] + 1


@pytest.mark.parametrize("regularizer, expected", [
    ("params_k", lambda spec: cnas.estimate(spec).params / 1e3),
    ("madds_m", lambda spec: cnas.estimate(spec).madds / 1e6),
    ("none", lambda spec: 0.0),
])
def test_regularizer_choices(regularizer, expected):
    ev = KerasEvaluator({"name": "digits"}, beta=0.01, regularizer=regularizer, **FAST)
    m = ev.evaluate(Candidate(SPEC, "traction")).metrics
    assert m["regularizer"] == pytest.approx(expected(SPEC))
    assert m["objective"] == pytest.approx(m["val_loss"] + 0.01 * expected(SPEC))
    assert sorted(REGULARIZERS) == ["madds_m", "none", "params_k"]


def test_diverging_trial_is_failed_with_the_nan_reason_not_raised():
    ev = KerasEvaluator({"name": "digits"}, learning_rate=1e20, **FAST)  # real NaN loss
    result = ev.evaluate(Candidate(SPEC, "traction"))
    assert result.status == TrialStatus.FAILED
    assert result.error.startswith("loss became nan at epoch 1, step ")
    assert "objective" not in result.metrics and ev.score(result.metrics) is None


def test_time_limit_fails_the_trial_with_the_reason():
    ev = KerasEvaluator({"name": "digits"}, time_limit_seconds=1e-3, **FAST)
    result = ev.evaluate(Candidate(SPEC, "full"))
    assert result.status == TrialStatus.FAILED
    assert result.error.startswith("time limit of 0.001 s reached after ")
    assert "objective" not in result.metrics and result.costs["train_seconds"] > 0


@pytest.mark.parametrize("spec, match", [
    (Descriptor((28, 28, 1), 10, (ConvLayer(4),)),
     r"build failed: ValueError: spec: the model's input shape \(28, 28, 1\) differs from the "
     r"data's \(8, 8, 1\)"),
    (Descriptor((8, 8, 1), 3, (ConvLayer(4),)), r"the model has 3 outputs but the data has 10"),
    (CategoricalSpace([3, 3]).from_decisions([0, 1]),
     r"build failed: InvalidSpecError: spec: no model builder for CategoricalSpec"),
])
def test_a_model_that_cannot_be_built_is_a_failed_trial(evaluator, spec, match):
    result = evaluator.evaluate(Candidate(spec, "traction"))
    assert result.status == TrialStatus.FAILED
    assert re.search(match, result.error)


def test_an_exception_in_training_is_a_failed_trial(digits):
    # Labels beyond the softmax's 10 classes make the loss op raise inside fit.
    bad = dataclasses.replace(digits)
    object.__setattr__(bad, "y_train", np.full_like(digits.y_train, 12))  # skips validation
    result = KerasEvaluator(bad, **FAST).evaluate(Candidate(SPEC, "traction"))
    assert result.status == TrialStatus.FAILED
    assert result.error.startswith("training failed: InvalidArgumentError: ")
    assert "Received a label value of 12" in result.error and "File " not in result.error


def test_data_without_validation_split_stops_the_search_with_the_fix():
    rng = np.random.default_rng(0)
    data = cnas.data.from_arrays(rng.random((40, 8, 8, 1), dtype=np.float32),
                                 rng.integers(0, 10, 40), validation_split=0.0)
    with pytest.raises(DataError, match=r"no validation split.*validation_split > 0"):
        KerasEvaluator(data).evaluate(Candidate(SPEC, "traction"))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"data": 3}, ValueError, "data: expected a keras_cnas.data.Dataset, .* a tf.data.Dataset"),
    ({"data": {"nme": "digits"}}, ValueError, r"data: unknown DataSource fields \['nme'\]"),
    ({"learning_rate": 0}, ValueError, r"learning_rate: expected a number in \(0, inf\) such as 5e-4, got 0"),
    ({"batch_size": 0}, ValueError, "batch_size: expected a positive integer, got 0"),
    ({"traction_epochs": None}, ValueError, "traction_epochs / traction_steps: both are None"),
    ({"patience": -1}, ValueError, "patience: expected a non-negative integer, got -1"),
    ({"beta": float("nan")}, ValueError, "beta: expected a non-negative number"),
    ({"regularizer": "params"}, KeyError, "unknown regularizer 'params'; known regularizers: "
                                          "madds_m, none, params_k"),
    ({"time_limit_seconds": -5}, ValueError, "time_limit_seconds: expected a positive number"),
])
def test_constructor_validates_arguments(kwargs, error, match):
    kwargs = {"data": {"name": "digits"}, **kwargs}
    with pytest.raises(error, match=match):
        KerasEvaluator(**kwargs)


# --- configs, data sources and worker processes -----------------------------------------


def test_config_is_json_and_rebuilds_the_evaluator(evaluator):
    data = json.loads(json.dumps(evaluator.to_json_config()))
    again = Evaluator.from_json_config(data)
    assert isinstance(again, KerasEvaluator) and again.get_config() == evaluator.get_config()


def test_in_memory_data_must_be_made_portable_first(digits, tmp_path):
    ev = KerasEvaluator(digits, **FAST)
    assert not ev.is_portable
    config = json.loads(json.dumps(ev.to_json_config()))  # still loggable...
    assert config["config"]["data"] == {"in_memory": repr(digits)}
    with pytest.raises(ValueError, match=r"data: this config was made from an in-memory dataset "
                                         r"\(Dataset\(name='digits'.*evaluator.portable\(cache_dir\)"):
        Evaluator.from_json_config(config)  # ...but a worker cannot rebuild it
    portable = ev.portable(tmp_path)
    files = list(tmp_path.glob("digits-*.npz"))
    assert len(files) == 1 and portable.get_config()["data"] == {"npz_path": str(files[0])}
    assert portable.dataset is digits  # this process keeps the data it has
    mtime = files[0].stat().st_mtime_ns
    assert ev.portable(tmp_path).get_config() == portable.get_config()  # resume: same file
    assert files[0].stat().st_mtime_ns == mtime


def test_npz_cache_round_trips_exactly_without_pickle(digits, tmp_path):
    path = save_npz(digits, tmp_path / "d.npz")
    again = load_npz(path)
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert np.array_equal(getattr(again, name), getattr(digits, name))
        assert getattr(again, name).dtype == getattr(digits, name).dtype
    assert (again.name, again.class_names, again.input_shape, again.augmentation) == \
        (digits.name, digits.class_names, digits.input_shape, digits.augmentation)
    with np.load(path, allow_pickle=False) as npz:  # nothing in it needs pickle
        assert {npz[k].dtype.kind for k in npz.files} <= {"f", "i", "u", "U"}


def test_npz_stores_8_bit_images_as_uint8_and_restores_the_same_floats(tmp_path):
    rng = np.random.default_rng(0)
    data = cnas.data.from_arrays(rng.integers(0, 256, (50, 6, 6, 3), dtype=np.uint8),
                                 rng.integers(0, 4, 50), name="rgb/8bit")
    path = save_npz(data, tmp_path / "rgb.npz")
    with np.load(path, allow_pickle=False) as npz:
        assert npz["x_train"].dtype == np.uint8
    assert np.array_equal(load_npz(path).x_train, data.x_train)


def test_data_source_loads_once_per_process(tmp_path, digits):
    source = DataSource.npz(save_npz(digits, tmp_path / "once.npz"))
    assert source.load() is source.load()
    assert DataSource.registered("digits").load() is DataSource.registered("digits").load()


@pytest.mark.parametrize("make, error, match", [
    (lambda: DataSource(), ValueError, "give exactly one of name="),
    (lambda: DataSource(name="digits", npz_path="x.npz"), ValueError, "give exactly one of"),
    (lambda: DataSource(npz_path="x.npz", seed=3), ValueError,
     "seed do not apply to an npz cache"),
    (lambda: DataSource.registered("digits", validation_split=1.0), ValueError,
     r"validation_split: expected a fraction in \[0, 1\) such as 0.1, got 1.0"),
    (lambda: DataSource(name="digits", max_per_class=0), ValueError,
     "max_per_class: expected a positive integer or None"),
    (lambda: DataSource.npz("/nonexistent/d.npz").load(), FileNotFoundError,
     r"npz_path: no dataset cache at /nonexistent/d.npz"),
    (lambda: DataSource.registered("mnsit").load(), KeyError, "unknown dataset 'mnsit'"),
])
def test_data_source_errors_say_what_to_do(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_a_file_that_is_not_a_cache_is_rejected(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(DataError, match="is not a keras_cnas dataset cache"):
        load_npz(tmp_path / "other.npz")


def test_worker_process_rebuilds_the_evaluator_from_json_and_evaluates(digits, tmp_path):
    portable = KerasEvaluator(digits, **FAST).portable(tmp_path)
    job = {"evaluator": portable.to_json_config(),
           "candidate": {"spec": SPEC.to_json(), "fidelity": "traction"}}
    code = (
        "import json, sys\n"
        "import keras_cnas.training as t\n"
        "from keras_cnas.spaces import spec_from_json\n"
        "from keras_cnas.trial import Candidate\n"
        "job = json.loads(sys.stdin.read())\n"
        "ev = t.Evaluator.from_json_config(job['evaluator'])\n"
        "c = Candidate(spec_from_json(job['candidate']['spec']), job['candidate']['fidelity'])\n"
        "print(json.dumps(ev.evaluate(c, seed=2).to_dict()))\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(job), text=True,
                         capture_output=True, check=True, env=env, timeout=300)
    remote = json.loads(out.stdout.strip().splitlines()[-1])
    local = portable.evaluate(Candidate(SPEC, "traction"), seed=2)
    assert remote["status"] == "COMPLETED"
    assert remote["metrics"]["val_loss"] == pytest.approx(local.metrics["val_loss"], rel=1e-5)


def test_importing_training_registers_keras_without_importing_tensorflow():
    code = ("import sys, keras_cnas.training as t;"
            "print('keras' in t.EVALUATORS, 'tensorflow' in sys.modules, 'tf_keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "False"]


# --- finalize and saved models ----------------------------------------------------------


def test_finalize_retrains_on_train_and_validation_tests_and_saves(evaluator, tmp_path, digits):
    metrics = evaluator.finalize(Candidate(SPEC, "full"), tmp_path / "best", seed=1, epochs=3)
    assert metrics["epochs"] == 3 and 0 <= metrics["test_accuracy"] <= 1
    assert sorted(p.name for p in (tmp_path / "best").iterdir()) == \
        ["metrics.json", "model.keras", "spec.json"]
    saved = json.loads((tmp_path / "best" / "metrics.json").read_text())
    assert saved["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert saved["epochs"] == 3 and saved["seed"] == 1
    spec = cnas.spaces.spec_from_json((tmp_path / "best" / "spec.json").read_text())
    assert spec == SPEC
    from keras_cnas._keras import keras

    model = keras.models.load_model(tmp_path / "best" / "model.keras")
    _, accuracy = model.evaluate(digits.x_test, digits.y_test, verbose=0)
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=1e-6)


def test_finalize_defaults_to_full_epochs_and_rejects_bad_epochs(evaluator, tmp_path):
    ev = KerasEvaluator({"name": "digits"}, batch_size=256, full_epochs=2)
    assert ev.finalize(Candidate(SPEC), tmp_path)["epochs"] == 2
    with pytest.raises(ValueError, match="epochs: expected a positive integer, got 0"):
        evaluator.finalize(Candidate(SPEC), tmp_path, epochs=0)


def test_save_models_writes_each_completed_trial_to_its_workdir(tmp_path):
    ev = KerasEvaluator({"name": "digits"}, save_models=True, **FAST)
    ev.evaluate(Candidate(SPEC, "traction"), workdir=tmp_path / "trial_1")
    assert (tmp_path / "trial_1" / "model.keras").is_file()
    metrics = json.loads((tmp_path / "trial_1" / "metrics.json").read_text())
    assert metrics["fidelity"] == "traction" and math.isfinite(metrics["objective"])
