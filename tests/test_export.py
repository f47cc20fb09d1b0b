"""keras_cnas.export on real models: every quantization converts and runs in LiteRT, int8
stays within a point of Keras, QAT and pruned models export, latency with XNNPACK on and
off, TFLite Micro arenas, the hard-bound re-check, and measured costs as search constraints."""

import json
import os

import numpy as np
import pytest

import keras_cnas as cnas
from keras_cnas._keras import keras, tfmot
from keras_cnas.errors import UnknownCostError
from keras_cnas.export import (
    ExportConstraintError,
    MicroError,
    estimate_arena_bytes,
    export_model,
    load_saved_model,
    measure_latency,
    micro_arena_bytes,
    predict_tflite,
    to_tflite,
    verify,
)
from keras_cnas.export.flatbuffer import read_model
from keras_cnas.spaces import ConvLayer, Descriptor, DescriptorSpace, FcLayer
from keras_cnas.strategies import RandomSearch
from keras_cnas.strategies.base import SearchContext
from keras_cnas.training import KerasEvaluator
from keras_cnas.trial import TrialStatus

SPEC = Descriptor((8, 8, 1), 10, (ConvLayer(16), ConvLayer(16, 3, 3, 2, 2, 2, 2)), (FcLayer(32),))


@pytest.fixture(scope="module")
def digits():
    return cnas.data.load("digits")


@pytest.fixture(scope="module")
def trained(digits):
    """A small descriptor CNN trained on digits for 25 epochs, batch 32 (~99 % test accuracy)."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = cnas.build_model(SPEC)
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(digits.x_train, digits.y_train, epochs=25, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def int8_model(trained, digits):
    return to_tflite(trained, "int8", representative_data=digits)


@pytest.fixture(scope="module")
def float_model(trained):
    return to_tflite(trained, "none")


def _ops(flatbuffer):
    return {op.opcode for sg in read_model(flatbuffer).subgraphs for op in sg.operators}


def _compute_types(flatbuffer):
    """(activation, weight) types of every CONV_2D / FULLY_CONNECTED."""
    sg = read_model(flatbuffer).main
    return {(sg.tensors[op.inputs[0]].dtype, sg.tensors[op.inputs[1]].dtype)
            for op in sg.operators if op.opcode in ("CONV_2D", "FULLY_CONNECTED")}


def _tensor_types(flatbuffer):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=flatbuffer)
    return (np.dtype(runner.get_input_details()[0]["dtype"]).name,
            np.dtype(runner.get_output_details()[0]["dtype"]).name)


# --- to_tflite + verify --------------------------------------------------------------------


def test_int8_export_stays_within_one_point_of_keras_accuracy(trained, int8_model, digits):
    report = verify(int8_model, digits, trained)
    assert report.num_examples == len(digits.y_test) == 359
    assert report.keras_accuracy > 0.95
    assert abs(report.keras_accuracy - report.tflite_accuracy) <= 0.01, report
    assert report.agreement >= 0.98 and report.max_abs_diff < 0.2
    assert _ops(int8_model) >= {"CONV_2D", "FULLY_CONNECTED"} and "DENSIFY" not in _ops(int8_model)
    assert _compute_types(int8_model) == {("INT8", "INT8")}  # full-integer: float only at I/O


@pytest.mark.parametrize("quantize", ["none", "float16", "dynamic", "int8"])
def test_every_quantization_converts_and_verifies(trained, float_model, digits, quantize):
    flatbuffer = to_tflite(trained, quantize, representative_data=digits.x_train)
    shrink = {"none": 1.0, "float16": 0.6, "dynamic": 0.4, "int8": 0.4}[quantize]
    assert len(flatbuffer) <= shrink * len(float_model)
    assert flatbuffer[4:8] == b"TFL3"
    report = verify(flatbuffer, digits, trained)
    assert report.input_dtype == report.output_dtype == "float32"
    assert abs(report.keras_accuracy - report.tflite_accuracy) <= 0.01
    assert report.agreement >= 0.98
    if quantize == "none":
        assert report.max_abs_diff < 1e-4  # the same float arithmetic
    expected = {"none": ("FLOAT32", "FLOAT32"), "float16": ("FLOAT32", "FLOAT32"),
                "dynamic": ("FLOAT32", "INT8"), "int8": ("INT8", "INT8")}[quantize]
    assert expected in _compute_types(flatbuffer)
    assert report.to_dict()["accuracy_drop"] == pytest.approx(
        report.keras_accuracy - report.tflite_accuracy)


def test_int8_io_takes_and_gives_int8_tensors(trained, digits):
    flatbuffer = to_tflite(trained, "int8", representative_data=(digits.x_train, digits.y_train),
                           int8_io=True)
    assert _tensor_types(flatbuffer) == ("int8", "int8")
    report = verify(flatbuffer, digits, trained)
    assert (report.input_dtype, report.output_dtype) == ("int8", "int8")
    assert abs(report.keras_accuracy - report.tflite_accuracy) <= 0.01 and report.agreement >= 0.98
    # predict_tflite (de)quantizes with the tensors' scale and zero point: probabilities.
    probabilities = predict_tflite(flatbuffer, digits.x_test[:50])
    assert probabilities.dtype == np.float32 and probabilities.min() >= 0
    assert np.allclose(probabilities.sum(axis=1), 1, atol=0.05)


def test_bad_arguments_say_what_to_fix(trained, digits):
    with pytest.raises(ValueError, match=r"unknown quantization 'int4'; known: none, float16, "
                                         r"dynamic, int8"):
        to_tflite(trained, "int4")
    with pytest.raises(ValueError, match=r"quantize='int8' calibrates .*pass "
                                         r"representative_data=dataset"):
        to_tflite(trained, "int8")
    with pytest.raises(ValueError, match=r"int8_io=True needs quantize='int8'"):
        to_tflite(trained, "float16", int8_io=True)
    with pytest.raises(ValueError, match=r"qat=True trains for int8 inference"):
        to_tflite(trained, "dynamic", qat=True)
    with pytest.raises(ValueError, match=r"representative_data: inputs of shape \(5, 28, 28, 1\) "
                                         r"do not fit the model's input"):
        to_tflite(trained, "int8", representative_data=np.zeros((5, 28, 28, 1), np.float32))
    with pytest.raises(ValueError, match=r"qat_data: quantization-aware training needs labelled"):
        to_tflite(trained, "int8", representative_data=digits.x_train, qat=True)
    with pytest.raises(ValueError, match=r"expected a TFLite flatbuffer"):
        verify(b"not a model", digits)


def test_verify_compares_logits_in_probability_space(digits):
    keras.utils.set_random_seed(1)
    logits = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                               keras.layers.Dense(10)])  # no softmax
    logits.compile(keras.optimizers.Adam(1e-2),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    logits.fit(digits.x_train, digits.y_train, epochs=3, verbose=0)
    report = verify(to_tflite(logits, "int8", representative_data=digits), digits.arrays("test"),
                    logits)
    assert 0 <= report.max_abs_diff <= 1 and report.agreement >= 0.97
    unlabelled = verify(to_tflite(logits), digits.x_test, logits)
    assert unlabelled.tflite_accuracy is None and unlabelled.agreement == 1.0


def test_quantization_aware_training_fine_tunes_then_converts(trained, digits):
    flatbuffer = to_tflite(trained, "int8", representative_data=digits, qat=True, qat_epochs=2)
    assert _tensor_types(flatbuffer) == ("float32", "float32")
    assert _compute_types(flatbuffer) == {("INT8", "INT8")}
    report = verify(flatbuffer, digits, trained)  # against the float model before QAT
    assert report.tflite_accuracy > 0.95 and report.agreement > 0.95
    assert trained.layers[1].__class__.__name__ == "Conv2D"  # the given model is untouched


def test_pruned_model_exports_dense_and_runs(trained, digits, tmp_path):
    sparsity = tfmot().sparsity.keras
    copy = keras.models.clone_model(trained)  # the wrappers would share trained's layers
    copy.set_weights(trained.get_weights())
    pruned = sparsity.prune_low_magnitude(copy, pruning_schedule=sparsity.ConstantSparsity(0.5, 0),
                                          sparsity_m_by_n=(2, 4))
    pruned.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    pruned.fit(digits.x_train, digits.y_train, epochs=2, batch_size=32, verbose=0,
               callbacks=[sparsity.UpdatePruningStep()])
    assert any(type(layer).__name__ == "PruneLowMagnitude" for layer in pruned.layers)
    flatbuffer = to_tflite(pruned, "int8", representative_data=digits)
    assert "DENSIFY" not in _ops(flatbuffer)  # never the converter's EXPERIMENTAL_SPARSITY
    report = verify(flatbuffer, digits)
    assert report.tflite_accuracy > 0.8
    # 2:4: at most two non-zeros in every group of four input weights of the first conv.
    kernel = sparsity.strip_pruning(pruned).get_layer("conv_1").kernel.numpy()
    groups = np.moveaxis(kernel, 2, -1).reshape(-1, 4)
    assert (np.count_nonzero(groups, axis=1) <= 2).all()
    # ... and saved with its wrappers, it loads and exports from a directory.
    pruned.save(tmp_path / "model.keras")
    assert type(load_saved_model(tmp_path).layers[1]).__name__ == "PruneLowMagnitude"
    exported = export_model(tmp_path, tmp_path / "out", "int8", digits, latency_runs=5)
    assert exported["tflite_accuracy"] == pytest.approx(report.tflite_accuracy, abs=0.01)


# --- latency and arena ---------------------------------------------------------------------


def test_latency_runs_with_xnnpack_on_and_off(int8_model):
    on = measure_latency(int8_model, num_threads=1, xnnpack=True, runs=20, warmup=2)
    off = measure_latency(int8_model, num_threads=1, xnnpack=False, runs=20, warmup=2)
    for report in (on, off):
        assert 0 < report.min_ms <= report.median_ms <= report.p90_ms
        assert report.runs == 20 and report.num_threads == 1
    assert (on.xnnpack, off.xnnpack) == (True, False)
    with pytest.raises(ValueError, match="runs: expected an integer >= 1"):
        measure_latency(int8_model, runs=0)


def test_micro_arena_is_measured_and_matches_the_offline_estimate(int8_model):
    arena = micro_arena_bytes(int8_model)
    assert 0 < arena < 64_000
    assert estimate_arena_bytes(int8_model) == arena


# --- export_model ---------------------------------------------------------------------------


def test_export_model_writes_tflite_labels_c_array_and_report(trained, digits, tmp_path):
    report = export_model(trained, tmp_path, "int8", digits, micro=True, latency_runs=10)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["export.json", "labels.txt", "model.tflite", "model_data.cc", "model_data.h",
                     "model_data_ops.h"]
    assert (tmp_path / "model.tflite").read_bytes()[4:8] == b"TFL3"
    assert report["tflite_bytes"] == (tmp_path / "model.tflite").stat().st_size
    assert (tmp_path / "labels.txt").read_text().splitlines() == list(digits.class_names)
    assert "model_data" in (tmp_path / "model_data.h").read_text()
    assert report["arena_bytes"] > 0 and report["arena_bytes_estimate"] == report["arena_bytes"]
    assert set(report["latency_ms"]) == {"xnnpack", "builtin"}
    assert all(v > 0 for v in report["latency_ms"].values())
    assert abs(report["keras_accuracy"] - report["tflite_accuracy"]) <= 0.01
    saved = json.loads((tmp_path / "export.json").read_text())
    assert saved["tflite_bytes"] == report["tflite_bytes"] and saved["micro"] is True


def test_the_shipped_artifact_is_the_checked_one_and_costs_what_the_search_priced(trained, digits,
                                                                                 tmp_path):
    import hashlib
    import re

    from keras_cnas.costs import ExportTarget, deployment_costs

    best = tmp_path / "best"  # as a search saves its best: model.keras + spec.json
    best.mkdir()
    trained.save(best / "model.keras")
    (best / "spec.json").write_text(SPEC.to_json())
    budget = cnas.Constraints(max_arena_bytes=10**6, max_tflite_bytes=10**6)
    report = export_model(best, best, "int8", digits, micro=True, constraints=budget, int8_io=True,
                          latency_runs=5)
    shipped = (best / "model.tflite").read_bytes()
    assert hashlib.sha256(shipped).hexdigest() == report["sha256"]
    assert json.loads((best / "export.json").read_text())["sha256"] == report["sha256"]
    c_bytes = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})",
                                                   (best / "model_data.cc").read_text()))
    assert c_bytes == shipped  # the C array embeds the same bytes
    # What was measured and re-checked is the shipped file, and equals the spec's price.
    assert report["arena_bytes"] == micro_arena_bytes(shipped)
    assert report["tflite_bytes"] == len(shipped)
    priced = deployment_costs(SPEC, ExportTarget("int8", int8_io=True))
    assert report["priced"] == priced == {"arena_bytes": report["arena_bytes"],
                                          "tflite_bytes": report["tflite_bytes"]}
    assert "priced_error" not in report


def test_export_fails_loudly_naming_the_broken_bound_and_writes_nothing(trained, digits, tmp_path):
    out = tmp_path / "out"
    budget = cnas.Constraints(max_arena_bytes=1000, max_tflite_bytes=1e6)
    with pytest.raises(ExportConstraintError,
                       match=r"breaks the hard constraints: arena_bytes = [\d,]+ > max 1,000") as e:
        export_model(trained, out, "int8", digits, constraints=budget, latency_runs=5)
    assert [v.cost for v in e.value.violations] == ["arena_bytes"]
    assert e.value.report["arena_bytes"] == e.value.violations[0].value > 1000
    assert not out.exists()
    with pytest.raises(ExportConstraintError, match=r"tflite_bytes = [\d,]+ > max 100 "):
        export_model(trained, out, "float16", digits,
                     constraints=cnas.Constraints(max_tflite_bytes=100), latency_runs=5)
    assert not out.exists()


def test_a_saved_search_model_is_rechecked_against_its_analytic_bounds_too(trained, tmp_path):
    trained.save(tmp_path / "model.keras")
    (tmp_path / "spec.json").write_text(SPEC.to_json())
    params = trained.count_params()
    with pytest.raises(ExportConstraintError, match=rf"params = {params:,} > max 10"):
        export_model(tmp_path, tmp_path, "float16", constraints=cnas.Constraints(max_params=10),
                     latency_runs=5)
    report = export_model(tmp_path, tmp_path, "float16",
                          constraints=cnas.Constraints(max_params=params), latency_runs=5)
    assert report["costs"]["params"] == params and report["arena_bytes"] is None
    assert report["tflite_accuracy"] is None  # no data, no verification


@pytest.mark.parametrize("quantize", ["dynamic", "float16"])
def test_micro_export_of_a_model_micro_cannot_run_fails_with_a_clear_message(trained, digits,
                                                                              tmp_path, quantize):
    with pytest.raises(MicroError, match=r"TensorFlow Lite Micro cannot run .*use quantize='int8'"):
        export_model(trained, tmp_path / "out", quantize, digits, micro=True)
    assert not (tmp_path / "out").exists()


def test_missing_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"not a .keras file or a directory holding "
                                                r"model.keras"):
        export_model(tmp_path / "nowhere", tmp_path, "none")


# --- measured costs in a search --------------------------------------------------------------


def test_evaluator_measure_is_validated_and_reported():
    ev = KerasEvaluator({"name": "digits"}, measure=["arena_bytes", "tflite_bytes"])
    assert ev.reported_costs == ("train_seconds", "arena_bytes", "tflite_bytes")
    config = ev.get_config()
    assert config["measure"] == ["arena_bytes", "tflite_bytes"] and config["export_quantize"] == "int8"
    rebuilt = cnas.training.Evaluator.from_json_config(json.loads(json.dumps(ev.to_json_config())))
    assert rebuilt.get_config() == config and rebuilt.reported_costs == ev.reported_costs
    assert KerasEvaluator({"name": "digits"}).reported_costs == ("train_seconds",)
    with pytest.raises(ValueError, match=r"unknown cost\(s\) 'ram'; known: tflite_bytes, "
                                         r"arena_bytes, latency_ms"):
        KerasEvaluator({"name": "digits"}, measure=("ram",))
    with pytest.raises(ValueError, match=r"expected a list of cost names"):
        KerasEvaluator({"name": "digits"}, measure="arena_bytes")
    with pytest.raises(ValueError, match=r"cannot run 'dynamic' ones"):
        KerasEvaluator({"name": "digits"}, measure=("arena_bytes",), export_quantize="dynamic")
    with pytest.raises(ValueError, match=r"unknown quantization 'int4'"):
        KerasEvaluator({"name": "digits"}, measure=("tflite_bytes",), export_quantize="int4")


def test_a_measured_bound_needs_the_evaluator_to_measure_or_price_it(digits, tmp_path):
    # A float16 export is not what TFLite Micro runs: nothing prices its arena before
    # training, and this evaluator does not measure it.
    space = DescriptorSpace((8, 8, 1), 10, max_conv_layers=2, max_filters=8)
    with pytest.raises(UnknownCostError, match="max_arena_bytes"):
        cnas.search(space, cnas.Constraints(max_arena_bytes=4000),
                    strategy=RandomSearch(num_samples=1),
                    evaluator=KerasEvaluator(digits, export_quantize="float16"),
                    search_dir=tmp_path, verbose=False)


def test_search_with_max_arena_bytes_never_trains_a_trial_over_it(digits, tmp_path):
    space = DescriptorSpace((8, 8, 1), 10, max_conv_layers=3, max_filters=32, max_fc_layers=1,
                            max_hidden=32)
    seed, trials = 0, 4
    # The specs an unconstrained seeded RandomSearch asks for, priced: the bound splits them.
    probe = RandomSearch(num_samples=trials, fidelity="traction")
    pricer = cnas.costs.Pricer(space=space)
    probe.setup(SearchContext(space, cnas.Constraints(), pricer), seed=seed)
    arenas = [pricer.costs(probe.ask().spec)["arena_bytes"] for _ in range(trials)]
    assert min(arenas) < max(arenas), f"the sampled specs need the same arena: {arenas}"
    bound = (min(arenas) + max(arenas)) // 2

    evaluator = KerasEvaluator(digits, traction_epochs=1, batch_size=64, measure=("arena_bytes",))
    result = cnas.search(space, cnas.Constraints(max_arena_bytes=bound),
                         strategy=RandomSearch(num_samples=trials, fidelity="traction"),
                         evaluator=evaluator, search_dir=tmp_path, seed=seed, verbose=False,
                         finalize=False)
    # Priced before training: the ones over the bound were rejected, never trained.
    assert [t.status for t in result.trials] == [TrialStatus.COMPLETED] * trials
    assert result.summary["rejected_proposals"] > 0
    for trial in result.trials:
        assert trial.costs["arena_bytes"] == trial.costs["arena_bytes_priced"] <= bound
    assert result.best.costs["arena_bytes"] <= bound


def test_the_quantizations_and_measured_costs_have_one_home():
    from keras_cnas import export
    from keras_cnas.cli import search as cli
    from keras_cnas.costs.measured import MEASURED_COSTS
    from keras_cnas.costs.quantization import QUANTIZATIONS
    from keras_cnas.training import evaluator

    assert cli.EXPORT_QUANTIZATIONS is evaluator.EXPORT_QUANTIZATIONS is export.QUANTIZATIONS \
        is QUANTIZATIONS
    assert cli.MEASURED_BOUNDS is evaluator.MEASURABLE_COSTS is export.MEASURED_COSTS \
        is MEASURED_COSTS


@pytest.mark.slow  # ~17 s: a QAT fine-tuning and a second conversion
def test_an_int8_drop_above_the_tolerance_is_fine_tuned_with_qat_and_rechecked(trained, digits,
                                                                               tmp_path):
    # Calibrating on blank images clips every real activation: post-training int8 collapses.
    blank = np.zeros((50, 8, 8, 1), np.float32)
    report = export_model(trained, tmp_path, "int8", digits, representative_data=blank,
                          max_int8_drop=0.5, qat_epochs=2, latency_runs=5)
    check = report["int8_check"]
    assert check["qat_tried"] and check["ptq_drop_points"] > 5
    assert check["qat_kept"] and check["drop_points"] == check["qat_drop_points"]
    assert check["drop_points"] < check["ptq_drop_points"] and report["qat"] is True
    assert check["summary"].startswith(f"int8 drop {check['drop_points']:.2f} points on the "
                                       "validation split after QAT")
    saved = json.loads((tmp_path / "export.json").read_text())
    assert saved["int8_check"]["qat_kept"] is True


def test_an_int8_drop_within_the_tolerance_keeps_post_training_quantization(trained, digits,
                                                                           tmp_path):
    report = export_model(trained, tmp_path, "int8", digits, max_int8_drop=100.0, latency_runs=5)
    assert report["int8_check"]["within"] and not report["int8_check"]["qat_tried"]
    assert report["qat"] is False


def test_an_int8_drop_on_a_model_qat_cannot_wrap_keeps_the_post_training_artifact(digits,
                                                                                   tmp_path):
    # tfmot's default scheme refuses a BatchNormalization that follows no conv (as in ENAS
    # cells): the export must keep its post-training int8 artifact, not fail.
    keras.backend.clear_session()
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.BatchNormalization()(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(digits.x_train, digits.y_train, epochs=5, verbose=0)
    # Calibrating on blank images collapses post-training int8, which calls for QAT.
    blank = np.zeros((50, 8, 8, 1), np.float32)
    report = export_model(model, tmp_path, "int8", digits, representative_data=blank,
                          max_int8_drop=0.5, latency_runs=5)
    check = report["int8_check"]
    assert check["ptq_drop_points"] > 0.5 and check["qat_tried"] and not check["qat_kept"]
    assert "cannot wrap" in check["qat_error"]
    assert "(QAT not possible)" in check["summary"] and (tmp_path / "model.tflite").exists()
