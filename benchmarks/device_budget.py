"""A device budget measured after training vs priced before it, side by side in one run.

The same MNIST-subset search (descriptor space, Monte Carlo, same seed and trial count) under
a 64 KiB TFLite Micro arena and a 256 KiB flatbuffer bound (int8 export), twice:

* **measured after training** (``price_deployment=False``, how searches ran before issue 13):
  every candidate is trained, converted and measured, and discarded if it breaks a bound;
* **priced before training** (the default): ``arena_bytes`` / ``tflite_bytes`` are priced from
  the spec, so a candidate that would break a bound is rejected before it is built, and the
  trained ones are still measured and re-checked.

Reports per run: trials trained, trials trained then discarded (INFEASIBLE on a measured
bound), rejected proposals, wall time, the best trial's measured arena and flash and its test
accuracy after finalizing. Prints a table and one JSON line.

Usage: python benchmarks/device_budget.py [--data_dir=../shared/data/mnist] [--trials=12]
"""

from __future__ import annotations

import json
import logging
import pathlib
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import keras_cnas as cnas  # noqa: E402
from keras_cnas.trial import TrialStatus  # noqa: E402

flags.DEFINE_string("data_dir", "../shared/data/mnist", "MNIST IDX directory.")
flags.DEFINE_integer("train_examples", 3000, "Training examples (a stratified subset).",
                     lower_bound=100)
flags.DEFINE_integer("trials", 12, "Trials per search (4 random, then adaptive and full).",
                     lower_bound=3)
flags.DEFINE_integer("max_arena_bytes", 64 * 1024, "TFLite Micro arena bound (bytes).")
flags.DEFINE_integer("max_tflite_bytes", 256 * 1024, "Flatbuffer bound (bytes).")
flags.DEFINE_integer("seed", 0, "Seeds the strategy, the trials and the data split.")
FLAGS = flags.FLAGS


def run(data, priced: bool, workdir: pathlib.Path) -> dict:
    space = cnas.spaces.DescriptorSpace((28, 28, 1), 10, max_conv_layers=4, max_filters=64,
                                        max_fc_layers=2, max_hidden=256)
    evaluator = cnas.training.KerasEvaluator(
        data, fidelity=cnas.training.Fidelity(traction_epochs=1, full_epochs=3, patience=2),
        batch_size=64, measurement=cnas.training.Measurement(("arena_bytes", "tflite_bytes")))
    random = FLAGS.trials // 2
    strategy = cnas.strategies.MonteCarlo(num_random=random, num_adaptive=FLAGS.trials - random - 1,
                                          num_full=1)
    constraints = cnas.Constraints(max_arena_bytes=FLAGS.max_arena_bytes,
                                   max_tflite_bytes=FLAGS.max_tflite_bytes)
    started = time.perf_counter()
    result = cnas.search(space, constraints, strategy=strategy, evaluator=evaluator,
                         max_trials=FLAGS.trials, search_dir=workdir, seed=FLAGS.seed,
                         verbose=False, tensorboard=False, price_deployment=priced)
    seconds = time.perf_counter() - started
    trained = [t for t in result.trials if t.status in (TrialStatus.COMPLETED, TrialStatus.INFEASIBLE)]
    discarded = [t for t in result.trials if t.status == TrialStatus.INFEASIBLE
                 and (t.error or "").startswith("measured:")]
    best = result.best
    return {
        "trials": len(result.trials), "trained": len(trained),
        "trained_then_discarded": len(discarded),
        "rejected_proposals": result.summary["rejected_proposals"],
        "wall_seconds": round(seconds, 1),
        "best_arena_bytes": None if best is None else best.costs.get("arena_bytes"),
        "best_tflite_bytes": None if best is None else best.costs.get("tflite_bytes"),
        "best_test_accuracy": (None if result.best_metrics.get("test_accuracy") is None
                               else round(result.best_metrics["test_accuracy"], 4)),
        "priced_vs_measured_arena_errors": sum("arena_bytes_error" in t.costs for t in trained),
    }


def main(argv):
    del argv
    logging.getLogger("keras_cnas").setLevel(logging.WARNING)
    data = cnas.data.load("mnist", FLAGS.data_dir, max_train_examples=FLAGS.train_examples,
                          seed=FLAGS.seed)
    figures = {}
    with tempfile.TemporaryDirectory(prefix="device_budget_") as tmp:
        for name, priced in (("measured after training", False), ("priced before training", True)):
            figures[name] = run(data, priced, pathlib.Path(tmp) / name.split()[0])
    print(f"MNIST subset ({FLAGS.train_examples} train), descriptor space, Monte Carlo, "
          f"{FLAGS.trials} trials, seed {FLAGS.seed}; bounds: arena <= {FLAGS.max_arena_bytes:,} B, "
          f"flash <= {FLAGS.max_tflite_bytes:,} B (int8)")
    rows = ["trained", "trained_then_discarded", "rejected_proposals", "wall_seconds",
            "best_arena_bytes", "best_tflite_bytes", "best_test_accuracy",
            "priced_vs_measured_arena_errors"]
    names = list(figures)
    print(f"{'':34s}" + "".join(f"{n:>26s}" for n in names))
    for row in rows:
        print(f"{row:34s}" + "".join(f"{str(figures[n][row]):>26s}" for n in names))
    print(json.dumps({"device_budget": figures}))


if __name__ == "__main__":
    app.run(main)
