"""Specs per second for sample + validate + estimate, on one core, per space; and for the
deployment costs (TFLite Micro ``arena_bytes`` + ``tflite_bytes`` of the int8 export, priced
from the spec: graph derivation, allocator replay, exact flatbuffer size).

Targets: at least 20,000 descriptors per second for the analytic costs (issue 2) and 5,000
for arena + flash (issue 13). Prints one line per space (wall-clock rate, and the rate per
second of this process's CPU time, which other jobs on a shared machine disturb less) and a
JSON line with every figure.

Usage: python benchmarks/cost_speed.py [--seconds=2]
"""

from __future__ import annotations

import json
import pathlib
import platform
import sys
import time

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from keras_cnas.costs import deployment_costs, estimate  # noqa: E402
from keras_cnas.spaces import BlockSetSpace, DescriptorSpace, reference  # noqa: E402

flags.DEFINE_float("seconds", 2.0, "Time spent per space (after a warm-up).", lower_bound=0.1)
FLAGS = flags.FLAGS

SPACES = {
    "descriptor (CIFAR-10 bounds, <= 26 conv)": DescriptorSpace((32, 32, 3), 10),
    "descriptor (MNIST 28x28x1)": DescriptorSpace((28, 28, 1), 10),
    "blockset (default, N=36)": BlockSetSpace((224, 224, 3), 1000),
    "blockset (NAS-Bench-Macro, N=8)": reference.nas_bench_macro_space(),
}


def specs_per_second(space, seconds: float, cost=estimate,
                     batch: int = 100) -> tuple[float, float]:
    """Specs sampled and priced with ``cost`` per second of wall-clock and of CPU time
    (sampling included; fresh specs, so per-spec caches do not help)."""
    rng = np.random.default_rng(0)
    for _ in range(batch):  # warm-up
        cost(space.sample(rng))
    count, started, cpu = 0, time.perf_counter(), time.process_time()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for _ in range(batch):
            spec = space.sample(rng)
            space.validate(spec)
            cost(spec)
        count += batch
    return count / (time.perf_counter() - started), count / (time.process_time() - cpu)


def main(argv):
    del argv
    print(f"sample + validate + estimate, one process, Python {platform.python_version()}")
    figures, cpu = {}, {}
    for name, space in SPACES.items():
        rate, cpu_rate = specs_per_second(space, FLAGS.seconds)
        figures[name], cpu[name] = round(rate), round(cpu_rate)
        print(f"{name:45s} {rate:12,.0f} specs/s {cpu_rate:12,.0f} per CPU second")
    print("\nsample + validate + arena_bytes + tflite_bytes (int8 export, priced from the spec)")
    deployment, deployment_cpu = {}, {}
    for name, space in SPACES.items():
        rate, cpu_rate = specs_per_second(space, FLAGS.seconds, deployment_costs, batch=20)
        deployment[name], deployment_cpu[name] = round(rate), round(cpu_rate)
        print(f"{name:45s} {rate:12,.0f} specs/s {cpu_rate:12,.0f} per CPU second")
    print(json.dumps({"specs_per_second": figures, "specs_per_cpu_second": cpu,
                      "deployment_specs_per_second": deployment,
                      "deployment_specs_per_cpu_second": deployment_cpu}))


if __name__ == "__main__":
    app.run(main)
