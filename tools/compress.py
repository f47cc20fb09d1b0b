"""Compress a baseline to a hard cost target (compact search from a baseline).

Usage:
  python tools/compress.py --baseline=resnet32 --method=morphnet --flops_fraction=0.33 \
      --dataset=cifar10 --data_dir=../shared/data/cifar10-jpeg --export=int8 --out_dir=runs/c
  python tools/compress.py --baseline=runs/x/best --method=group_lasso --params_fraction=0.5 \
      --dataset=digits --sparsity_m_by_n=2,4 --qat_epochs=1 --export=int8 --out_dir=runs/c2

--baseline is resnet<depth> (He et al.'s CIFAR ResNet, built for the dataset and trained for
--baseline_epochs) or a saved model (a .keras file or a directory holding model.keras).
--method is group_lasso, vardrop, morphnet or synthesis. Every --<cost>_fraction given is a
hard bound (a third of the FLOPs when none is). Writes to --out_dir: model.keras (the
compressed model), baseline/ (a ResNet trained here), summary.json (baseline and compressed
costs, accuracies, timings, the method's strength and history), flags.json and, with
--export, model.tflite, labels.txt and export.json (keras_cnas.export). Exits non-zero, with
the reason, when the target is unreachable or a flag is wrong.
"""

from __future__ import annotations

import pathlib
import sys

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from keras_cnas.cli import compress as cli  # noqa: E402
from keras_cnas.costs.quantization import QUANTIZATIONS  # noqa: E402
from keras_cnas.data import DATASETS  # noqa: E402

METHOD_NAMES = ["group_lasso", "vardrop", "morphnet", "synthesis"]
from keras_cnas.cli import common  # noqa: E402
from keras_cnas.errors import DataError  # noqa: E402

#: Flags a message that names none is about, by error type (cli.common.run).
BLAME = {DataError: "data_dir"}
FLAGS = flags.FLAGS
_ABSL_FLAGS = set(FLAGS)
flags.DEFINE_string("baseline", None, "resnet20 / resnet32 / resnet56 (any resnet<6n+2>), or "
                    "a saved model (.keras file or a directory holding model.keras).",
                    required=True)
flags.DEFINE_enum("method", "group_lasso", METHOD_NAMES, "Compression method.")
flags.DEFINE_float("flops_fraction", None, "Hard bound: compressed FLOPs <= this x baseline "
                   f"(default {cli.DEFAULT_FLOPS_FRACTION} when no fraction is given).",
                   lower_bound=1e-9, upper_bound=1.0)
flags.DEFINE_float("madds_fraction", None, "Hard bound on multiply-accumulates, x baseline.",
                   lower_bound=1e-9, upper_bound=1.0)
flags.DEFINE_float("params_fraction", None, "Hard bound on parameters, x baseline.",
                   lower_bound=1e-9, upper_bound=1.0)
flags.DEFINE_float("memory_fraction", None, "Hard bound on memory (eq. 6), x baseline.",
                   lower_bound=1e-9, upper_bound=1.0)
# Data
flags.DEFINE_enum("dataset", "digits", DATASETS.names(), "Dataset.")
flags.DEFINE_string("data_dir", None, "Directory with the dataset's files (mnist, cifar10).")
flags.DEFINE_float("validation_split", 0.1, "Fraction of the training split held out.",
                   lower_bound=0.0, upper_bound=0.9)
flags.DEFINE_integer("max_train_examples", None, "Use at most this many training examples.",
                     lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seeds the data split and every training run.",
                     lower_bound=0, upper_bound=common.MAX_SEED)
# Baseline
flags.DEFINE_integer("width", 16, "resnet baselines: channels of the first stage (paper: 16).",
                     lower_bound=1)
flags.DEFINE_integer("baseline_epochs", 10, "resnet baselines: training epochs.", lower_bound=0)
flags.DEFINE_float("baseline_learning_rate", 1e-3, "resnet baselines: Adam's step size.",
                   lower_bound=1e-9)
# Method
flags.DEFINE_integer("epochs", None, "Sparsity-training epochs per round (synthesis: per "
                     "step); default: the method's.", lower_bound=1)
flags.DEFINE_float("learning_rate", None, "Learning rate of the sparsity training; default: "
                   "the method's (proximal SGD 0.05 for group_lasso / morphnet, Adam 1e-3 "
                   "otherwise).", lower_bound=1e-9)
flags.DEFINE_float("strength", None, "The method's starting strength (group_lasso, morphnet: "
                   "proximal shrink per round; vardrop: KL weight); default: the method's.",
                   lower_bound=1e-12)
flags.DEFINE_float("min_width", None, "morphnet: fraction of every channel group kept alive "
                   "and exempt from the penalty (0: MorphNet's rule unchanged); default 0.25.",
                   lower_bound=0.0, upper_bound=0.999)
flags.DEFINE_integer("steps", 3, "synthesis: steps to the target.", lower_bound=1)
flags.DEFINE_float("tolerance", None, "synthesis: largest validation-accuracy drop allowed.",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_integer("finetune_epochs", 3, "Fine-tuning epochs of the compressed model.",
                     lower_bound=0)
flags.DEFINE_float("finetune_learning_rate", 1e-3, "Adam's step size when fine-tuning.",
                   lower_bound=1e-9)
flags.DEFINE_integer("batch_size", 64, "Mini-batch size.", lower_bound=1)
flags.DEFINE_integer("steps_per_epoch", None, "Cap on the steps of every epoch.", lower_bound=1)
# tfmot stage and export
flags.DEFINE_list("sparsity_m_by_n", None, "m,n structured pruning after shrinking, e.g. 2,4.")
flags.DEFINE_integer("prune_epochs", 1, "Fine-tuning epochs of the m:n pruning.", lower_bound=1)
flags.DEFINE_integer("qat_epochs", 0, "Quantization-aware training epochs (--export=int8).",
                     lower_bound=0)
flags.DEFINE_enum("export", None, list(QUANTIZATIONS),
                  "Export the compressed model to model.tflite with this quantization.")
flags.DEFINE_string("out_dir", None, "Where to write the results.", required=True)
flags.DEFINE_bool("overwrite", False, "Replace the contents of a non-empty --out_dir.")

flags.register_multi_flags_validator(
    ["qat_epochs", "export"], lambda f: not f["qat_epochs"] or f["export"] == "int8",
    message="--qat_epochs trains for int8 inference: pass --export=int8")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    values = {name: FLAGS[name].value for name in sorted(set(FLAGS) - _ABSL_FLAGS)}
    # Everything that can be refused is refused before TensorFlow loads.
    cli.check_baseline(FLAGS.baseline)
    target = cli.make_target(values)
    m_by_n = cli.parse_m_by_n(FLAGS.sparsity_m_by_n)
    method = cli.make_method(FLAGS.method, values)  # (loads TensorFlow)
    out = cli.prepare_out_dir(FLAGS.out_dir, FLAGS.overwrite)

    from keras_cnas.compression import ToleranceExceededError, UnsupportedModelError
    from keras_cnas.data import load
    from keras_cnas.errors import InfeasibleConstraintsError

    try:
        data = load(FLAGS.dataset, FLAGS.data_dir, validation_split=FLAGS.validation_split,
                    seed=FLAGS.seed, max_train_examples=FLAGS.max_train_examples)
    except DataError as e:
        raise app.UsageError(f"--dataset={FLAGS.dataset}: {e}") from None
    print(f"{data.summary()}\nmethod: {method!r}\ntarget: {target}\n")
    model, baseline_info = cli.load_baseline(FLAGS.baseline, data, values, out)
    # Written once the inputs are known good: a refused run leaves --out_dir as it was.
    cli.write_json(out / "flags.json", values)
    try:
        result = method.compress(model, data, target, seed=FLAGS.seed)
    except (InfeasibleConstraintsError, UnsupportedModelError, ToleranceExceededError) as e:
        sys.exit(f"error: {e}")
    final, to_export, stage = cli.optimize(result.model, data, values, m_by_n)
    final.save(out / "model.keras")
    summary = {**result.to_dict(), "baseline_info": baseline_info, "tfmot": stage,
               "dataset": {"name": data.name, "train": len(data.y_train),
                           "validation": len(data.y_val), "test": len(data.y_test)}}
    if FLAGS.export:
        from keras_cnas.export import ExportConstraintError, ExportOptions, MicroError, export_model

        try:
            options = ExportOptions(FLAGS.export, latency_runs=20, seed=FLAGS.seed)
            summary["export"] = export_model(to_export, out, options, data).to_dict()
        except (ExportConstraintError, MicroError, ValueError) as e:
            sys.exit(f"error: export: {e}")
        summary["export"].pop("latency", None)
    cli.write_json(out / "summary.json", summary)
    print(cli.result_table(result))
    print(result.summary())
    if "export" in summary:
        print(f"exported {FLAGS.export} model.tflite: {summary['export']['tflite_bytes']:,} bytes, "
              f"test accuracy {summary['export']['tflite_accuracy']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    common.run(main, blame=BLAME)
