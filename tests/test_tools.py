"""The absl binaries, run as a user would run them."""

import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_tool(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_estimate_costs_json_params_equal_keras_applications_mobilenet_v2():
    out = run_tool("tools/estimate_costs.py", "--reference=mobilenet_v2", "--input_shape=224,224,3",
                   "--num_classes=1000", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["params"] == report["keras_params"] == 3538984
    assert {"params", "trainable_params", "madds", "flops", "memory_bytes",
            "peak_activation_bytes", "keras_params"} <= set(report)


def test_estimate_costs_reads_a_spec_file_and_prints_a_table(tmp_path):
    from keras_cnas.spaces import reference

    path = tmp_path / "spec.json"
    path.write_text(reference.vgg19((32, 32, 3), 10).to_json())
    out = run_tool("tools/estimate_costs.py", f"--spec={path}", "--nobuild")
    assert out.returncode == 0, out.stderr
    assert "conv64x3x3 > conv64x3x3/p2x2s2x2" in out.stdout
    assert "memory_bytes" in out.stdout and "38,964,426" in out.stdout


@pytest.mark.parametrize("args, message", [
    ([], "pass exactly one of --spec=PATH.json or --reference=NAME"),
    (["--reference=resnet"], "value should be one of <mobilenet_v2|vgg19>"),
    (["--reference=vgg19", "--input_shape=32,32"], "--input_shape must be three positive integers"),
    (["--reference=vgg19", "--num_classes=0"], "num_classes"),
    (["--spec=/no/such/spec.json"], "--spec: /no/such/spec.json does not exist"),
    (["--reference=vgg19", "--input_shape=8,8,1"], "conv_layers[11]: a 2x2 pool"),
])
def test_estimate_costs_bad_flags_give_a_usage_error_not_a_traceback(args, message):
    out = run_tool("tools/estimate_costs.py", "--nobuild", *args)
    assert out.returncode != 0
    assert message in out.stdout + out.stderr
    assert "Traceback" not in out.stderr


def test_malformed_spec_file_is_a_usage_error_naming_the_field(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"space": "descriptor", "version": 1, "input_shape": [8, 8, 1], '
                    '"num_classes": 10, "conv_layers": [], "fc_layers": [{"n_hidden": -3}]}')
    out = run_tool("tools/estimate_costs.py", f"--spec={path}", "--nobuild")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "fc_layers[0].n_hidden: -3 is not >= 1" in out.stdout + out.stderr
