"""tools/export_tflite.py and tools/search.py --export / --max_arena_bytes, run as a user would."""

import json
import pathlib
import sqlite3
import subprocess
import sys

import pytest

import keras_cnas as cnas
from keras_cnas.spaces import ConvLayer, Descriptor, FcLayer
from keras_cnas.training import KerasEvaluator
from keras_cnas.trial import Candidate

REPO = pathlib.Path(__file__).resolve().parents[1]
SPEC = Descriptor((8, 8, 1), 10, (ConvLayer(16), ConvLayer(16, 3, 3, 2, 2, 2, 2)), (FcLayer(32),))
REPORT_KEYS = {"tflite_bytes", "arena_bytes", "latency_ms", "keras_accuracy", "tflite_accuracy",
               "agreement"}


def run_tool(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> pathlib.Path:
    """A digits model finalized as a search does it (retrained on train + validation, 20
    epochs, batch 32): best/ with model.keras, spec.json and metrics.json."""
    best = tmp_path_factory.mktemp("search") / "best"
    evaluator = KerasEvaluator(cnas.data.load("digits"), batch_size=32, learning_rate=2e-3)
    metrics = evaluator.finalize(Candidate(SPEC), best, seed=0, epochs=20)
    assert metrics["test_accuracy"] > 0.9
    return best


def test_int8_micro_export_prints_one_json_object_and_writes_the_files(saved_model, tmp_path):
    out = run_tool("tools/export_tflite.py", f"--model={saved_model}", "--quantize=int8",
                   "--dataset=digits", "--micro", f"--out={tmp_path}", "--latency_runs=20")
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)  # stdout holds the JSON object and nothing else
    assert REPORT_KEYS <= set(report)
    assert report["tflite_bytes"] == (tmp_path / "model.tflite").stat().st_size
    assert report["arena_bytes"] > 0
    assert set(report["latency_ms"]) == {"xnnpack", "builtin"}
    assert all(v > 0 for v in report["latency_ms"].values())
    assert abs(report["keras_accuracy"] - report["tflite_accuracy"]) <= 0.01
    assert report["agreement"] >= 0.98
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "export.json", "labels.txt", "model.tflite", "model_data.cc", "model_data.h",
        "model_data_ops.h"]
    assert (tmp_path / "labels.txt").read_text().split() == [str(d) for d in range(10)]
    assert "model_data" in (tmp_path / "model_data.cc").read_text()
    header = (tmp_path / "model_data.h").read_text()
    assert f"constexpr int kTensorArenaSize = {report['tensor_arena_size']};" in header
    assert report["tensor_arena_size"] >= report["arena_bytes"] + 1024
    # float32 I/O: the input is not quantized, the header says so with scale 0
    assert report["input"]["dtype"] == "FLOAT32" and "constexpr float kInputScale = 0.0f;" in header
    ops = (tmp_path / "model_data_ops.h").read_text()
    assert "tflite::MicroMutableOpResolver<kModelDataNumOps>" in ops and "AddConv2D()" in ops
    assert "Traceback" not in out.stderr
    # the converter's INFO chatter stays off the terminal
    for noise in ("Found untraced functions", "Using new converter", "Sharding callback"):
        assert noise not in out.stderr


def test_float16_export_defaults_to_the_model_dir_and_skips_the_arena(saved_model):
    out = run_tool("tools/export_tflite.py", f"--model={saved_model}", "--quantize=float16",
                   "--dataset=digits", "--latency_runs=5")
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert report["arena_bytes"] is None and report["quantize"] == "float16"
    assert (saved_model / "model.tflite").stat().st_size == report["tflite_bytes"]
    assert (saved_model / "model.keras").is_file()  # the export adds files beside the model


def test_a_broken_bound_exits_non_zero_naming_it_and_writes_nothing(saved_model, tmp_path):
    out = run_tool("tools/export_tflite.py", f"--model={saved_model}", "--quantize=int8",
                   "--dataset=digits", f"--out={tmp_path / 'out'}", "--max_arena_bytes=500",
                   "--latency_runs=5")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "breaks the hard constraints: arena_bytes = " in out.stderr
    assert "> max 500 " in out.stderr and out.stdout == ""
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--model={missing}", "--dataset=digits"], "is not a directory holding model.keras"),
    (["--model={model}", "--quantize=int4"], "one of <none|float16|dynamic|int8>"),
    (["--model={model}", "--quantize=int8"], "--quantize=int8 calibrates on training data"),
    (["--model={model}", "--quantize=dynamic", "--micro"], "cannot run dynamic-range (hybrid)"),
    (["--model={model}", "--quantize=none", "--int8_io"], "--int8_io and --qat_epochs need"),
    (["--model={model}", "--dataset=digits", "--max_tflite_bytes=-1"], "expected a positive number"),
    (["--model={model}", "--dataset=digits", "--max_arena_bytes=64KB/s"],
     "--max_arena_bytes: cannot read '64KB/s' as a size"),
    ([], "--model"),
])
def test_bad_flags_are_usage_errors_without_a_traceback(saved_model, tmp_path, args, message):
    args = [a.format(model=saved_model, missing=tmp_path / "missing") for a in args]
    out = run_tool("tools/export_tflite.py", *args, timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert message in out.stderr, out.stderr[-2000:]


SEARCH = ["tools/search.py", "--dataset=digits", "--space=descriptor", "--max_conv_layers=2",
          "--max_filters=8", "--max_fc_layers=1", "--max_hidden=16", "--traction_epochs=1",
          "--full_epochs=2", "--batch_size=64", "--strategy=random"]


def test_search_measures_bounded_costs_and_exports_the_best(tmp_path):
    out = run_tool(*SEARCH, "--max_trials=2", f"--search_dir={tmp_path}", "--export=int8",
                   "--max_arena_bytes=1000000", "--max_tflite_bytes=1000000")
    assert out.returncode == 0, out.stderr[-3000:]
    with sqlite3.connect(tmp_path / "trials.db") as conn:
        costs = [json.loads(c) for (c,) in conn.execute("SELECT costs_json FROM trials")]
    assert len(costs) == 2 and all(c["arena_bytes"] > 0 and c["tflite_bytes"] > 0 for c in costs)
    best = tmp_path / "best"
    report = json.loads((best / "export.json").read_text())
    assert report["tflite_bytes"] == (best / "model.tflite").stat().st_size
    assert report["constraints"] == {"max_arena_bytes": 1e6, "max_tflite_bytes": 1e6}
    assert report["arena_bytes"] > 0 and (best / "labels.txt").is_file()
    assert "exported int8 model.tflite" in out.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    measured = summary["config"]["evaluator"]["config"]
    assert measured["measure"] == ["tflite_bytes", "arena_bytes"]
    assert measured["export_quantize"] == "int8"


@pytest.mark.parametrize("args, message", [
    (["--export=dynamic", "--max_arena_bytes=5000"], "cannot run dynamic-range (hybrid)"),
    (["--export=int8", "--nofinalize"], "--export exports the finalized best model"),
])
def test_search_export_flag_errors(tmp_path, args, message):
    out = run_tool(*SEARCH, f"--search_dir={tmp_path}", *args, timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert message in out.stderr, out.stderr[-2000:]
