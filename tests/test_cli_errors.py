"""Bad input through the five binaries: one line naming the argument, exit 2 for usage
errors and 1 for others, never a traceback (issue 14).

Each binary runs its cases in one process (``tests/cli_probe.py`` calls the binary's real
entry point, ``cli.common.run``, once per argument list), so ~150 bad inputs take seconds;
a representative subset also runs as real subprocesses, TensorFlow's own logging included.
"""

import gzip
import io
import json
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
import zipfile

import numpy as np
import pytest

import keras_cnas as cnas
from keras_cnas.engine.search_dir import SearchDirLock
from keras_cnas.spaces import CategoricalSpace
from keras_cnas.strategies import RandomSearch
from keras_cnas.training.tabular import TabularEvaluator

REPO = pathlib.Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get(
    "PYTHONPATH")])), "TF_CPP_MIN_LOG_LEVEL": "2"}
USAGE, ERROR = 2, 1

# --- the bad files ------------------------------------------------------------------------


def _descriptor(**change):
    spec = {"space": "descriptor", "version": 1, "input_shape": [8, 8, 1], "num_classes": 10,
            "fc_layers": [], "conv_layers": [{"filt_x": 3, "filt_y": 3, "n_filters": 4,
                                              "pool_x": 1, "pool_y": 1, "sub_x": 1, "sub_y": 1}]}
    spec.update(change)
    return json.dumps(spec)


def _gz_tar_with_a_huge_member(path, name, size):
    """A small .tar.gz whose first member declares ``size`` bytes (its data is cut short)."""
    info = tarfile.TarInfo(name)
    info.size = size
    with gzip.open(path, "wb") as f:
        f.write(info.tobuf() + bytes(4096))


def _model_zip(path, config):
    with zipfile.ZipFile(path, "w") as z:
        if config is not None:
            z.writestr("config.json", config)
        z.writestr("metadata.json", "{}")


def _real_models(root):
    """A tiny real model (input 4 features, not digits' 8x8 images) and one whose weights
    are NaN (a diverged model)."""
    from keras_cnas._keras import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    (root / "model_ok").mkdir()
    model.save(root / "model_ok" / "model.keras")
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.set_weights([np.full(w.shape, np.nan, np.float32) for w in model.get_weights()])
    (root / "model_nan").mkdir()
    model.save(root / "model_nan" / "model.keras")


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    files = {
        "deep.json": "[" * 50_000 + "]" * 50_000,
        "digits.json": '{"space": "descriptor", "x": ' + "9" * 5000 + "}",
        "layers.json": _descriptor(conv_layers=[json.loads(_descriptor())["conv_layers"][0]] * 100_000),
        "filters.json": _descriptor(fc_layers=[{"n_hidden": 10**9}]),
        "cell.json": json.dumps({"space": "enas_cell", "cell": [[0, "sep3x3", 0, "avg3x3"]] * 1000,
                                 "filters": 20, "input_shape": [32, 32, 3], "num_classes": 10,
                                 "num_layers": 3, "reduction_layers": [1, 2], "version": 1}),
        "empty.json": "",
        "array.json": "[1, 2, 3]",
        "space.json": '{"space": "nope"}',
        "missing_field.json": '{"space": "descriptor", "version": 1}',
        "wrong_type.json": _descriptor(num_classes="ten"),
        "huge_input.json": _descriptor(input_shape=[60000, 60000, 3]),
        "negative.json": _descriptor(num_classes=-3),
        "nan.json": _descriptor(num_classes=float("nan")).replace("NaN", "NaN"),
        "pool.json": _descriptor(conv_layers=[{"filt_x": 3, "filt_y": 3, "n_filters": 4,
                                               "pool_x": 99, "pool_y": 1, "sub_x": 1, "sub_y": 1}]),
        "text.json": "this is not json",
    }
    for name, text in files.items():
        (root / name).write_text(text)
    (root / "binary.json").write_bytes(bytes(range(256)) * 4)
    (root / "latin1.json").write_bytes('{"space": "d\xe9scriptor"}'.encode("latin-1"))
    (root / "big.json").write_bytes(b" " * (5 * 2**20) + b"{}")
    (root / "a_dir").mkdir()
    (root / "a_file").write_text("x")
    # Data
    (root / "mnist_garbage").mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (root / "mnist_garbage" / name).write_bytes(b"garbage" * 10)
    (root / "mnist_gz").mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (root / "mnist_gz" / f"{name}.gz").write_bytes(gzip.compress(b"x" * 1000)[:30])
    (root / "garbage.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    _gz_tar_with_a_huge_member(root / "huge.tar.gz", "cifar-10-batches-py/data_batch_1", 2**30)
    # Models
    for name, content in {"h5": b"\x89HDF\r\n\x1a\n" + bytes(200), "noise": os.urandom(300)}.items():
        (root / f"model_{name}").mkdir()
        (root / f"model_{name}" / "model.keras").write_bytes(content)
    lam = json.dumps({"class_name": "Sequential", "config": {"layers": [
        {"class_name": "Lambda", "config": {"name": "evil", "function": "..."}}]}})
    for name, config in {"lambda": lam, "noconfig": None, "deepconfig": "[" * 5000 + "]" * 5000,
                         "badjson": "{not json"}.items():
        (root / f"model_{name}").mkdir()
        _model_zip(root / f"model_{name}" / "model.keras", config)
    (root / "model_empty").mkdir()
    _real_models(root)
    # Search directories
    space = CategoricalSpace([3, 3])
    table = {space.from_decisions([a, b]).key(): {"acc": (a + b) / 4}
             for a in range(3) for b in range(3)}
    cnas.search(space, strategy=RandomSearch(num_samples=3),
                evaluator=TabularEvaluator(table, metric="acc"), search_dir=root / "search",
                verbose=False)
    db = (root / "search" / "trials.db").read_bytes()
    variants = {"garbage": b"not sqlite at all" * 100, "empty": b"", "truncated": db[:3000]}
    for name, content in variants.items():
        (root / f"store_{name}").mkdir()
        (root / f"store_{name}" / "trials.db").write_bytes(content)
    for name, sql in {"badjson": "UPDATE trials SET metrics_json='{oops' WHERE id=0",
                      "badstatus": "UPDATE trials SET status='EXPLODED' WHERE id=1",
                      "deepspec": "UPDATE trials SET spec_json='" + "[" * 5000 + "]" * 5000 + "'",
                      "schema": "UPDATE state SET value_json='99' WHERE key='schema_version'",
                      "nostate": "DELETE FROM state WHERE key='strategy'"}.items():
        (root / f"store_{name}").mkdir()
        (root / f"store_{name}" / "trials.db").write_bytes(db)
        with sqlite3.connect(root / f"store_{name}" / "trials.db") as con:
            con.execute(sql)
    (root / "store_dir").mkdir()
    (root / "store_dir" / "trials.db").mkdir()
    (root / "foreign").mkdir()
    (root / "foreign" / "best").mkdir()
    (root / "locked").mkdir()
    (root / "compress_out").mkdir()
    (root / "compress_out" / "summary.json").write_text("{}")
    return root


# --- the cases: (arguments, exit code, what the one error line must name) -------------------

SPEC_FILES = ["deep.json", "digits.json", "layers.json", "filters.json", "cell.json", "empty.json",
              "array.json", "space.json", "missing_field.json", "wrong_type.json",
              "huge_input.json", "negative.json", "pool.json", "text.json", "binary.json",
              "latin1.json", "big.json", "a_dir", "missing.json"]

ESTIMATE = [
    *[([f"--spec={{bad}}/{f}", "--nobuild"], USAGE, "--spec") for f in SPEC_FILES],
    ([], USAGE, "--spec"),
    (["--spec={bad}/pool.json", "--reference=vgg19"], USAGE, "--spec"),
    (["--reference=resnet9000"], USAGE, "--reference"),
    (["--reference=vgg19", "--input_shape=1,2"], USAGE, "--input_shape"),
    (["--reference=vgg19", "--input_shape=a,b,c"], USAGE, "--input_shape"),
    (["--reference=vgg19", "--input_shape=0,0,3"], USAGE, "--input_shape"),
    (["--reference=vgg19", "--input_shape=8,8,3", "--nobuild"], USAGE, "--reference"),
    (["--reference=vgg19", "--num_classes=0"], USAGE, "--num_classes"),
    (["--reference=vgg19", "--num_classes=ten"], USAGE, "--num_classes"),
    (["--reference=mobilenet_v2", "--alpha=0"], USAGE, "--alpha"),
    (["--reference=vgg19", "--bytes_per_element=0"], USAGE, "--bytes_per_element"),
    (["--reference=vgg19", "--json=maybe"], USAGE, "--json"),
    (["--bogus_flag=1"], USAGE, "bogus_flag"),
    (["--spec={bad}/pool.json", "stray"], USAGE, "stray"),
    (["--spec="], USAGE, "--spec"),
]

STORES = ["garbage", "empty", "truncated", "badjson", "badstatus", "deepspec", "schema"]
REPORT = [
    *[([f"--search_dir={{bad}}/store_{s}", "--noplots"], ERROR, "--search_dir") for s in STORES],
    ([], USAGE, "--search_dir"),
    (["--search_dir={bad}/nowhere"], USAGE, "--search_dir"),
    (["--search_dir={bad}/a_file"], USAGE, "--search_dir"),
    (["--search_dir={bad}/store_dir"], USAGE, "--search_dir"),
    (["--search_dir={bad}/search", "--out=/proc/forbidden", "--noplots"], ERROR, "--out"),
    (["--search_dir={bad}/search", "--out={bad}/a_file", "--noplots"], ERROR, "--out"),
    (["--search_dir={bad}/search", "--top=0"], USAGE, "--top"),
    (["--search_dir={bad}/search", "--top=many"], USAGE, "--top"),
    (["--search_dir={bad}/search", "--plots=perhaps"], USAGE, "--plots"),
    (["--search_dir={bad}/search", "--bogus"], USAGE, "bogus"),
    (["--search_dir={bad}/search", "stray"], USAGE, "stray"),
]

S = ["--strategy=random", "--max_trials=1", "--traction_epochs=1"]
SEARCH = [
    ([], USAGE, "--search_dir"),
    (["--search_dir="], USAGE, "--search_dir"),
    (["--search_dir=."], USAGE, "--search_dir"),
    (["--search_dir=~"], USAGE, "--search_dir"),
    (["--search_dir=/"], USAGE, "--search_dir"),
    (["--search_dir={bad}/a_file"], USAGE, "--search_dir"),
    (["--search_dir={tmp}/s", "--seed=" + "1" * 25], USAGE, "--seed"),
    (["--search_dir={tmp}/s", "--seed=-1"], USAGE, "--seed"),
    (["--search_dir={tmp}/s", "--max_trials=0"], USAGE, "--max_trials"),
    (["--search_dir={tmp}/s", "--max_trials=lots"], USAGE, "--max_trials"),
    (["--search_dir={tmp}/s", "--workers=0"], USAGE, "--workers"),
    (["--search_dir={tmp}/s", "--dataset=imagenet"], USAGE, "--dataset"),
    (["--search_dir={tmp}/s", "--space=everything"], USAGE, "--space"),
    (["--search_dir={tmp}/s", "--strategy=magic"], USAGE, "--strategy"),
    (["--search_dir={tmp}/s", "--resume", "--overwrite"], USAGE, "--resume"),
    (["--search_dir={tmp}/s", "--export=int8", "--nofinalize"], USAGE, "--export"),
    (["--search_dir={tmp}/s", "--validation_split=0"], USAGE, "--validation_split"),
    (["--search_dir={tmp}/s", "--validation_split=2"], USAGE, "--validation_split"),
    (["--search_dir={tmp}/s", "--max_params=-5"], USAGE, "max_params"),
    (["--search_dir={tmp}/s", "--max_params=many"], USAGE, "--max_params"),
    (["--search_dir={tmp}/s", "--max_flops=0"], USAGE, "max_flops"),
    (["--search_dir={tmp}/s", "--max_fraction=0.5"], USAGE, "--max_fraction"),
    (["--search_dir={tmp}/s", "--reference={bad}/pool.json"], USAGE, "--reference"),
    (["--search_dir={tmp}/s", "--max_fraction=0.5", "--reference={bad}/nowhere"], USAGE,
     "--reference"),
    (["--search_dir={tmp}/s", "--max_fraction=0.5", "--reference={bad}/deep.json"], USAGE,
     "--reference"),
    (["--search_dir={tmp}/s", "--max_fraction=0.5", "--reference={bad}/layers.json"], USAGE,
     "--reference"),
    (["--search_dir={tmp}/s", "--max_fraction=0"], USAGE, "--max_fraction"),
    (["--search_dir={tmp}/s", "--dataset=mnist", "--data_dir={bad}/nowhere"], ERROR,
     "--data_dir"),
    (["--search_dir={tmp}/s", "--dataset=mnist", "--data_dir={bad}/mnist_garbage"], ERROR,
     "--data_dir"),
    (["--search_dir={tmp}/s", "--dataset=mnist", "--data_dir={bad}/mnist_gz"], ERROR,
     "--data_dir"),
    (["--search_dir={tmp}/s", "--dataset=mnist", "--data_dir={bad}/a_file"], ERROR, "--data_dir"),
    (["--search_dir={tmp}/s", "--dataset=cifar10", "--data_dir={bad}/nowhere"], ERROR,
     "--data_dir"),
    (["--search_dir={tmp}/s", "--dataset=cifar10", "--data_dir={bad}/garbage.tar.gz"], ERROR,
     "--data_dir"),
    (["--search_dir={tmp}/s", "--dataset=cifar10", "--data_dir={bad}/huge.tar.gz"], ERROR,
     "--data_dir"),
    (["--search_dir={tmp}/s", "--dataset=cifar10", "--data_dir={bad}/a_dir"], ERROR, "--data_dir"),
    (["--search_dir={tmp}/s", "--lr_decay_epochs=a,b"], USAGE, "--lr_decay_epochs"),
    (["--search_dir={tmp}/s", "--strategy=reinforce", "--penalty_bounds=oops"], USAGE,
     "--penalty_bounds"),
    (["--search_dir={tmp}/s", "--strategy=reinforce", "--penalty_bounds=train_seconds=-1"], USAGE,
     "--penalty_bounds"),
    # another strategy's flag, set explicitly, would be silently ignored
    (["--search_dir={tmp}/s", "--strategy=random", "--num_full=3"], USAGE,
     "--num_full only applies to --strategy=montecarlo"),
    (["--search_dir={tmp}/s", "--population_size=10"], USAGE,
     "--population_size only applies to --strategy=evolution"),
    (["--search_dir={tmp}/s", "--strategy=evolution", "--alpha=0.2"], USAGE,
     "--strategy=benas or --strategy=reinforce"),
    (["--search_dir={tmp}/s", "--runner=inprocess", "--workers=2"], USAGE, "--workers"),
    (["--search_dir={tmp}/s", "--ray_address=auto"], USAGE, "--ray_address"),
    (["--search_dir={tmp}/s", "--space=blockset", "--stage_positions=1,2"], USAGE,
     "--stage_positions"),
    (["--search_dir={tmp}/s", "--space=blockset", "--stage_positions=a,b,c,d,e,f,g"], USAGE,
     "--stage_positions"),
    (["--search_dir={tmp}/s", "--strategy=benas"], USAGE, "--strategy"),
    (["--search_dir={tmp}/s", "--max_arena_bytes=1000", "--export=float16"], USAGE,
     "--max_arena_bytes"),
    (["--search_dir={tmp}/s", "--trial_time_limit=0"], USAGE, "--trial_time_limit"),
    (["--search_dir={tmp}/s", "--batch_size=0"], USAGE, "--batch_size"),
    (["--search_dir={tmp}/s", "--learning_rate=0"], USAGE, "--learning_rate"),
    (["--search_dir={tmp}/s", "--momentum=2"], USAGE, "--momentum"),
    (["--search_dir={tmp}/s", "--max_train_examples=0"], USAGE, "--max_train_examples"),
    (["--search_dir={tmp}/s", "--strategy=montecarlo", "--num_random=-1"], USAGE, "--num_random"),
    (["--search_dir={tmp}/s", "--width_multiplier=0"], USAGE, "--width_multiplier"),
    (["--search_dir={tmp}/s", "--max_stride=0"], USAGE, "--max_stride"),
    (["--search_dir={tmp}/s", "--max_stride=two"], USAGE, "--max_stride"),
    (["--search_dir={tmp}/s", "--max_skip_span=-1"], USAGE, "--max_skip_span"),
    (["--search_dir={tmp}/s", "--global_pool=maybe"], USAGE, "--global_pool"),
    (["--search_dir={tmp}/s", "--bogus"], USAGE, "bogus"),
    (["--search_dir={tmp}/s", "stray"], USAGE, "stray"),
    (["--search_dir={tmp}/nothing", "--resume", *S], ERROR, "--search_dir"),
    (["--search_dir={bad}/search", *S], ERROR, "--search_dir"),
    (["--search_dir={bad}/search", "--resume", *S], ERROR, "--search_dir"),
    (["--search_dir={bad}/store_garbage", "--resume", *S], ERROR, "--search_dir"),
    (["--search_dir={bad}/store_truncated", "--resume", *S], ERROR, "--search_dir"),
    (["--search_dir={bad}/foreign", *S], ERROR, "--search_dir"),
    (["--search_dir={bad}/locked", *S], ERROR, "--search_dir"),
    (["--search_dir=/proc/forbidden", *S], ERROR, "--search_dir"),
]

EXPORT = [
    ([], USAGE, "--model"),
    (["--model={bad}/nowhere", "--quantize=none"], USAGE, "--model"),
    (["--model={bad}/model_empty", "--quantize=none"], USAGE, "--model"),
    (["--model={bad}/a_file", "--quantize=none"], USAGE, "--model"),
    *[([f"--model={{bad}}/model_{m}", "--quantize=none"], ERROR, "--model")
      for m in ("h5", "noise", "lambda", "noconfig", "deepconfig", "badjson")],
    (["--model={bad}/model_h5/model.keras", "--quantize=none"], ERROR, "--model"),
    (["--model={bad}/model_ok", "--quantize=none", "--out=/proc/forbidden",
      "--latency_runs=1"], ERROR, "--out"),
    (["--model={bad}/model_ok", "--quantize=none", "--dataset=digits", "--latency_runs=1"], ERROR,
     "--dataset"),
    (["--model={bad}/model_ok", "--quantize=none", "--max_tflite_bytes=10",
      "--latency_runs=1"], ERROR, "--max_tflite_bytes=10"),
    (["--model={bad}/model_nan", "--quantize=int8", "--dataset=digits", "--out={tmp}/nan",
      "--latency_runs=1"], ERROR, "--model"),
    (["--model={bad}/model_h5", "--quantize=bogus"], USAGE, "--quantize"),
    (["--model={bad}/model_h5"], USAGE, "--dataset"),
    (["--model={bad}/model_h5", "--quantize=dynamic", "--micro"], USAGE, "--micro"),
    (["--model={bad}/model_h5", "--quantize=none", "--int8_io"], USAGE, "--int8_io"),
    (["--model={bad}/model_h5", "--quantize=none", "--max_tflite_bytes=-1"], USAGE,
     "max_tflite_bytes"),
    (["--model={bad}/model_h5", "--quantize=none", "--latency_runs=0"], USAGE, "--latency_runs"),
    (["--model={bad}/model_h5", "--quantize=none", "--num_threads=0"], USAGE, "--num_threads"),
    (["--model={bad}/model_h5", "--quantize=none", "--seed=" + "9" * 30], USAGE, "--seed"),
    (["--model={bad}/model_h5", "--quantize=none", "--validation_split=1"], USAGE,
     "--validation_split"),
    (["--model={bad}/model_h5", "--dataset=mnist", "--data_dir={bad}/nowhere"], USAGE,
     "--dataset"),
    (["--model={bad}/model_h5", "--dataset=imagenet"], USAGE, "--dataset"),
    (["--model={bad}/model_h5", "--quantize=none", "--bogus"], USAGE, "bogus"),
    (["--model={bad}/model_h5", "--quantize=none", "stray"], USAGE, "stray"),
]

C = ["--out_dir={tmp}/c"]
COMPRESS = [
    ([], USAGE, "--baseline"),
    (["--baseline=resnet8"], USAGE, "--out_dir"),
    (["--baseline=resnet7", *C], USAGE, "--baseline"),
    (["--baseline={bad}/nowhere", *C], USAGE, "--baseline"),
    *[([f"--baseline={{bad}}/model_{m}", *C], USAGE, "--baseline")
      for m in ("h5", "noise", "lambda", "noconfig", "deepconfig", "badjson")],
    (["--baseline={bad}/model_ok", "--finetune_epochs=0", *C], USAGE, "--baseline"),
    (["--baseline=resnet8", "--method=magic", *C], USAGE, "--method"),
    (["--baseline=resnet8", "--flops_fraction=0", *C], USAGE, "--flops_fraction"),
    (["--baseline=resnet8", "--flops_fraction=2", *C], USAGE, "--flops_fraction"),
    (["--baseline=resnet8", "--sparsity_m_by_n=3", *C], USAGE, "--sparsity_m_by_n"),
    (["--baseline=resnet8", "--sparsity_m_by_n=a,b", *C], USAGE, "--sparsity_m_by_n"),
    (["--baseline=resnet8", "--qat_epochs=1", *C], USAGE, "--qat_epochs"),
    (["--baseline=resnet8", "--out_dir="], USAGE, "--out_dir"),
    (["--baseline=resnet8", "--out_dir={bad}/a_file"], USAGE, "--out_dir"),
    (["--baseline=resnet8", "--out_dir={bad}/compress_out"], USAGE, "--out_dir"),
    (["--baseline=resnet8", "--seed=-1", *C], USAGE, "--seed"),
    (["--baseline=resnet8", "--min_width=1", *C], USAGE, "--min_width"),
    (["--baseline=resnet8", "--batch_size=0", *C], USAGE, "--batch_size"),
    (["--baseline=resnet8", "--bogus", *C], USAGE, "bogus"),
    (["--baseline=resnet8", "stray", *C], USAGE, "stray"),
    (["--baseline=resnet8", "--dataset=mnist", "--data_dir={bad}/nowhere", *C], USAGE,
     "--dataset"),
]

BINARIES = {"estimate_costs": ESTIMATE, "report": REPORT, "search": SEARCH,
            "export_tflite": EXPORT, "compress": COMPRESS}
CASES = [(tool, i) for tool, cases in BINARIES.items() for i in range(len(cases))]


#: First on every search command line (a case's own flags come later and win): should a
#: case be accepted after all, its search is one tiny trial, not the default's hours.
SAFE_SEARCH = ["--max_trials=1", "--traction_epochs=1", "--full_epochs=1", "--max_conv_layers=1",
               "--max_fc_layers=0", "--max_filters=2"]


def _argv(args, bad, tmp, tool=None):
    prefix = SAFE_SEARCH if tool == "search" else []
    return [a.replace("{bad}", str(bad)).replace("{tmp}", str(tmp)) for a in prefix + args]


@pytest.fixture(scope="module")
def probed(bad, tmp_path_factory):
    """Every case of every binary, run in one probe process per binary."""
    tmp = tmp_path_factory.mktemp("out")
    results = {}
    with SearchDirLock(bad / "locked"):  # held by this process: the binary must be refused
        for tool, cases in BINARIES.items():
            cases_file, results_file = tmp / f"{tool}.cases.json", tmp / f"{tool}.results.json"
            cases_file.write_text(json.dumps([_argv(args, bad, tmp, tool) for args, _, _ in cases]))
            proc = subprocess.run([sys.executable, str(REPO / "tests" / "cli_probe.py"),
                                   str(TOOLS / f"{tool}.py"), str(cases_file), str(results_file)],
                                  env=ENV, capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stderr[-3000:]
            results[tool] = json.loads(results_file.read_text())
    return results


def test_at_least_a_hundred_bad_inputs_over_five_binaries():
    assert len(CASES) >= 100 and len(BINARIES) == 5


@pytest.mark.parametrize("tool, index", CASES, ids=[f"{t}-{i}" for t, i in CASES])
def test_a_bad_input_is_one_line_naming_the_argument(probed, tool, index):
    args, code, needle = BINARIES[tool][index]
    result = probed[tool][index]
    output = result["stdout"] + result["stderr"]
    assert "Traceback" not in output, output[-2000:]
    errors = [line for line in result["stderr"].splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result["stderr"][-2000:]
    assert needle in errors[0], errors[0]
    assert result["code"] == code, (result["code"], errors[0])


def test_verbose_errors_keeps_the_traceback(bad):
    proc = subprocess.run([sys.executable, str(TOOLS / "report.py"), "--verbose_errors",
                           f"--search_dir={bad}/store_garbage", "--noplots"], env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "StoreError" in proc.stderr


# --- the same through real processes ----------------------------------------------------------

SUBPROCESS = [("estimate_costs", 0), ("estimate_costs", 16), ("report", 0), ("report", 8),
              ("search", 6), ("search", 27), ("search", 53), ("search", 58),
              ("export_tflite", 4), ("compress", 4)]


@pytest.mark.parametrize("tool, index", SUBPROCESS, ids=[f"{t}-{i}" for t, i in SUBPROCESS])
def test_a_bad_input_through_a_real_process(bad, tmp_path, tool, index):
    args, code, needle = BINARIES[tool][index]
    proc = subprocess.run([sys.executable, str(TOOLS / f"{tool}.py"),
                           *_argv(args, bad, tmp_path, tool)],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr[-2000:]
    assert proc.returncode == code


@pytest.mark.parametrize("sig, code", [
    (signal.SIGINT, 130),
    pytest.param(signal.SIGTERM, 128 + signal.SIGTERM, marks=pytest.mark.slow)])
def test_ctrl_c_prints_the_resume_hint_and_exits_130(tmp_path, sig, code):
    search_dir = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, str(TOOLS / "search.py"), f"--search_dir={search_dir}",
         "--strategy=random", "--max_trials=50", "--traction_epochs=1",
         "--max_conv_layers=1", "--max_fc_layers=0", "--max_filters=4", "--nofinalize"],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # As a terminal would: a test run started in the background by a non-interactive
        # shell inherits SIGINT ignored, and Python keeps it so (the tool never sees Ctrl-C).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in proc.stdout:  # wait for the first finished trial
            if line.startswith("[1/"):
                break
        proc.send_signal(sig)  # SIGTERM (timeout, Slurm, docker stop): the same clean-up
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in out + err
    assert "continue with --resume" in err and "interrupted after" in err
