"""The search's best vs hand-designed references under each reference's own budget, on CIFAR-10.

For each reference network (an MLPerf-Tiny-style ResNet-8, ``reference.resnet_cifar(8)``, and
a MobileNetV2-style network, ``reference.mobilenet_v2(alpha)`` at 32x32) the budget is the
reference's own int8 TFLite Micro arena, flatbuffer size and MAdds, priced by our cost model
(``costs.Pricer``: the arena equals TFLite Micro's byte for byte, the flash the flatbuffer's
length). Under that budget a Monte Carlo search runs on the residual descriptor space sized
for it (``DescriptorSpace.for_budget``), each random sample the one of ``--draws`` feasible
draws that uses most of the budget (``MonteCarlo(draws=...)``), once without and once with
weight inheritance (``KerasEvaluator(inherit_weights=True)``). Where the reference is itself
a residual descriptor (ResNet-8: ``reference.resnet_cifar_descriptor(8)``), a second pair of
searches is *seeded* with it: local search (``LocalSearch(start=...)``) climbs from the
reference through its one-decision neighbours, all at full fidelity, on the sized space
widened just enough to hold the reference (``--seeded``; its rows say "seeded"). With
inheritance, each neighbour starts from its incumbent's trained weights. The references and
each search's best are then trained with the same recipe for the same epochs on train +
validation (``KerasEvaluator.finalize``) and tested on the full CIFAR-10 test set.

Prints, side by side: test accuracy, arena, flash, MAdds, params, trials trained and wall time
per row, and one JSON line. The scale is CPU-sized (a subset of the training images, a few
epochs); say so wherever the figures are quoted.

Usage (from the repo root):
    nice -n 10 python benchmarks/real_task.py --data_dir=../shared/data/cifar10-jpeg \\
        --train_examples=5000 --trials=12 --traction_epochs=3 --search_epochs=6 --epochs=10
"""

from __future__ import annotations

import itertools
import json
import logging
import pathlib
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import keras_cnas as cnas  # noqa: E402
from keras_cnas.costs import Constraints, ExportTarget, Pricer  # noqa: E402
from keras_cnas.costs.sizing import descriptor_space_for_budget  # noqa: E402
from keras_cnas.spaces import DescriptorSpace, reference  # noqa: E402
from keras_cnas.trial import Candidate, TrialStatus  # noqa: E402

flags.DEFINE_string("data_dir", "../shared/data/cifar10-jpeg", "CIFAR-10 directory (the JPEG "
                    "tarball, an image tree or python batches).")
flags.DEFINE_integer("train_examples", 2000, "Training examples (a stratified subset).",
                     lower_bound=100)
flags.DEFINE_integer("trials", 6, "Trials per search (Monte Carlo: half random, then adaptive, "
                     "one full).", lower_bound=3)
flags.DEFINE_integer("draws", 16, "Monte Carlo's random samples: the feasible draw of this many "
                     "that uses most of the budget (1: plain samples, runs 1-4).", lower_bound=1)
flags.DEFINE_integer("traction_epochs", 1, "Epochs of a traction trial.", lower_bound=1)
flags.DEFINE_integer("search_epochs", 3, "Most epochs of a full-fidelity trial.", lower_bound=1)
flags.DEFINE_integer("epochs", 4, "Epochs of the final training, the same for every network.",
                     lower_bound=1)
flags.DEFINE_float("mobilenet_alpha", 0.35, "Width multiplier of the MobileNetV2 reference.")
flags.DEFINE_list("references", ["resnet8", "mobilenet_v2"], "References to compare against.")
flags.DEFINE_integer("seed", 0, "Seeds the strategy, the trials and the data split.")
flags.DEFINE_bool("seeded", True, "Also run the searches seeded with the reference, where it is "
                  "a descriptor (ResNet-8): local search from it at full fidelity.")
FLAGS = flags.FLAGS

TARGET = ExportTarget("int8")
BUDGET_COSTS = ("arena_bytes", "tflite_bytes", "madds")


def references() -> dict:
    return {"resnet8": reference.resnet_cifar(8),
            "mobilenet_v2": reference.mobilenet_v2((32, 32, 3), 10, alpha=FLAGS.mobilenet_alpha)}


#: The references that are points of a residual descriptor space (a seeded search's start).
SEEDS = {"resnet8": lambda: reference.resnet_cifar_descriptor(8)}


def seeded_space(sized, seed) -> DescriptorSpace:
    """The sized space widened just enough to hold ``seed`` (the sizer ranks spaces as deep
    as ResNet-8 first, so under ResNet-8's own budget this is the sized space itself)."""
    config = sized.space.get_config()
    config["max_conv_layers"] = max(config["max_conv_layers"], len(seed.conv_layers))
    config["max_filters"] = max([config["max_filters"]] + [c.n_filters for c in seed.conv_layers])
    return DescriptorSpace(**config)


def priced(spec) -> dict:
    costs = Pricer(target=TARGET).costs(spec)
    return {"arena_bytes": int(costs["arena_bytes"]), "tflite_bytes": int(costs["tflite_bytes"]),
            "madds": int(costs["madds"]), "params": int(costs["params"])}


def trained(evaluator, spec, out_dir: pathlib.Path) -> dict:
    """The common recipe: ``FLAGS.epochs`` on train + validation, then the test set."""
    metrics = evaluator.finalize(Candidate(spec, "full"), out_dir, seed=FLAGS.seed,
                                 epochs=FLAGS.epochs)
    return {"test_accuracy": metrics["test_accuracy"], "final_train_seconds": metrics["train_seconds"]}


def search(data, budget: Constraints, inherit: bool, workdir: pathlib.Path, seed=None) -> dict:
    """Monte Carlo on the sized space; with a ``seed`` spec, local search from it."""
    sized = descriptor_space_for_budget(budget, data.input_shape, data.num_classes, target=TARGET)
    evaluator = cnas.training.KerasEvaluator(
        data, traction_epochs=FLAGS.traction_epochs, full_epochs=FLAGS.search_epochs,
        patience=FLAGS.search_epochs, batch_size=64, inherit_weights=inherit)
    space = sized.space
    if seed is None:
        random = FLAGS.trials // 2
        strategy = cnas.strategies.MonteCarlo(num_random=random,
                                              num_adaptive=FLAGS.trials - random - 1, num_full=1,
                                              draws=FLAGS.draws)
    else:
        space = seeded_space(sized, seed)
        strategy = cnas.strategies.LocalSearch(FLAGS.trials, start=seed)
    started = time.perf_counter()
    result = cnas.search(space, budget, strategy=strategy, evaluator=evaluator,
                         max_trials=FLAGS.trials, search_dir=workdir, seed=FLAGS.seed,
                         verbose=False, tensorboard=False, finalize=False)
    seconds = time.perf_counter() - started
    completed = [t for t in result.trials if t.status == TrialStatus.COMPLETED]
    inherited = [t for t in completed if t.metrics.get("inherited_layers", 0) > 0]
    if result.best is None:
        return {"spec": None, "search_seconds": seconds, "trials_trained": len(completed)}
    return {"spec": result.best.spec, "search_seconds": seconds, "trials_trained": len(completed),
            "trials_inherited": len(inherited), "feasible_share": sized.share,
            "space_settings": {k: space.get_config()[k] for k in sized.settings},
            "architecture": result.best.spec.describe(),
            "best_is_seed": seed is not None and result.best.spec.key() == seed.key()}


def main(argv):
    del argv
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    started = time.perf_counter()
    data = cnas.data.load("cifar10", data_dir=FLAGS.data_dir, seed=FLAGS.seed,
                          max_train_examples=FLAGS.train_examples)
    print(f"{data.summary()}  (loaded in {time.perf_counter() - started:.0f} s)", flush=True)
    final = cnas.training.KerasEvaluator(data, full_epochs=FLAGS.epochs, batch_size=64)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        for name in FLAGS.references:
            spec = references()[name]
            costs = priced(spec)
            budget = Constraints(**{f"max_{c}": costs[c] for c in BUDGET_COSTS})
            t0 = time.perf_counter()
            ref = {"budget": name, "network": f"reference {name}", **costs,
                   **trained(final, spec, root / f"{name}-ref"), "trials_trained": 0,
                   "search_seconds": 0.0}
            ref["wall_seconds"] = time.perf_counter() - t0
            rows.append(ref)
            print(json.dumps(ref), flush=True)
            seeds = [None] + ([SEEDS[name]()] if FLAGS.seeded and name in SEEDS else [])
            for seed, inherit in itertools.product(seeds, (False, True)):
                t0 = time.perf_counter()
                tag = f"{'seeded-' if seed else ''}{inherit}"
                found = search(data, budget, inherit, root / f"{name}-search-{tag}", seed)
                best = found.pop("spec")
                label = "seeded search best" if seed else "search best"
                row = {"budget": name, "network": f"{label}, inherit={inherit}", **found}
                if best is not None:
                    row.update(priced(best), **trained(final, best, root / f"{name}-best-{tag}"))
                row["wall_seconds"] = time.perf_counter() - t0
                rows.append(row)
                print(json.dumps(row), flush=True)
    print()
    header = (f"{'budget':<13} {'network':<34} {'test acc':>8} {'arena KiB':>9} {'flash KiB':>9} "
              f"{'MAdds M':>8} {'params':>8} {'trials':>6} {'wall s':>7}")
    print(header)
    print("-" * len(header))
    for r in rows:
        acc = f"{r['test_accuracy']:.4f}" if "test_accuracy" in r else "-"
        print(f"{r['budget']:<13} {r['network']:<34} {acc:>8} "
              f"{r.get('arena_bytes', 0) / 1024:>9.1f} {r.get('tflite_bytes', 0) / 1024:>9.1f} "
              f"{r.get('madds', 0) / 1e6:>8.2f} {r.get('params', 0):>8} {r['trials_trained']:>6} "
              f"{r['wall_seconds']:>7.0f}")
    for r in rows:
        if r.get("architecture"):
            print(f"{r['budget']} / {r['network']}: {r['architecture']}  (space {r['space_settings']}, "
                  f"{r['feasible_share']:.0%} of samples feasible, {r.get('trials_inherited', 0)} "
                  "trials inherited weights)")
    print(f"total wall time {time.perf_counter() - started:.0f} s")
    print(json.dumps({"rows": rows, "flags": {k: FLAGS[k].value for k in (
        "train_examples", "trials", "draws", "traction_epochs", "search_epochs", "epochs",
        "mobilenet_alpha", "seed", "seeded")}}))


if __name__ == "__main__":
    app.run(main)
