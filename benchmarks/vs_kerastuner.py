"""KerasTuner's RandomSearch and keras_cnas on one MNIST problem under a hard parameter cap.

Both search the same KerasTuner build function (:func:`build_model`, which compiles its
model with a searched learning rate) on the same MNIST subset, with the same cap, trials,
epochs and batch size, objective ``val_accuracy``; each retrains its best on train +
validation for the same epochs and reports its test accuracy. KerasTuner's
``RandomSearch(max_model_size=CAP)`` builds a sample and skips it as a failed trial when it
is oversized; keras_cnas's ``RandomSearch`` on ``HyperSpace(build_model)`` prices every
sample from its built model and draws again until one fits, so every trial trains.

Rows: KerasTuner at equal trials, keras_cnas, then KerasTuner given as many trials as fit
in keras_cnas's search time (equal wall time).

KerasTuner 1.4 imports ``keras``, which is Keras 3 here (TensorFlow 2.21 installs it), and
refuses tf_keras models; this program points ``keras`` at tf_keras before importing it, so
that both libraries train the same tf_keras models.

Usage (keras-tuner: ``pip install 'keras_cnas[benchmark]'``):
  python benchmarks/vs_kerastuner.py --data_dir=../shared/data/mnist [--train_examples=10000]
      [--cap=20000] [--trials=20] [--epochs=3] [--seed=0]
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import keras_cnas as cnas  # noqa: E402
from keras_cnas._keras import keras  # noqa: E402

sys.modules["keras"] = keras  # KerasTuner then trains tf_keras models (see the docstring)

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "../shared/data/mnist", "Directory of the four MNIST IDX files.")
flags.DEFINE_integer("train_examples", 10000, "Training images (a fixed stratified subset); "
                     "10 % of them are held out for validation.", lower_bound=100)
flags.DEFINE_integer("cap", 20000, "Hard bound on parameters.", lower_bound=1)
flags.DEFINE_integer("trials", 20, "Trials at equal trials.", lower_bound=1)
flags.DEFINE_integer("epochs", 3, "Epochs per trial and for the retraining.", lower_bound=1)
flags.DEFINE_integer("batch_size", 128, "Mini-batch size.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seeds both searches.")
flags.DEFINE_bool("equal_time", True, "Also run KerasTuner for keras_cnas's wall time.")


def build_model(hp):
    """A KerasTuner build function, as a KerasTuner user writes it (compiled here)."""
    model = keras.Sequential([keras.Input((28, 28, 1))])
    for i in range(hp.Int("conv_layers", 1, 3)):
        model.add(keras.layers.Conv2D(hp.Choice(f"filters_{i}", [4, 8, 16, 32, 64]),
                                      hp.Choice(f"kernel_{i}", [3, 5]), padding="same",
                                      activation="relu"))
        if hp.Boolean(f"pool_{i}"):
            model.add(keras.layers.MaxPooling2D())
    model.add(keras.layers.Flatten())
    if hp.Boolean("hidden"):
        with hp.conditional_scope("hidden", [True]):
            model.add(keras.layers.Dense(hp.Int("units", 16, 128, step=16), activation="relu"))
    model.add(keras.layers.Dense(10, activation="softmax"))
    model.compile(optimizer=keras.optimizers.Adam(hp.Choice("learning_rate", [1e-3, 3e-3])),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def retrain_and_test(build, data, epochs: int, batch_size: int, seed: int) -> float:
    """The best model rebuilt, trained on train + validation, and its test accuracy."""
    keras.utils.set_random_seed(seed)
    model = build()
    x, y = data.arrays("train+validation")
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
    return float(model.evaluate(data.x_test, data.y_test, batch_size=512, verbose=0)[1])


def run_kerastuner(data, trials: int | None, seconds: float | None, workdir: str) -> dict:
    """KerasTuner RandomSearch(max_model_size=cap): for ``trials`` trials, or one trial at a
    time until ``seconds`` have passed."""
    import keras_tuner as kt

    tuner = kt.RandomSearch(build_model, objective="val_accuracy", max_trials=trials or 1,
                            max_model_size=FLAGS.cap, seed=FLAGS.seed, directory=workdir,
                            project_name="kt", overwrite=True,
                            # An oversized sample is a failed trial; keep going through them.
                            max_consecutive_failed_trials=10_000)
    fit = dict(x=data.x_train, y=data.y_train, validation_data=(data.x_val, data.y_val),
               epochs=FLAGS.epochs, batch_size=FLAGS.batch_size, verbose=0)
    started = time.perf_counter()
    if seconds is None:
        tuner.search(**fit)
    else:
        while time.perf_counter() - started < seconds:
            tuner.oracle.max_trials = len(tuner.oracle.trials) + 1
            tuner.search(**fit)
    elapsed = time.perf_counter() - started
    statuses = [t.status for t in tuner.oracle.trials.values()]
    best_hp = tuner.get_best_hyperparameters(1)[0] if "COMPLETED" in statuses else None
    test = (retrain_and_test(lambda: build_model(best_hp), data, FLAGS.epochs, FLAGS.batch_size,
                             FLAGS.seed) if best_hp is not None else float("nan"))
    return {"trials": len(statuses), "trained": statuses.count("COMPLETED"),
            "oversized": statuses.count("FAILED"), "seconds": elapsed, "test_accuracy": test}


def run_keras_cnas(data, workdir: str) -> dict:
    space = cnas.spaces.HyperSpace(build_model, input_shape=data.input_shape,
                                   num_classes=data.num_classes)
    evaluator = cnas.training.KerasEvaluator(
        data, objective="val_accuracy",
        fidelity=cnas.training.Fidelity(full_epochs=FLAGS.epochs, patience=FLAGS.epochs),
        batch_size=FLAGS.batch_size, augment=False)
    started = time.perf_counter()
    result = cnas.search(space, cnas.Constraints(max_params=FLAGS.cap),
                         strategy=cnas.strategies.RandomSearch(num_samples=FLAGS.trials),
                         evaluator=evaluator, search_dir=workdir, seed=FLAGS.seed,
                         finalize=False, verbose=False, tensorboard=False)
    elapsed = time.perf_counter() - started
    best = result.get_best_specs(1)[0]
    test = retrain_and_test(lambda: cnas.build_model(best), data, FLAGS.epochs,
                            FLAGS.batch_size, FLAGS.seed)
    trained = sum(t.ok for t in result.trials)
    return {"trials": len(result.trials), "trained": trained, "oversized": 0,
            "rejected_before_training": result.summary["rejected_proposals"],
            "seconds": elapsed, "test_accuracy": test}


def main(argv):
    del argv
    try:
        import keras_tuner  # noqa: F401
    except ImportError:
        sys.exit("error: keras-tuner is not installed; pip install 'keras_cnas[benchmark]'")
    data = cnas.data.load("mnist", FLAGS.data_dir, max_train_examples=FLAGS.train_examples,
                          seed=FLAGS.seed)
    print(f"{data!r}; cap {FLAGS.cap:,} params, {FLAGS.trials} trials x {FLAGS.epochs} epochs, "
          f"batch {FLAGS.batch_size}, seed {FLAGS.seed}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(("KerasTuner RandomSearch, equal trials",
                     run_kerastuner(data, FLAGS.trials, None, f"{tmp}/kt")))
        print(rows[-1], flush=True)
        rows.append(("keras_cnas RandomSearch on HyperSpace", run_keras_cnas(data, f"{tmp}/cnas")))
        print(rows[-1], flush=True)
        if FLAGS.equal_time:
            rows.append(("KerasTuner RandomSearch, equal wall time",
                         run_kerastuner(data, None, rows[-1][1]["seconds"], f"{tmp}/kt_time")))
    print(f"\n| run | trials | trained | oversized (skipped) | search time | test accuracy |\n"
          f"|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['trials']} | {r['trained']} | {r['oversized']} | "
              f"{r['seconds']:.0f} s | {100 * r['test_accuracy']:.1f} % |")


if __name__ == "__main__":
    app.run(main)
