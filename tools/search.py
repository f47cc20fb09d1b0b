"""Constrained architecture search from the shell.

Usage:
  python tools/search.py --dataset=digits --space=descriptor --strategy=montecarlo \
      --max_memory_bytes=200000 --max_flops=5e6 --search_dir=runs/x
  python tools/search.py ... --search_dir=runs/x --resume          # after a kill
  python tools/search.py ... --max_fraction=0.5 --reference=runs/unconstrained

  python tools/search.py ... --max_arena_bytes=20000 --export=int8  # measured bounds + export

Writes search_dir/trials.db (every trial), flags.json, summary.json and best/ (the best
model retrained on train + validation; with --export also best/model.tflite, labels.txt
and export.json). A --max_tflite_bytes / --max_arena_bytes / --max_latency_ms bound has
every trained candidate converted (with --export's quantization, default int8) and
measured; a trial that breaks one is INFEASIBLE. Exits non-zero, with the reason, when the
constraints cannot be met, the search dir holds another search, the exported model breaks
a bound, or a flag is wrong.
"""

from __future__ import annotations

import json
import pathlib
import sys

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import keras_cnas as cnas  # noqa: E402
from keras_cnas.cli import search as cli  # noqa: E402
from keras_cnas.data import DATASETS  # noqa: E402
from keras_cnas.strategies import STRATEGIES  # noqa: E402

FLAGS = flags.FLAGS
_ABSL_FLAGS = set(FLAGS)  # absl's own flags, left out of flags.json
# Data
flags.DEFINE_enum("dataset", "digits", DATASETS.names(), "Dataset to search on.")
flags.DEFINE_string("data_dir", None, "Directory with the dataset's files (mnist, cifar10).")
flags.DEFINE_float("validation_split", 0.1, "Fraction of the training split held out.",
                   lower_bound=0.01, upper_bound=0.9)
flags.DEFINE_integer("max_train_examples", None, "Use at most this many training examples.",
                     lower_bound=1)
# Space
flags.DEFINE_enum("space", "descriptor", list(cli.SPACE_NAMES), "Search space.")
flags.DEFINE_integer("max_conv_layers", None, "Descriptor: most conv layers (paper: 26).", lower_bound=1)
flags.DEFINE_integer("max_filters", None, "Descriptor: most filters per conv (paper: 128).", lower_bound=1)
flags.DEFINE_integer("max_fc_layers", None, "Descriptor: most hidden fc layers.", lower_bound=0)
flags.DEFINE_integer("max_hidden", None, "Descriptor: most units per fc layer (paper: 2048).", lower_bound=1)
flags.DEFINE_float("width_multiplier", 1.0, "Block-set: MobileNetV2 width multiplier.", lower_bound=0.1)
flags.DEFINE_list("stage_positions", None, "Block-set: positions in each of the 7 MobileNetV2 "
                  "stages (default 2,4,6,8,6,6,4: N = 36).")
flags.DEFINE_integer("head_filters", None, "Block-set: width of the 1x1 head conv (MobileNetV2: "
                     "1280; 0: none).", lower_bound=0)
# Hard constraints
for _cost in cli.BOUND_COSTS:
    flags.DEFINE_float(f"max_{_cost}", None, f"Hard upper bound on {_cost}.")
flags.DEFINE_float("max_fraction", None, "Bound memory and FLOPs at this fraction of --reference.",
                   lower_bound=1e-6)
flags.DEFINE_string("reference", None, "A search dir or spec.json for --max_fraction.")
flags.DEFINE_enum("export", None, list(cli.EXPORT_QUANTIZATIONS),
                  "Export the best model to best/model.tflite with this quantization after the "
                  "search, re-checking the constraints; also the quantization measured bounds "
                  "(--max_tflite_bytes, --max_arena_bytes, --max_latency_ms) are taken on "
                  "(default int8).")
# Strategy
flags.DEFINE_enum("strategy", "montecarlo", STRATEGIES.names(), "Search strategy.")
flags.DEFINE_enum("cost_rule", "apr", ["uc", "apr", "amr"], "Lazy greedy: gain per nothing (uc), "
                  "per parameter (apr) or per multiply-add (amr); rcas runs all three.")
flags.DEFINE_integer("num_random", 50, "Monte Carlo: random samples (paper: 50).", lower_bound=0)
flags.DEFINE_integer("num_adaptive", 50, "Monte Carlo: adaptive samples at traction (paper: 50).",
                     lower_bound=0)
flags.DEFINE_integer("num_full", 20, "Monte Carlo: adaptive samples trained fully (paper: 20).",
                     lower_bound=0)
flags.DEFINE_integer("n_best", 1, "Monte Carlo: move from one of the N best (§3.5).", lower_bound=1)
flags.DEFINE_integer("population_size", 20, "Evolution: population size.", lower_bound=1)
flags.DEFINE_integer("sample_size", 5, "Evolution: tournament size.", lower_bound=1)
# Training
flags.DEFINE_integer("traction_epochs", 3, "Epochs of a traction (early) evaluation.", lower_bound=1)
flags.DEFINE_integer("full_epochs", 30, "Most epochs of a full evaluation.", lower_bound=1)
flags.DEFINE_integer("patience", 5, "Early-stopping patience at full fidelity.", lower_bound=0)
flags.DEFINE_integer("batch_size", 128, "Mini-batch size (paper: 128).", lower_bound=1)
flags.DEFINE_float("learning_rate", 5e-4, "Adam learning rate (paper: 5e-4).", lower_bound=1e-9)
flags.DEFINE_float("beta", 5e-5, "Weight of R(A) in J = val_loss + beta * R(A).", lower_bound=0)
flags.DEFINE_enum("regularizer", "params_k", ["params_k", "madds_m", "none"], "R(A) of J.")
flags.DEFINE_float("trial_time_limit", None, "Seconds one training run may take.", lower_bound=1)
# Search
flags.DEFINE_integer("max_trials", None, "Evaluated trials in total (default: the strategy's).",
                     lower_bound=1)
flags.DEFINE_integer("workers", 1, "Trials at once; > 1: each in its own process (§3.6).", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seeds the strategy, the data split and every trial.")
flags.DEFINE_string("search_dir", None, "Where the search is stored.", required=True)
flags.DEFINE_bool("resume", False, "Continue the search stored in --search_dir.")
flags.DEFINE_bool("overwrite", False, "Delete the search in --search_dir and start over.")
flags.DEFINE_bool("finalize", True, "Retrain the best on train + validation and save it.")
flags.DEFINE_integer("ensemble_size", 0, "Also save every trial's model and report the test "
                     "accuracy of the best N voting by majority (the paper's ensemble).", lower_bound=0)
flags.register_multi_flags_validator(
    ["resume", "overwrite"], lambda f: not (f["resume"] and f["overwrite"]),
    message="pass at most one of --resume and --overwrite")
flags.register_multi_flags_validator(
    ["export", "finalize"], lambda f: not (f["export"] and not f["finalize"]),
    message="--export exports the finalized best model; drop --nofinalize")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    values = {name: FLAGS[name].value for name in sorted(set(FLAGS) - _ABSL_FLAGS)}
    constraints = cli.make_constraints(values)
    source = cnas.training.DataSource.registered(
        FLAGS.dataset, FLAGS.data_dir, validation_split=FLAGS.validation_split, seed=FLAGS.seed,
        max_train_examples=FLAGS.max_train_examples)
    data = source.load()  # cached per process: the evaluator reuses it, workers reload it
    space = cli.make_space(FLAGS.space, data.input_shape, data.num_classes, values)
    strategy = STRATEGIES.get(FLAGS.strategy)(**cli.strategy_kwargs(FLAGS.strategy, values))
    try:
        evaluator = cnas.training.KerasEvaluator(source, save_models=FLAGS.ensemble_size > 0,
                                                 **cli.evaluator_kwargs(values))
    except ValueError as e:  # e.g. --max_arena_bytes without tflite-micro installed
        raise app.UsageError(str(e)) from None
    runner = (cnas.engine.InProcessRunner() if FLAGS.workers == 1
              else cnas.engine.ProcessPoolRunner(workers=FLAGS.workers))
    search_dir = pathlib.Path(FLAGS.search_dir)
    print(f"{data.summary()}\nspace: {space!r}\nconstraints: {constraints}\nstrategy: {strategy!r}\n")
    try:
        result = cnas.search(space, constraints, strategy=strategy, evaluator=evaluator,
                             max_trials=FLAGS.max_trials, search_dir=search_dir, runner=runner,
                             seed=FLAGS.seed, resume=FLAGS.resume, overwrite=FLAGS.overwrite,
                             finalize=FLAGS.finalize, config_extra={"flags": values})
    except (cnas.InfeasibleConstraintsError, cnas.UnknownCostError, cnas.engine.SearchDirError) as e:
        sys.exit(f"error: {e}")
    (search_dir / "flags.json").write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    if FLAGS.ensemble_size and result.best is not None:
        ensemble = result.ensemble(FLAGS.ensemble_size)
        metrics = {"members": len(ensemble), **ensemble.evaluate(data.x_test, data.y_test)}
        (search_dir / "ensemble.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"ensemble of the best {len(ensemble)} trials, majority vote: test accuracy "
              f"{metrics['accuracy']:.4f}")
    if result.best is not None and result.best_metrics:
        print("best model (retrained on train + validation): " + ", ".join(
            f"{k} {v:.4f}" for k, v in sorted(result.best_metrics.items()) if isinstance(v, float)))
    if FLAGS.export and result.best is not None:
        from keras_cnas.export import ExportConstraintError, MicroError

        try:
            report = cli.export_best(search_dir, FLAGS.export, data, constraints)
        except (ExportConstraintError, MicroError, FileNotFoundError) as e:
            sys.exit(f"error: {e}")
        print(cli.export_line(report))


if __name__ == "__main__":
    app.run(main)
