"""Constrained architecture search from the shell.

Usage:
  python tools/search.py --dataset=digits --space=descriptor --strategy=montecarlo \
      --max_memory_bytes=200000 --max_flops=5e6 --search_dir=runs/x
  python tools/search.py ... --search_dir=runs/x --resume          # after a kill
  python tools/search.py ... --max_fraction=0.5 --reference=runs/unconstrained

  python tools/search.py ... --max_arena_bytes=20KiB --export=int8  # measured bounds + export
  python tools/search.py ... --device=nano33ble --micro     # a device's arena/flash budget,
                                                            # int8 + int8 I/O, firmware headers
  python tools/search.py ... --runner=ray [--ray_address=auto]      # trials as Ray tasks

  # Your own KerasTuner-style build(hp), objective, data, callbacks:
  python tools/search.py --space=hyper --hypermodel=my_models:build --objective=val_accuracy \
      --dataset=folder --data_dir=photos/ --image_size=32,32 --augment=flip+crop \
      --callbacks=my_models:make_callbacks --max_params=20000 --workers=2 --top_k_export=3 \
      --search_dir=runs/mine

Writes search_dir/trials.db (every trial), flags.json, summary.json and best/ (the best
model retrained on train + validation; with --export also best/model.tflite, labels.txt
and export.json). A --max_tflite_bytes / --max_arena_bytes / --max_latency_ms bound has
every trained candidate converted (with --export's quantization, default int8) and
measured; a trial that breaks one is INFEASIBLE. --device=NAME (keras_cnas.devices) sets
--max_arena_bytes / --max_tflite_bytes from the target's SRAM and flash less a documented
reserve (explicit --max_* flags override; summary.json's config.bound_sources says where each
bound came from) and the export (int8, int8 I/O): the artifact measured on every trial is the
one --export ships. --micro adds model_data.h (kTensorArenaSize, input / output scale and zero
point), model_data.cc and model_data_ops.h (the op resolver). An int8 export that loses more
than --max_int8_drop points against Keras is fine-tuned with QAT and re-checked first.
Exits non-zero, with the reason, when the constraints cannot be met, no trial met the bounds
(naming the bound and the closest trial), the search dir holds another search, the exported
model breaks a bound, or a flag is wrong.
"""

from __future__ import annotations

import json
import pathlib
import sys

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import keras_cnas as cnas  # noqa: E402
from keras_cnas.cli import search as cli  # noqa: E402
from keras_cnas.cli.sized import RESIDUAL_FLAGS, sized_space  # noqa: E402
from keras_cnas.data import DATASETS  # noqa: E402
from keras_cnas.export import DEFAULT_MAX_INT8_DROP  # noqa: E402
from keras_cnas.cli import common  # noqa: E402
from keras_cnas.errors import DataError  # noqa: E402

#: Flags a message that names none is about, by error type (cli.common.run).
BLAME = {DataError: "data_dir"}
FLAGS = flags.FLAGS
_ABSL_FLAGS = set(FLAGS)  # absl's own flags, left out of flags.json
# Data
flags.DEFINE_enum("dataset", "digits", [*DATASETS.names(), cli.FOLDER_DATASET],
                  "Dataset to search on (folder: --data_dir holds one sub-folder of images per class).")
flags.DEFINE_string("data_dir", None, "Directory with the dataset's files (mnist, cifar10, folder).")
flags.DEFINE_list("image_size", None, "--dataset=folder: resize every image to HEIGHT,WIDTH "
                  "(default: the first image's size).")
flags.DEFINE_enum("color_mode", "rgb", ["rgb", "grayscale"], "--dataset=folder: channels.")
flags.DEFINE_string("data_fn", None, "module:function returning the data in any form search(data=) "
                    "takes: a tf.data.Dataset, (train, validation) ones, (x, y) arrays, a Dataset.")
flags.DEFINE_enum("augment", None, ["none", "flip", "crop", "flip+crop"], "Training augmentation "
                  "(default: the dataset's own; folder: crop).")
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
flags.DEFINE_integer("max_stride", None, "Descriptor: largest conv stride (paper: 1; sized for "
                     "a budget: 2).", lower_bound=1)
flags.DEFINE_integer("max_skip_span", None, "Descriptor: most conv layers a skip connection "
                     "spans (paper: 0, no skips; sized for a budget: 2).", lower_bound=0)
flags.DEFINE_bool("global_pool", None, "Descriptor: global average pooling before the fc "
                  "layers (paper: no, flatten; sized for a budget: yes).")
flags.DEFINE_float("width_multiplier", 1.0, "Block-set: MobileNetV2 width multiplier.", lower_bound=0.1)
flags.DEFINE_list("stage_positions", None, "Block-set: positions in each of the 7 MobileNetV2 "
                  "stages (default 2,4,6,8,6,6,4: N = 36).")
flags.DEFINE_string("hypermodel", None, "--space=hyper: the KerasTuner-style build(hp) function, "
                    "as module:function or path/to/file.py:function.")
flags.DEFINE_integer("head_filters", None, "Block-set: width of the 1x1 head conv (MobileNetV2: "
                     "1280; 0: none).", lower_bound=0)
flags.DEFINE_integer("num_layers", 3, "ENAS cell: cells stacked while searching (B-ENAS: 3).",
                     lower_bound=1)
flags.DEFINE_integer("filters", 20, "ENAS cell: stem width, doubled at each reduction.",
                     lower_bound=1)
flags.DEFINE_integer("max_blocks", 7, "ENAS cell: most blocks per cell (B-ENAS: 7).", lower_bound=2)
# Hard constraints
flags.DEFINE_string("device", None, "A deployment target whose budget bounds the search: "
                    f"{', '.join(cli.DEVICE_NAMES)} (keras_cnas.devices; its SRAM and flash less "
                    "a documented reserve give --max_arena_bytes / --max_tflite_bytes, and its "
                    "export sets --export / --int8_io). Explicit --max_* flags override it.")
for _cost in cli.BOUND_COSTS:
    if _cost in cli.SIZE_BOUNDS:
        flags.DEFINE_string(f"max_{_cost}", None, f"Hard upper bound on {_cost}: bytes, or with "
                            "a unit (64KiB, 0.25MiB, 200kB).")
    else:
        flags.DEFINE_float(f"max_{_cost}", None, f"Hard upper bound on {_cost}.")
flags.DEFINE_float("max_fraction", None, "Bound memory and FLOPs at this fraction of --reference.",
                   lower_bound=1e-6)
flags.DEFINE_string("reference", None, "A search dir or spec.json for --max_fraction.")
flags.DEFINE_bool("int8_io", None, "int8 input and output tensors on the measured and the "
                  "exported artifact (--export=int8; default: the --device's setting).")
flags.DEFINE_bool("micro", False, "With --export: also write the TFLite Micro sources to best/: "
                  "model_data.h / .cc (the model, kTensorArenaSize, input / output scale and "
                  "zero point) and model_data_ops.h (the op resolver).")
flags.DEFINE_float("max_int8_drop", DEFAULT_MAX_INT8_DROP, "With --export=int8: most accuracy points (validation split) the "
                   "int8 model may lose against Keras; above it the model is fine-tuned with "
                   "quantization-aware training and re-checked before anything is written.",
                   lower_bound=0)
flags.DEFINE_integer("qat_epochs", 2, "Epochs of the QAT fine-tuning --max_int8_drop triggers.",
                     lower_bound=1)
flags.DEFINE_integer("arena_headroom", None, "Bytes kTensorArenaSize adds to the measured "
                     "arena (default: max(1 KiB, 10 %), see keras_cnas.export.arena_headroom).",
                     lower_bound=0)
flags.DEFINE_enum("export", None, list(cli.EXPORT_QUANTIZATIONS),
                  "Export the best model to best/model.tflite with this quantization after the "
                  "search, re-checking the constraints; also the quantization measured bounds "
                  "(--max_tflite_bytes, --max_arena_bytes, --max_latency_ms) are taken on "
                  "(default int8).")
# Strategy
flags.DEFINE_enum("strategy", "bayesopt", cli.STRATEGY_NAMES, "Search strategy (default: "
                  "the tabular benchmark's winner, see docs/results.md; benas: B-ENAS with "
                  "weight sharing, for --space=enas_cell). Its flags are in the 'strategy "
                  "<name>' groups below.")
# Each strategy's own flags, declared next to it (keras_cnas.strategies.flags).
STRATEGY_GROUPS = cli.define_strategy_flags()
# Training
flags.DEFINE_integer("traction_epochs", 3, "Epochs of a traction (early) evaluation.", lower_bound=1)
flags.DEFINE_integer("full_epochs", 30, "Most epochs of a full evaluation.", lower_bound=1)
flags.DEFINE_integer("patience", 5, "Early-stopping patience at full fidelity.", lower_bound=0)
flags.DEFINE_integer("batch_size", 128, "Mini-batch size (paper: 128).", lower_bound=1)
flags.DEFINE_float("learning_rate", 5e-4, "Initial learning rate (MIT-LL, Adam: 5e-4).",
                   lower_bound=1e-9)
flags.DEFINE_enum("optimizer", "adam", ["adam", "sgd_nesterov"], "Optimizer of every trial.")
flags.DEFINE_float("momentum", 0.9, "SGD momentum.", lower_bound=0, upper_bound=0.999)
flags.DEFINE_float("weight_decay", 0.0, "Decoupled weight decay on kernels.", lower_bound=0)
flags.DEFINE_list("lr_decay_epochs", [], "0-based epochs at which the learning rate is "
                  "multiplied by --lr_decay_factor, e.g. 4,7,9.")
flags.DEFINE_float("lr_decay_factor", 0.1, "Step decay multiplier.", lower_bound=1e-9, upper_bound=1)
flags.DEFINE_bool("rcas_recipe", False, "Train every trial as RCAS §4.1: SGD Nesterov 0.9, lr 0.1 "
                  "decayed x0.1 at epochs 4, 7, 9 of 10 (moved proportionally to --full_epochs), "
                  "weight decay 4e-5; replaces the optimizer flags above.")
flags.DEFINE_string("objective", "J", "What to optimise: J (MIT-LL: val_loss + beta * R), "
                    "val_accuracy, val_loss, or METRIC:min|max.")
flags.DEFINE_list("callbacks", [], "Your Keras callbacks for every trial, as module:attribute "
                  "(an instance, a Callback class, or a function returning callbacks).")
flags.DEFINE_float("beta", 5e-5, "Weight of R(A) in J = val_loss + beta * R(A).", lower_bound=0)
flags.DEFINE_enum("regularizer", "params_k", ["params_k", "madds_m", "none"], "R(A) of J.")
flags.DEFINE_float("trial_time_limit", None, "Seconds one training run may take.", lower_bound=1)
flags.DEFINE_bool("inherit_weights", False, "Start a Monte Carlo / evolution child or a "
                  "local-search neighbour from its parent trial's trained weights where layers "
                  "match (saved as weights.npz in each trial directory).")
# Search
flags.DEFINE_integer("max_trials", None, "Evaluated trials in total (default: the strategy's).",
                     lower_bound=1)
flags.DEFINE_integer("workers", 1, "Trials at once; > 1: each in its own process (§3.6).", lower_bound=1)
flags.DEFINE_enum("runner", None, ["inprocess", "process", "ray"],
                  "Where trials run: inprocess (sequential, deterministic), process (each in a "
                  "fresh local process, --workers at once) or ray (each a Ray task; --workers, "
                  "if given, caps the trials at once). Default: inprocess for --workers=1, else "
                  "process.")
flags.DEFINE_string("ray_address", None, "--runner=ray: the Ray cluster to join ('auto': the one "
                    "`ray start` runs here; 'ray://head:10001'). Default: a local Ray with this "
                    "machine's CPUs.")
flags.DEFINE_float("cpus_per_trial", 1.0, "--runner=ray: CPUs Ray reserves for each trial (also "
                   "its TensorFlow threads).", lower_bound=0.01)
flags.DEFINE_float("gpus_per_trial", 0.0, "--runner=ray: GPUs Ray reserves for each trial.",
                   lower_bound=0)
flags.DEFINE_integer("seed", 0, "Seeds the strategy, the data split and every trial.",
                     lower_bound=0, upper_bound=common.MAX_SEED)
flags.DEFINE_string("search_dir", None, "Where the search is stored.", required=True)
flags.DEFINE_bool("resume", False, "Continue the search stored in --search_dir.")
flags.DEFINE_bool("overwrite", False, "Delete the search in --search_dir and start over.")
flags.DEFINE_bool("finalize", True, "Retrain the best on train + validation and save it.")
flags.DEFINE_integer("top_k_export", 0, "Retrain the N best on train + validation and export each "
                     "to a verified model.tflite (--export's quantization, default int8) under "
                     "best/ and top/<rank>-<id>/.", lower_bound=0)
flags.DEFINE_integer("ensemble_size", 0, "Also save every trial's model and report the test "
                     "accuracy of the best N voting by majority (the paper's ensemble).", lower_bound=0)
#: --help groups (the strategies' come from cli.define_strategy_flags); a new flag goes in one.
HELP_GROUPS = {
    "data": ["dataset", "data_dir", "image_size", "color_mode", "data_fn", "augment",
             "validation_split", "max_train_examples"],
    "space": ["space", "max_conv_layers", "max_filters", "max_fc_layers", "max_hidden",
              "max_stride", "max_skip_span", "global_pool", "width_multiplier", "stage_positions", "hypermodel", "head_filters", "num_layers",
              "filters", "max_blocks"],
    "constraints and export": ["device", *(f"max_{c}" for c in cli.BOUND_COSTS), "max_fraction",
                               "reference", "int8_io", "micro", "max_int8_drop", "qat_epochs",
                               "arena_headroom", "export"],
    "strategy": ["strategy"],
    "training": ["traction_epochs", "full_epochs", "patience", "batch_size", "learning_rate",
                 "optimizer", "momentum", "weight_decay", "lr_decay_epochs", "lr_decay_factor",
                 "rcas_recipe", "objective", "callbacks", "beta", "regularizer",
                 "trial_time_limit", "inherit_weights"],
    "search": ["max_trials", "seed", "search_dir", "resume", "overwrite", "finalize",
               "top_k_export", "ensemble_size"],
    "runner": ["workers", "runner", "ray_address", "cpus_per_trial", "gpus_per_trial"],
}
common.group_flags({**{g: HELP_GROUPS[g] for g in ("data", "space", "constraints and export",
                                                   "strategy")},
                    **{g: [] for g in STRATEGY_GROUPS},
                    **{g: HELP_GROUPS[g] for g in ("training", "search", "runner")}})
flags.register_multi_flags_validator(
    ["resume", "overwrite"], lambda f: not (f["resume"] and f["overwrite"]),
    message="pass at most one of --resume and --overwrite")
flags.register_multi_flags_validator(
    ["export", "finalize"], lambda f: not (f["export"] and not f["finalize"]),
    message="--export exports the finalized best model; drop --nofinalize")


def make_runner() -> cnas.engine.Runner:
    """--runner (default: inprocess for --workers=1, else process) with its flags."""
    name = FLAGS.runner or ("inprocess" if FLAGS.workers == 1 else "process")
    ray_only = [f"--{n}" for n in ("ray_address", "cpus_per_trial", "gpus_per_trial") if FLAGS[n].present]
    if name != "ray" and ray_only:
        raise app.UsageError(f"{', '.join(ray_only)} only apply to --runner=ray; add --runner=ray "
                             f"or drop them (got --runner={name})")
    if name == "inprocess":
        if FLAGS.workers > 1:
            raise app.UsageError(f"--runner=inprocess runs one trial at a time, got --workers="
                                 f"{FLAGS.workers}; use --runner=process or --runner=ray")
        return cnas.engine.InProcessRunner()
    if name == "process":
        return cnas.engine.ProcessPoolRunner(workers=FLAGS.workers)
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise app.UsageError("--runner=ray needs Ray, which is not installed: pip install "
                             "'keras_cnas[ray]'")
    try:
        return cnas.engine.RayRunner(
            FLAGS.ray_address, cpus_per_trial=FLAGS.cpus_per_trial,
            gpus_per_trial=FLAGS.gpus_per_trial,
            max_concurrent_trials=FLAGS.workers if FLAGS["workers"].present else None)
    except ValueError as e:
        raise app.UsageError(str(e)) from None


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    values = {name: FLAGS[name].value for name in sorted(set(FLAGS) - _ABSL_FLAGS)}
    given = {name for name in values if FLAGS[name].present}  # set on the command line
    cli.refuse_foreign_strategy_flags(FLAGS.strategy, given)
    try:  # before any work: an empty, ".", home or root --search_dir is a usage error
        search_dir = cnas.engine.search_dir.check_path(FLAGS.search_dir)
    except cnas.engine.SearchDirError as e:
        raise app.UsageError(str(e)) from None
    constraints, bound_sources = cli.resolve_constraints(values)
    device = cli.device_of(values)
    if FLAGS.micro and not FLAGS.export and device is None:
        raise app.UsageError("--micro writes the exported model's TFLite Micro sources: add "
                             "--export=int8 (or --device=NAME)")
    export = FLAGS.export or (device.quantize if device is not None and FLAGS.micro else None)
    extra = {"flags": values, "bound_sources": bound_sources,
             "device": device.to_dict() if device is not None else None}
    cli.penalty_bounds(FLAGS.penalty_bounds)  # checked whatever the strategy (used by two)
    # A registered dataset's source is cached per process (workers reload it); a folder,
    # --data_fn or --augment gives the data in memory (workers get it as an .npz).
    data, source = cli.make_data(values)
    try:
        evaluator = cnas.training.KerasEvaluator(source, save_models=FLAGS.ensemble_size > 0,
                                                 inherit_weights=FLAGS.inherit_weights,
                                                 **cli.evaluator_kwargs(values))
    except ValueError as e:  # e.g. --max_arena_bytes without tflite-micro installed
        raise app.UsageError(str(e)) from None
    # A budget and no space bound flags: the space is sized from the budget (cli/sized.py).
    sized = sized_space(FLAGS.space, data.input_shape, data.num_classes, constraints, given,
                        evaluator.export_target,
                        {name: values[name] for name in RESIDUAL_FLAGS if name in given})
    if sized is not None:
        space = sized.space
        extra["space_sizing"] = sized.to_dict()
        print(f"space sized for the budget: {sized.settings}, {sized.share:.0%} of "
              f"{sized.samples} samples feasible")
    else:
        space = cli.make_space(FLAGS.space, data.input_shape, data.num_classes, values)
    strategy = cli.make_strategy(FLAGS.strategy, space, values)
    runner = make_runner()
    target = f"device: {device.describe()}\n" if device is not None else ""
    print(f"{data.summary()}\nspace: {space!r}\n{target}constraints: {constraints}\n"
          f"strategy: {strategy!r}\n")
    # Held until this process exits: over the search and what follows it (flags.json, the
    # ensemble, --export), so no other process touches best/ in between (it is re-entrant).
    cnas.engine.search_dir.SearchDirLock(search_dir)
    cli.write_flags(search_dir, values, starting=not (FLAGS.resume or FLAGS.overwrite))
    # Errors (infeasible bounds, a search_dir in use, no Ray at --ray_address...) become one
    # line in cli.common.run. B-ENAS takes this path too (the engine runs its driver).
    result = cnas.search(space, constraints, strategy=strategy, evaluator=evaluator,
                         max_trials=FLAGS.max_trials,
                         search_dir=search_dir, runner=runner, seed=FLAGS.seed,
                         resume=FLAGS.resume, overwrite=FLAGS.overwrite,
                         finalize=FLAGS.finalize, config_extra=extra)
    cli.write_flags(search_dir, values)
    if FLAGS.ensemble_size and result.best is not None:
        ensemble = result.ensemble(FLAGS.ensemble_size)
        metrics = {"members": len(ensemble), **ensemble.evaluate(data.x_test, data.y_test)}
        (search_dir / "ensemble.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"ensemble of the best {len(ensemble)} trials, majority vote: test accuracy "
              f"{metrics['accuracy']:.4f}")
    if result.best is None:
        sys.exit(f"error: {result.no_best or 'the search has no best trial'}")
    if result.best_metrics:
        print("best model (retrained on train + validation): " + ", ".join(
            f"{k} {v:.4f}" for k, v in sorted(result.best_metrics.items()) if isinstance(v, float)))
    if export:
        from keras_cnas.export import ExportConstraintError, ExportOptions, MicroError

        _, int8_io = cli.export_settings({**values, "export": export})
        try:
            options = ExportOptions(export, int8_io=int8_io, micro=FLAGS.micro,
                                    max_int8_drop=FLAGS.max_int8_drop, qat_epochs=FLAGS.qat_epochs,
                                    arena_headroom_bytes=FLAGS.arena_headroom, seed=FLAGS.seed)
            report = cli.export_best(search_dir, options, data, constraints)
        except (ExportConstraintError, MicroError, FileNotFoundError, ValueError) as e:
            sys.exit(f"error: {e}")
        print(cli.export_line(report))
    if FLAGS.top_k_export and result.best is not None:
        from keras_cnas.export import ExportConstraintError, ExportOptions, MicroError

        try:
            reports = cli.export_top(result, FLAGS.top_k_export,
                                     ExportOptions(export or "int8", seed=FLAGS.seed), data,
                                     constraints)
        except (ExportConstraintError, MicroError, FileNotFoundError, ValueError) as e:
            sys.exit(f"error: {e}")
        for rank, report in enumerate(reports, start=1):
            print(f"top {rank} ({report.out_dir}): {cli.export_line(report)}")


if __name__ == "__main__":
    common.run(main, blame=BLAME)
