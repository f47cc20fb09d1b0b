"""tools/compress.py, run as a user would."""

import json
import pathlib
import re
import subprocess
import sys

import pytest

from keras_cnas.export import load_saved_model

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_tool(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "tools/compress.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory) -> pathlib.Path:
    """ResNet-8 (thin) trained on digits, compressed by group lasso to a third of its FLOPs,
    exported to int8."""
    out = tmp_path_factory.mktemp("compress") / "run"
    result = run_tool("--baseline=resnet8", "--width=8", "--baseline_epochs=4", "--dataset=digits",
                      "--method=group_lasso", "--flops_fraction=0.33", "--epochs=1",
                      "--finetune_epochs=3", "--export=int8", f"--out_dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return out


def test_compress_writes_the_model_summary_and_an_int8_tflite(resnet_run):
    out = resnet_run
    names = {p.name for p in out.iterdir()}
    assert {"model.keras", "summary.json", "flags.json", "model.tflite", "labels.txt",
            "export.json", "baseline"} <= names
    assert {p.name for p in (out / "baseline").iterdir()} == {"model.keras", "spec.json"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "group_lasso" and summary["target"] == {"flops": 0.33}
    assert summary["target_met"] is True
    assert summary["costs"]["flops"] <= 0.33 * summary["baseline_costs"]["flops"]
    assert summary["baseline_info"]["spec"]["space"] == "resnet"
    model = load_saved_model(out / "model.keras")
    assert model.count_params() == summary["costs"]["params"]
    assert summary["export"]["tflite_bytes"] == (out / "model.tflite").stat().st_size
    assert 0 <= summary["export"]["tflite_accuracy"] <= 1
    # A briefly trained thin network has close scores; int8 may flip a few of them.
    assert summary["export"]["agreement"] >= 0.8
    assert abs(summary["export"]["tflite_accuracy"] - summary["export"]["keras_accuracy"]) <= 0.1
    assert json.loads((out / "flags.json").read_text())["method"] == "group_lasso"


@pytest.mark.slow
def test_a_saved_model_is_a_baseline_too(resnet_run, tmp_path):
    out = tmp_path / "again"
    result = run_tool(f"--baseline={resnet_run / 'baseline'}", "--dataset=digits",
                      "--method=morphnet", "--params_fraction=0.5", "--epochs=1",
                      "--min_width=0.5", "--finetune_epochs=0", f"--out_dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["target"] == {"params": 0.5} and summary["target_met"] is True
    assert summary["costs"]["params"] <= 0.5 * summary["baseline_costs"]["params"]
    assert "multiplier" in summary["strength"] and summary["config"]["min_width"] == 0.5
    assert "baseline" not in {p.name for p in out.iterdir()}  # nothing retrained
    assert "wrote" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--qat_epochs=1"], "--qat_epochs trains for int8 inference: pass --export=int8"),
    (["--flops_fraction=1.5"], "--flops_fraction=1.5: .*1"),
    (["--baseline=resnet21"], "depth: a CIFAR ResNet has 6n \\+ 2 layers"),
    (["--baseline=no/such/model"], "not resnet<depth> .* and not a .keras file"),
    (["--sparsity_m_by_n=4,2"], "--sparsity_m_by_n: expected 0 < m < n"),
    (["--min_width=0.3"], "--min_width: only --method=morphnet keeps a width floor, got "
                          "--method=group_lasso"),
])
def test_bad_flags_exit_non_zero_with_the_reason(args, message, tmp_path):
    base = {"--baseline": "resnet8", "--out_dir": str(tmp_path / "x")}
    for arg in args:
        base[arg.split("=")[0]] = arg.split("=", 1)[1]
    result = run_tool(*(f"{k}={v}" for k, v in base.items()), "--baseline_epochs=1", timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert re.search(message, result.stderr), result.stderr[-2000:]
    assert not (tmp_path / "x").exists()  # refused before writing anything
