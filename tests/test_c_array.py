"""The C array of a flatbuffer compiles, links, keeps its alignment and round-trips."""

import re
import shutil
import subprocess

import numpy as np
import pytest

from keras_cnas.export.c_array import to_c_array
from keras_cnas.export.flatbuffer import TFLiteFormatError

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")


def _flatbuffer(size: int = 5000, seed: int = 0) -> bytes:
    """TFLite-looking bytes: a root offset, the TFL3 identifier, then every byte value."""
    body = np.random.default_rng(seed).integers(0, 256, size - 8, dtype=np.uint8).tobytes()
    return b"\x1c\x00\x00\x00TFL3" + bytes(range(256)) + body[256:]


def _parse_array(source: str, name: str) -> bytes:
    match = re.search(rf"const unsigned char {name}\[\] = \{{(.*?)\}};", source, re.S)
    return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", match.group(1)))


def test_bytes_round_trip_and_length_is_declared():
    data = _flatbuffer()
    header, source = to_c_array(data, name="model_data")
    assert _parse_array(source, "model_data") == data
    assert f"const unsigned int model_data_len = {len(data)};" in source
    assert "alignas(16) const unsigned char model_data[] = {" in source
    assert "extern const unsigned char model_data[];" in header
    assert "extern const unsigned int model_data_len;" in header
    assert header.count("MODEL_DATA_H_") == 3  # #ifndef, #define, #endif comment
    assert '#include "model_data.h"' in source


@needs_gxx
def test_generated_pair_compiles_links_and_reproduces_the_bytes(tmp_path):
    data = _flatbuffer(seed=1)
    header, source = to_c_array(data, name="g_model")
    (tmp_path / "g_model.h").write_text(header)
    (tmp_path / "g_model.cc").write_text(source)
    (tmp_path / "main.cc").write_text(
        '#include <cstdint>\n#include <cstdio>\n#include "g_model.h"\n'
        "int main() {\n"
        "  if (reinterpret_cast<std::uintptr_t>(g_model) % 16 != 0) return 2;\n"
        "  for (unsigned int i = 0; i < g_model_len; ++i) std::printf(\"%02x\", g_model[i]);\n"
        "  return 0;\n}\n")
    compile_ = subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-c", "g_model.cc"],
                              cwd=tmp_path, capture_output=True, text=True)
    assert compile_.returncode == 0, compile_.stderr
    build = subprocess.run(["g++", "-std=c++17", "-o", "dump", "main.cc", "g_model.o"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(tmp_path / "dump")], capture_output=True, text=True)
    assert run.returncode == 0 and bytes.fromhex(run.stdout) == data


@needs_gxx
def test_header_alone_compiles_and_guards_double_inclusion(tmp_path):
    header, _ = to_c_array(_flatbuffer(64), name="tiny_model")
    (tmp_path / "tiny_model.h").write_text(header)
    (tmp_path / "use.cc").write_text('#include "tiny_model.h"\n#include "tiny_model.h"\n'
                                     "unsigned int size() { return tiny_model_len; }\n")
    done = subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-c", "use.cc"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_header_name_is_configurable():
    _, source = to_c_array(_flatbuffer(64), name="net", header_name="models/net_data.h")
    assert '#include "models/net_data.h"' in source


@pytest.mark.parametrize("name", ["", "1model", "model-data", "model data", "int", "class", "a.b", 7])
def test_invalid_names_are_rejected(name):
    with pytest.raises(ValueError, match="name: .* is not a valid C identifier"):
        to_c_array(_flatbuffer(64), name=name)


def test_non_tflite_bytes_are_rejected():
    with pytest.raises(TFLiteFormatError, match="not a TFLite flatbuffer"):
        to_c_array(b"\x00" * 64)
    with pytest.raises(TFLiteFormatError, match="expected the bytes"):
        to_c_array("model.tflite")
