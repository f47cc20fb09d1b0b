"""Trials per hour on a local Ray with 1 and 2 single-threaded workers, and their ratio.

The same search runs twice on one local Ray (``--num_cpus`` CPUs): a RandomSearch of
``--trials`` digits models trained at traction fidelity, each trial a Ray task in a fresh
worker process with one CPU and one TensorFlow thread, first with one trial at a time, then
with two. RandomSearch proposes the same specs whatever the results, so both runs do the
same work; the wall time includes each worker's start-up and TensorFlow import, as a real
search pays them. Ideal ratio: 2.0 (with ``--num_cpus`` free cores).

On a shared machine other work takes cores too, so the ratio is printed next to the
machine's own: a CPU-bound loop timed in one process and in two at once, measured right
before and after (``2 * t_one / t_two``; 2.0 on two idle cores). ``--repeats`` alternates
the order (1, 2, then 2, 1, ...) so that a load that drifts during the run cancels out.

Usage: python benchmarks/ray_throughput.py [--trials=12] [--epochs=2] [--num_cpus=2] [--repeats=1]
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import keras_cnas as cnas  # noqa: E402
from keras_cnas.engine import RayRunner  # noqa: E402
from keras_cnas.strategies import RandomSearch  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("trials", 12, "Trials per run.", lower_bound=2)
flags.DEFINE_integer("epochs", 2, "Training epochs per trial (traction fidelity).", lower_bound=1)
flags.DEFINE_integer("batch_size", 32, "Mini-batch size.", lower_bound=1)
flags.DEFINE_integer("num_cpus", 2, "CPUs of the local Ray.", lower_bound=2)
flags.DEFINE_integer("seed", 0, "Seeds the specs and the trials.")
flags.DEFINE_integer("repeats", 1, "Rounds; even rounds run 1 then 2 workers, odd ones 2 then 1.",
                     lower_bound=1)

_BURN = "x = 0\nfor i in range(15_000_000):\n    x += i"


def machine_parallelism() -> float:
    """``2 * t_one / t_two`` for a CPU-bound loop: how many cores two processes get now."""
    def timed(copies: int) -> float:
        started = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", _BURN]) for _ in range(copies)]
        for proc in procs:
            proc.wait()
        return time.perf_counter() - started

    return 2 * timed(1) / timed(2)


def run(space, data, workers: int) -> tuple[float, int]:
    """Wall seconds of one search with ``workers`` trials at once; completed trials."""
    evaluator = cnas.training.KerasEvaluator(
        data, fidelity=cnas.training.Fidelity(traction_epochs=FLAGS.epochs),
        batch_size=FLAGS.batch_size)
    runner = RayRunner(cpus_per_trial=1, threads_per_trial=1, max_concurrent_trials=workers)
    with tempfile.TemporaryDirectory() as search_dir:
        started = time.perf_counter()
        result = cnas.search(space, strategy=RandomSearch(num_samples=FLAGS.trials,
                                                          fidelity="traction"),
                             evaluator=evaluator, runner=runner, search_dir=search_dir,
                             seed=FLAGS.seed, finalize=False, verbose=False)
        seconds = time.perf_counter() - started
    return seconds, sum(t.ok for t in result.trials)


def main(argv):
    del argv
    import ray

    data = cnas.data.load("digits")
    space = cnas.spaces.DescriptorSpace(data.input_shape, data.num_classes, max_conv_layers=3,
                                        max_filters=32, max_fc_layers=1, max_hidden=64)
    before = machine_parallelism()
    print(f"machine: two CPU-bound processes run {before:.2f}x as fast as one", flush=True)
    ray.init(num_cpus=FLAGS.num_cpus, include_dashboard=False, log_to_driver=False)
    seconds = {1: 0.0, 2: 0.0}
    try:
        for r in range(FLAGS.repeats):
            for workers in ((1, 2) if r % 2 == 0 else (2, 1)):
                took, ok = run(space, data, workers)
                seconds[workers] += took
                print(f"round {r}, {workers} worker(s): {FLAGS.trials} trials ({ok} completed) in "
                      f"{took:.1f} s = {FLAGS.trials / took * 3600:.0f} trials/hour", flush=True)
    finally:
        ray.shutdown()
    after = machine_parallelism()
    per_hour = {w: FLAGS.repeats * FLAGS.trials / s * 3600 for w, s in seconds.items()}
    ratio = per_hour[2] / per_hour[1]
    machine = (before + after) / 2
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n2 workers / 1 worker throughput: {ratio:.2f} (ideal 2.0 on {FLAGS.num_cpus} free "
          f"CPUs); the machine's own 2-process ratio meanwhile: {machine:.2f} (before {before:.2f}, "
          f"after {after:.2f}); load average {load:.2f} at the end")
    print(json.dumps({"trials_per_hour_1": round(per_hour[1], 1),
                      "trials_per_hour_2": round(per_hour[2], 1), "ratio": round(ratio, 3),
                      "machine_ratio": round(machine, 3), "trials": FLAGS.trials,
                      "epochs": FLAGS.epochs, "repeats": FLAGS.repeats, "num_cpus": FLAGS.num_cpus,
                      "cpu_count": os.cpu_count(), "load_average": round(load, 2),
                      "date": datetime.date.today().isoformat()}))


if __name__ == "__main__":
    app.run(main)
