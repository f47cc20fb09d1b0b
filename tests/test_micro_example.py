"""examples/micro: the headers --micro writes compile into a C++ program with g++.

Always: the generated model_data.h / model_data.cc compile, link and run, and the constants a
firmware reads (length, kTensorArenaSize, input / output quantization) match export.json.

The example program itself needs TensorFlow Lite Micro's headers, which nothing installed
ships: the tflite-micro wheel holds only its Python extension (``_runtime.so``, no headers,
and its C++ symbols in a namespace that differs from the checkout's), and Debian has no
TFLite Micro package. Point TFLM_ROOT at a tflite-micro checkout, FLATBUFFERS_INCLUDE at the
flatbuffers headers its schema asks for (and GEMMLOWP_INCLUDE / RUY_INCLUDE, default: the
TensorFlow wheel's copies) to compile it; add TFLM_LIB (e.g. from examples/micro/build_tflm.sh)
to link it, run one inference and compare with LiteRT.
"""

import json
import os
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

import keras_cnas as cnas
from keras_cnas._keras import keras, tf
from keras_cnas.export import export_model

REPO = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "micro"
GXX = shutil.which("g++")
pytestmark = pytest.mark.skipif(GXX is None, reason="g++ is not installed")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small digits CNN exported as a firmware ships it: int8 with int8 I/O, --micro."""
    data = cnas.data.load("digits")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.MaxPool2D(), keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.x_train, data.y_train, epochs=1, batch_size=64, verbose=0)
    out = tmp_path_factory.mktemp("micro")
    report = export_model(model, out, "int8", data, micro=True, int8_io=True, latency_runs=5)
    return out, report, data


def test_generated_model_data_compiles_links_and_matches_export_json(exported, tmp_path):
    out, report, _ = exported
    check = tmp_path / "check.cc"
    check.write_text(
        '#include <cstdio>\n#include <cstdint>\n#include "model_data.h"\n'
        'static_assert(kTensorArenaSize % 16 == 0, "arena size is 16-byte aligned");\n'
        "int main() {\n"
        '  std::printf("%u %d %d %d %.9g %d %.9g %d %d\\n", model_data_len, kTensorArenaSize,\n'
        "              kInputElements, kOutputElements, kInputScale, kInputZeroPoint,\n"
        "              kOutputScale, kOutputZeroPoint,\n"
        "              static_cast<int>(reinterpret_cast<std::uintptr_t>(model_data) % 16));\n"
        "}\n")
    binary = tmp_path / "check"
    subprocess.run([GXX, "-std=c++11", "-Wall", "-Werror", f"-I{out}", str(check),
                    str(out / "model_data.cc"), "-o", str(binary)], check=True, timeout=120)
    fields = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout.split()
    length, arena, n_in, n_out, s_in, z_in, s_out, z_out, misalign = fields
    assert int(length) == report["tflite_bytes"] == (out / "model.tflite").stat().st_size
    assert int(arena) == report["tensor_arena_size"] >= report["arena_bytes"] + 1024
    assert (int(n_in), int(n_out)) == (64, 10) and int(misalign) == 0
    assert report["input"]["dtype"] == report["output"]["dtype"] == "INT8"
    assert float(s_in) == pytest.approx(report["input"]["scale"], rel=1e-6)
    assert int(z_in) == report["input"]["zero_point"]
    assert float(s_out) == pytest.approx(report["output"]["scale"], rel=1e-6)
    assert int(z_out) == report["output"]["zero_point"]
    saved = json.loads((out / "export.json").read_text())
    assert saved["input"] == report["input"] and saved["tensor_arena_size"] == int(arena)
    ops = (out / "model_data_ops.h").read_text()
    for method in ("AddConv2D", "AddMaxPool2D", "AddReshape", "AddFullyConnected", "AddSoftmax"):
        assert f"resolver.{method}()" in ops
    assert "MicroMutableOpResolver<kModelDataNumOps>" in ops and "kModelDataNumOps = 5;" in ops


def _tflm_flags() -> list[str] | None:
    root, flatbuffers = os.environ.get("TFLM_ROOT"), os.environ.get("FLATBUFFERS_INCLUDE")
    if not root or not flatbuffers:
        return None
    tf_external = pathlib.Path(tf.__file__).parent / "include" / "external"
    return [f"TFLM_ROOT={root}", f"FLATBUFFERS_INCLUDE={flatbuffers}",
            f"GEMMLOWP_INCLUDE={os.environ.get('GEMMLOWP_INCLUDE', tf_external / 'gemmlowp')}",
            f"RUY_INCLUDE={os.environ.get('RUY_INCLUDE', tf_external / 'ruy')}"]


NO_TFLM = ("TFLite Micro headers not available: set TFLM_ROOT (a tflite-micro checkout) and "
           "FLATBUFFERS_INCLUDE; the tflite-micro wheel ships no headers and Debian no package")


@pytest.mark.skipif(_tflm_flags() is None, reason=NO_TFLM)
def test_the_example_compiles_against_tflite_micro(exported, tmp_path):
    out, _, _ = exported
    done = subprocess.run(["make", "-C", str(EXAMPLE), "syntax", f"MODEL_DIR={out}",
                           *_tflm_flags()], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.skipif(_tflm_flags() is None or not os.environ.get("TFLM_LIB"),
                    reason=NO_TFLM + "; TFLM_LIB (examples/micro/build_tflm.sh) links it")
def test_the_example_runs_one_inference_like_litert(exported, tmp_path):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    out, report, data = exported
    scale, zero = report["input"]["scale"], report["input"]["zero_point"]
    image = np.clip(np.round(data.x_test[:1] / scale + zero), -128, 127).astype(np.int8)
    (tmp_path / "input.bin").write_bytes(image.tobytes())
    built = subprocess.run(["make", "-C", str(EXAMPLE), "micro_example", f"MODEL_DIR={out}",
                            f"OUT={tmp_path}", f"TFLM_LIB={os.environ['TFLM_LIB']}",
                            *_tflm_flags()], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    done = subprocess.run([str(tmp_path / "micro_example"), str(tmp_path / "input.bin")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    micro = np.array([float(v) for v in done.stdout.split()])
    assert micro.shape == (10,)
    # LiteRT's reference kernels compute what TFLite Micro's do, bit for bit (XNNPACK rounds
    # differently: up to 6 output steps on 17 of 200 MNIST images, docs/results.md).
    interpreter = Interpreter(model_path=str(out / "model.tflite"),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    interpreter.invoke()
    q = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0].astype(np.float64)
    litert = report["output"]["scale"] * (q - report["output"]["zero_point"])
    np.testing.assert_allclose(micro, litert, atol=1e-6)
    assert "arena used: " in done.stderr
