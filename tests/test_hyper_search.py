"""The KerasTuner user's search from the shell. End to end: their own module (build(hp), a
tf.data input, a callback) through tools/search.py with --workers=2, a params cap and a measured arena bound,
objective val_accuracy, killed with SIGKILL and resumed; a folder dataset with --top_k_export;
the new flags' one-line errors."""

import json
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from conftest import finished_rows, sigkill_after_finished
from test_search_tool import REPO

USER_MODULE = textwrap.dedent('''
    import pathlib

    import tf_keras as keras

    LOG = pathlib.Path(__file__).with_name("epochs.log")


    def build(hp):
        model = keras.Sequential([keras.Input((8, 8, 1))])
        for i in range(hp.Int("conv_layers", 1, 2)):
            model.add(keras.layers.Conv2D(hp.Choice(f"filters_{i}", [4, 8, 16]), 3,
                                          padding="same", activation="relu"))
        model.add(keras.layers.MaxPooling2D())
        model.add(keras.layers.Flatten())
        model.add(keras.layers.Dense(hp.Int("units", 16, 64, step=16), activation="relu"))
        model.add(keras.layers.Dense(10, activation="softmax"))
        return model


    class EpochLog(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            with LOG.open("a") as f:
                f.write(f"{epoch} {logs['val_accuracy']:.4f}\\n")


    def make_data():
        import numpy as np
        import tensorflow as tf
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = (digits.images[..., None] / 16.0).astype(np.float32)
        y = digits.target.astype(np.int32)
        train = tf.data.Dataset.from_tensor_slices((x[:1400], y[:1400])).batch(64)
        validation = tf.data.Dataset.from_tensor_slices((x[1400:], y[1400:])).batch(64)
        return train, validation
''')


@pytest.mark.slow
def test_a_hypermodel_search_with_workers_resumes_after_sigkill(tmp_path):
    pytest.importorskip("tflite_micro")
    (tmp_path / "my_models.py").write_text(USER_MODULE)
    search_dir = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "tools/search.py"), "--space=hyper",
           "--hypermodel=my_models:build", "--data_fn=my_models:make_data",
           "--callbacks=my_models:EpochLog", "--objective=val_accuracy", "--max_params=6000",
           "--max_arena_bytes=6000", "--strategy=montecarlo", "--num_random=4",
           "--num_adaptive=2", "--num_full=1", "--traction_epochs=1", "--full_epochs=2",
           "--workers=2", f"--search_dir={search_dir}", "--nofinalize"]
    # Run from the user's folder, as they would: my_models imports from there.
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = search_dir / "trials.db"
    sigkill_after_finished(proc, db, 2, timeout=400)
    before = finished_rows(db)
    assert 2 <= len(before) < 7

    out = subprocess.run([*cmd, "--resume"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    after = finished_rows(db)
    with sqlite3.connect(db) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM trials ORDER BY id")]
    assert ids == list(range(7))
    assert all(after[i] == row for i, row in before.items())  # finished trials unchanged
    summary = json.loads((search_dir / "summary.json").read_text())
    assert summary["objective"] == {"name": "val_accuracy", "direction": "max"}
    assert summary["config"]["workers"] == 2
    for _, status, spec_json, metrics_json, costs_json, _ in after.values():
        spec, costs = json.loads(spec_json), json.loads(costs_json)
        assert spec["space"] == "hyper" and set(spec["values"]) >= {"conv_layers", "units"}
        assert costs["params"] <= 6000  # the cap was applied before training
        if status == "COMPLETED":
            assert costs["arena_bytes"] <= 6000  # measured in TFLite Micro, in the worker
    # The user's callback ran in the worker processes: one line per epoch of every trial.
    lines = (tmp_path / "epochs.log").read_text().splitlines()
    assert len(lines) >= sum(json.loads(r[3]).get("epochs", 0) for r in after.values())


def _tool(*args, cwd=REPO, timeout=300):
    return subprocess.run([sys.executable, str(REPO / "tools/search.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["--space=hyper"], "--space=hyper needs --hypermodel=module:function"),
    (["--space=hyper", "--hypermodel=no_such_module_xyz:build"], "cannot import 'no_such_module_xyz'"),
    (["--objective=val_custom"], "--objective: direction: cannot tell whether 'val_custom'"),
    (["--dataset=folder"], "--dataset=folder needs --data_dir"),
    (["--augment=mirror"], "--augment"),
])
def test_new_flags_report_bad_values_in_one_line(tmp_path, args, message):
    out = _tool(*args, f"--search_dir={tmp_path}")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert message in out.stderr


@pytest.mark.slow
def test_a_folder_dataset_search_exports_its_top_k(tmp_path):
    import numpy as np
    from keras_cnas._keras import tf

    rng = np.random.default_rng(0)
    for name in ("dark", "light"):
        for i in range(12):
            level = 40 if name == "dark" else 200
            image = np.clip(rng.normal(level, 20, (10, 10, 1)), 0, 255).astype(np.uint8)
            path = tmp_path / "photos" / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(tf.io.encode_png(image).numpy())
    search_dir = tmp_path / "run"
    out = _tool("--dataset=folder", f"--data_dir={tmp_path / 'photos'}", "--image_size=8,8",
                "--color_mode=grayscale", "--augment=flip", "--validation_split=0.25",
                "--space=descriptor", "--max_conv_layers=1", "--max_filters=4",
                "--max_fc_layers=0", "--strategy=random", "--max_trials=3",
                "--traction_epochs=1", "--full_epochs=1", "--objective=val_accuracy",
                "--top_k_export=2", "--export=none", f"--search_dir={search_dir}", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((search_dir / "summary.json").read_text())
    assert summary["objective"]["name"] == "val_accuracy"
    assert (search_dir / "best" / "model.tflite").is_file()
    tops = sorted((search_dir / "top").iterdir())
    assert len(tops) == 1 and (tops[0] / "model.tflite").is_file() and tops[0].name.startswith("02-")
    assert "top 2 (" in out.stdout
