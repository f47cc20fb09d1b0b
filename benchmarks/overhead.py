"""What the search loop costs on top of training: search wall time per trial vs a bare
``model.fit`` of the same models for the same epochs, as a ratio measured in one run.

The search (in-process runner, RandomSearch over a small descriptor space on digits)
records each trial's spec; the bare side then builds, compiles and fits the same specs on
the same tf.data pipeline and epochs, with plain Keras and nothing else. Both sides run
the same specs twice, in alternating order, to cancel warm-up effects. Target: <= 1.05.

Usage: python benchmarks/overhead.py [--trials=10] [--epochs=3] [--repeats=2]
"""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import keras_cnas as cnas  # noqa: E402
from keras_cnas._keras import keras  # noqa: E402
from keras_cnas.strategies import RandomSearch  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("trials", 10, "Trials (models) per side.", lower_bound=1)
flags.DEFINE_integer("epochs", 3, "Epochs per model (traction fidelity).", lower_bound=1)
flags.DEFINE_integer("batch_size", 32, "Mini-batch size.", lower_bound=1)
flags.DEFINE_integer("repeats", 2, "Alternating search / bare rounds.", lower_bound=1)


def run_search(space, data, seed: int) -> tuple[float, list]:
    evaluator = cnas.training.KerasEvaluator(
        data, fidelity=cnas.training.Fidelity(traction_epochs=FLAGS.epochs),
        batch_size=FLAGS.batch_size)
    strategy = RandomSearch(num_samples=FLAGS.trials, fidelity="traction")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as search_dir:
        result = cnas.search(space, strategy=strategy, evaluator=evaluator, search_dir=search_dir,
                             seed=seed, finalize=False, verbose=False)
    return time.perf_counter() - started, [t.spec for t in result.trials]


def run_bare(specs, data, seed: int) -> float:
    """Plain Keras: build, compile, fit on the same pipelines, score the validation split."""
    started = time.perf_counter()
    for i, spec in enumerate(specs):
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed + i)
        model = cnas.build_model(spec)
        model.compile(optimizer=keras.optimizers.Adam(5e-4), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        model.fit(data.tf_dataset("train", batch_size=FLAGS.batch_size, seed=seed + i),
                  validation_data=data.tf_dataset("validation", batch_size=FLAGS.batch_size),
                  epochs=FLAGS.epochs, verbose=0)
    return time.perf_counter() - started


def main(argv):
    del argv
    data = cnas.data.load("digits")
    space = cnas.spaces.DescriptorSpace(data.input_shape, data.num_classes, max_conv_layers=3,
                                        max_filters=32, max_fc_layers=1, max_hidden=64)
    run_bare([space.sample(np.random.default_rng(99))], data, 0)  # warm-up
    search_times, bare_times = [], []
    for r in range(FLAGS.repeats):
        seconds, specs = run_search(space, data, seed=r)
        bare = run_bare(specs, data, seed=r)
        search_times.append(seconds)
        bare_times.append(bare)
        print(f"round {r}: search {seconds:.2f} s, bare fit {bare:.2f} s for {len(specs)} models "
              f"x {FLAGS.epochs} epochs: ratio {seconds / bare:.3f}", flush=True)
    ratio = sum(search_times) / sum(bare_times)
    per_trial = sum(search_times) / (FLAGS.repeats * FLAGS.trials)
    print(f"\nsearch / bare model.fit wall time: {ratio:.3f} (target <= 1.05); "
          f"{per_trial:.2f} s per trial through the search")
    print(json.dumps({"overhead_ratio": round(ratio, 4), "seconds_per_trial": round(per_trial, 3),
                      "trials": FLAGS.trials, "epochs": FLAGS.epochs, "repeats": FLAGS.repeats}))


if __name__ == "__main__":
    app.run(main)
