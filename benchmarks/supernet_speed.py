"""Training steps per second of the ENAS weight-sharing supernet, eager vs compiled.

For each input size and width: a fresh :class:`SharedCellSupernet`, then ``--steps`` steps on
cells sampled anew each step (eager: what a search does while the controller explores), the
one-off cost of compiling a cell's step, and steps on compiled cells (a converged controller
repeating its cells). Batch 64 of random images, 3 layers, 2-7 blocks per cell.

Usage: python benchmarks/supernet_speed.py [--steps=15] [--filters=16,20]
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from keras_cnas.spaces import EnasCellSpace  # noqa: E402
from keras_cnas.training.supernet import SharedCellSupernet  # noqa: E402

flags.DEFINE_integer("steps", 15, "Timed steps per mode.", lower_bound=2)
flags.DEFINE_list("filters", ["16", "20"], "Stem widths to time.")
flags.DEFINE_list("shapes", ["8x8x1", "28x28x1"], "Input shapes (digits, MNIST) to time.")
flags.DEFINE_integer("batch_size", 64, "Mini-batch size.", lower_bound=1)
FLAGS = flags.FLAGS


def measure(shape: tuple[int, int, int], filters: int, steps: int, batch: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    x = rng.random((batch, *shape), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    space = EnasCellSpace(shape, 10, filters=filters)
    started = time.perf_counter()
    eager = SharedCellSupernet(space, trace_after=None)
    create = time.perf_counter() - started
    cells = [space.sample_cell(rng) for _ in range(steps + 1)]
    eager.train_step(cells[-1], x, y)  # warm-up
    started = time.perf_counter()
    for cell in cells[:steps]:
        eager.train_step(cell, x, y)
    eager_ms = (time.perf_counter() - started) / steps * 1e3
    started = time.perf_counter()
    for cell in cells[:steps]:
        eager.evaluate(cell, x, y)
    eager_eval_ms = (time.perf_counter() - started) / steps * 1e3

    compiled = SharedCellSupernet(space, trace_after=1)
    repeated = cells[:3]
    started = time.perf_counter()
    for cell in repeated:
        compiled.train_step(cell, x, y)
    compile_s = (time.perf_counter() - started) / len(repeated)
    started = time.perf_counter()
    for i in range(steps):
        compiled.train_step(repeated[i % len(repeated)], x, y)
    compiled_ms = (time.perf_counter() - started) / steps * 1e3
    return {"create_s": round(create, 2), "eager_step_ms": round(eager_ms, 1),
            "eager_steps_per_s": round(1e3 / eager_ms, 1),
            "eager_evaluate_ms": round(eager_eval_ms, 1), "compile_s": round(compile_s, 2),
            "compiled_step_ms": round(compiled_ms, 1),
            "compiled_steps_per_s": round(1e3 / compiled_ms, 1)}


def main(argv):
    del argv
    figures = {}
    for text in FLAGS.shapes:
        shape = tuple(int(v) for v in text.split("x"))
        for filters in (int(f) for f in FLAGS.filters):
            row = measure(shape, filters, FLAGS.steps, FLAGS.batch_size)
            figures[f"{text} f{filters}"] = row
            print(f"{text:8s} filters {filters:3d}: eager {row['eager_step_ms']:7.1f} ms/step "
                  f"({row['eager_steps_per_s']:5.1f}/s), compiled {row['compiled_step_ms']:6.1f} "
                  f"ms/step ({row['compiled_steps_per_s']:5.1f}/s), compile {row['compile_s']:.2f} s, "
                  f"eager evaluate {row['eager_evaluate_ms']:.1f} ms, create {row['create_s']:.2f} s")
    print(json.dumps({"supernet_speed": figures}))


if __name__ == "__main__":
    app.run(main)
