"""The compact-search survey's Table 1, scaled to a CPU: a baseline and the four
baseline-guided methods at a third of its FLOPs, on one real dataset.

A CIFAR ResNet (default ResNet-20) is trained on a class-balanced subset of CIFAR-10 (or
MNIST / digits), then each method of ``keras_cnas.compression`` compresses that same
trained baseline to ``--flops_fraction`` of its FLOPs (a hard bound) and fine-tunes it. The
table gives MFLOPs (MIT-LL eq. 7, as ``keras_cnas.costs``), MMAdds, parameters, test
top-1, top-1 right after surgery (before fine-tuning), and the seconds spent in the
method's sparsity training and in fine-tuning.

Prints the table and one JSON line with every figure; ``--out`` also writes that JSON.

Usage:
  python benchmarks/compression.py --dataset=cifar10 \
      --data_dir=../shared/data/cifar10-jpeg/CIFAR-10-images.tar.gz
  python benchmarks/compression.py --dataset=digits --depth=20 --width=8   # a minute
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import pathlib
import sys
import time

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import keras_cnas as cnas  # noqa: E402
from keras_cnas.data import DATASETS  # noqa: E402

flags.DEFINE_enum("dataset", "cifar10", DATASETS.names(), "Dataset.")
flags.DEFINE_string("data_dir", None, "The dataset's files (e.g. the CIFAR-10 tarball).")
flags.DEFINE_integer("max_per_class", 300, "Examples per class kept in train and test.",
                     lower_bound=1)
flags.DEFINE_integer("depth", 20, "ResNet depth (6n + 2).", lower_bound=8)
flags.DEFINE_integer("width", 16, "ResNet width of the first stage.", lower_bound=1)
flags.DEFINE_float("flops_fraction", 0.33, "The hard FLOPs bound, x baseline.",
                   lower_bound=1e-3, upper_bound=1.0)
flags.DEFINE_integer("baseline_epochs", 12, "Baseline training epochs.", lower_bound=1)
flags.DEFINE_integer("epochs", 1, "Sparsity-training epochs per round (synthesis: per step).",
                     lower_bound=1)
flags.DEFINE_integer("finetune_epochs", 4, "Fine-tuning epochs of each compressed model.",
                     lower_bound=0)
flags.DEFINE_integer("batch_size", 64, "Mini-batch size.", lower_bound=1)
flags.DEFINE_list("methods", ["group_lasso", "vardrop", "morphnet", "synthesis"],
                  "Methods to run.")
flags.DEFINE_integer("seed", 0, "Seeds the split and every training run.")
flags.DEFINE_string("out", None, "Also write the JSON figures to this file.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.getLogger("keras_cnas").setLevel(logging.INFO)
    from keras_cnas.compression import METHODS, Target, TrainingConfig
    from keras_cnas.compression.costs import model_costs
    from keras_cnas.compression.training import accuracy, fit

    unknown = [m for m in FLAGS.methods if m not in METHODS]
    if unknown:
        raise app.UsageError(f"--methods: unknown {unknown}; known: {', '.join(METHODS.names())}")
    started = datetime.datetime.now().isoformat(timespec="seconds")
    data = cnas.data.load(FLAGS.dataset, FLAGS.data_dir, max_per_class=FLAGS.max_per_class,
                          seed=FLAGS.seed)
    print(data.summary(), flush=True)
    spec = cnas.spaces.reference.resnet_cifar(FLAGS.depth, data.input_shape, data.num_classes,
                                              width=FLAGS.width)
    baseline = cnas.build_model(spec)
    _, seconds = fit(baseline, data, TrainingConfig(epochs=FLAGS.baseline_epochs,
                                                    batch_size=FLAGS.batch_size),
                     seed=FLAGS.seed)
    costs = model_costs(baseline)
    rows = [{"method": "baseline", "mflops": costs.flops / 1e6, "mmadds": costs.madds / 1e6,
             "params": costs.params, "top1": accuracy(baseline, data), "pruned_top1": None,
             "search_seconds": seconds, "finetune_seconds": 0.0, "strength": {}}]
    print(f"baseline {spec.describe()}: {costs.summary()}, top-1 {rows[0]['top1']:.4f}, "
          f"{seconds:.0f} s", flush=True)
    finetune = TrainingConfig(epochs=FLAGS.finetune_epochs, batch_size=FLAGS.batch_size)
    for name in FLAGS.methods:
        cls = METHODS.get(name)
        training = dataclasses.replace(cls.DEFAULT_TRAINING, epochs=FLAGS.epochs,
                                       batch_size=FLAGS.batch_size)
        method = cls(training, finetune)
        t0 = time.perf_counter()
        result = method.compress(baseline, data, Target(flops=FLAGS.flops_fraction),
                                 seed=FLAGS.seed)
        rows.append({"method": name, "mflops": result.costs.flops / 1e6,
                     "mmadds": result.costs.madds / 1e6, "params": result.costs.params,
                     "top1": result.accuracy, "pruned_top1": result.pruned_accuracy,
                     "search_seconds": result.search_seconds,
                     "finetune_seconds": result.finetune_seconds,
                     "flops_fraction": result.fraction("flops"), "strength": result.strength,
                     "wall_seconds": time.perf_counter() - t0})
        print(result.summary(), flush=True)
    print()
    print(table(rows))
    figures = {"date": started, "dataset": data.name, "train": len(data.y_train),
               "test": len(data.y_test), "baseline": spec.describe(),
               "flops_fraction": FLAGS.flops_fraction, "baseline_epochs": FLAGS.baseline_epochs,
               "epochs": FLAGS.epochs, "finetune_epochs": FLAGS.finetune_epochs, "rows": rows}
    line = json.dumps(figures, sort_keys=True, default=float)
    print(line)
    if FLAGS.out:
        pathlib.Path(FLAGS.out).write_text(line + "\n")


def table(rows: list[dict]) -> str:
    """A Markdown table of the rows."""
    lines = ["| method | MFLOPs | MMAdds | params | top-1 | top-1 after surgery | "
             "sparsity training (s) | fine-tune (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        pruned = "-" if r["pruned_top1"] is None else f"{r['pruned_top1']:.3f}"
        lines.append(f"| {r['method']} | {r['mflops']:.2f} | {r['mmadds']:.2f} | "
                     f"{r['params']:,} | {r['top1']:.3f} | {pruned} | "
                     f"{r['search_seconds']:.0f} | {r['finetune_seconds']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    app.run(main)
