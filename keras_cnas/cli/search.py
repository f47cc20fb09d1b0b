"""Flags of ``tools/search.py`` to library objects: space, constraints, strategy, evaluator."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Collection, Mapping, Sequence

from absl import app

from keras_cnas.cli.common import load_spec
from keras_cnas.cli.sized import RESIDUAL_FLAGS, SPACE_FLAGS
from keras_cnas.costs import Constraints, estimate
from keras_cnas.costs.constraints import parse_bytes
from keras_cnas.costs.measured import MEASURED_COSTS
from keras_cnas.costs.micro_support import micro_runs
from keras_cnas.costs.quantization import QUANTIZATIONS
from keras_cnas.devices import Device, device_names, get_device
from keras_cnas.engine.search_dir import Manifest
from keras_cnas.errors import InvalidSpecError
from keras_cnas.spaces import BlockSetSpace, DescriptorSpace, EnasCellSpace, Space, reference
from keras_cnas.spaces.blockset import DEFAULT_STAGE_POSITIONS
from keras_cnas.strategies import STRATEGIES
from keras_cnas.strategies.flags import StrategyFlag, parse_penalty_bounds
from keras_cnas.optimizer import RCAS_EPOCHS, RCAS_RECIPE, OptimizerRecipe

SPACE_NAMES = ("descriptor", "blockset", "enas_cell", "hyper")
#: --dataset values beyond the registered datasets: a folder of images per class.
FOLDER_DATASET = "folder"
#: --strategy values: the registered ask/tell strategies, then those run by their own
#: driver (B-ENAS), as the usage message has always listed them.
STRATEGY_NAMES = tuple(sorted(STRATEGIES.names(),
                              key=lambda name: (STRATEGIES.get(name).driver is not None, name)))
#: Costs measured on each trial's TFLite artifact; a --max_<cost> bound on one of them
#: switches the evaluator's measurement on.
MEASURED_BOUNDS = MEASURED_COSTS
#: Hard bounds settable from the command line (flag max_<cost>).
BOUND_COSTS = ("params", "madds", "flops", "memory_bytes", "peak_activation_bytes", "train_seconds",
               *MEASURED_BOUNDS)
#: --export values.
EXPORT_QUANTIZATIONS = QUANTIZATIONS
#: The quantization measured costs are taken on when --export is not given.
DEFAULT_MEASURE_QUANTIZE = "int8"
#: --device values (keras_cnas.devices).
DEVICE_NAMES = tuple(device_names())
#: Bounds given in bytes; their flags accept units (64KiB, 0.25MiB, 200kB).
SIZE_BOUNDS = tuple(c for c in BOUND_COSTS if c.endswith("_bytes"))


def bound_value(flags: Mapping[str, Any], cost: str) -> float | None:
    """``--max_<cost>`` as a number: sizes may carry a unit; a bad one is a usage error."""
    value = flags.get(f"max_{cost}")
    if value is None or cost not in SIZE_BOUNDS:
        return value
    try:
        return parse_bytes(value, name=f"--max_{cost}")
    except ValueError as e:
        raise app.UsageError(str(e)) from None


def device_of(flags: Mapping[str, Any]) -> Device | None:
    """``--device=NAME`` as a :class:`~keras_cnas.devices.Device` (None without the flag)."""
    if not flags.get("device"):
        return None
    try:
        return get_device(flags["device"])
    except ValueError as e:
        raise app.UsageError(f"--{e}") from None


def make_space(name: str, input_shape: tuple[int, int, int], num_classes: int,
               flags: Mapping[str, Any]) -> Space:
    """The search space ``name`` for this data, with the bounds given as flags."""
    if name == "descriptor":
        bounds = {k: flags[k] for k in (*SPACE_FLAGS["descriptor"], *RESIDUAL_FLAGS)
                  if flags.get(k) is not None}
        return DescriptorSpace(input_shape, num_classes, **bounds)
    if name == "blockset":
        alpha = flags.get("width_multiplier") or 1.0
        positions = flags.get("stage_positions")
        try:
            counts = [int(n) for n in positions] if positions else DEFAULT_STAGE_POSITIONS
            skeleton = reference.mobilenet_v2_skeleton(alpha, counts)
            if flags.get("head_filters") is not None:
                skeleton = dataclasses.replace(skeleton, head_filters=flags["head_filters"])
        except (ValueError, InvalidSpecError) as e:
            raise app.UsageError(f"--stage_positions / --head_filters: {e}; pass 7 positive "
                                 "counts, e.g. 1,1,2,2,1,1,1, and a head width >= 0") from None
        return BlockSetSpace(input_shape, num_classes, skeleton=skeleton)
    if name == "hyper":
        return make_hyper_space(flags.get("hypermodel"), input_shape, num_classes)
    if name == "enas_cell":
        try:
            return EnasCellSpace(input_shape, num_classes, num_layers=flags.get("num_layers") or 3,
                                 filters=flags.get("filters") or 20,
                                 max_blocks=flags.get("max_blocks") or 7)
        except InvalidSpecError as e:
            raise app.UsageError(f"--num_layers / --filters / --max_blocks: {e}") from None
    raise app.UsageError(f"--space={name}: unknown space; known: {', '.join(SPACE_NAMES)}")


def make_hyper_space(hypermodel: str | None, input_shape: tuple[int, int, int],
                     num_classes: int) -> Space:
    """``--space=hyper --hypermodel=module:function`` (or ``path/to/file.py:function``)."""
    from keras_cnas.spaces.hyper import HyperSpace

    if not hypermodel:
        raise app.UsageError("--space=hyper needs --hypermodel=module:function, the build(hp) "
                             "function to search (e.g. --hypermodel=my_models:build)")
    _importable_from_cwd()
    try:
        return HyperSpace(hypermodel, input_shape, num_classes)
    except (ValueError, InvalidSpecError) as e:
        raise app.UsageError(f"--hypermodel: {e}") from None


def _importable_from_cwd() -> None:
    """Modules next to where the user runs the tool import as with ``python -m``."""
    import os
    import sys

    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())


def write_flags(search_dir: pathlib.Path, values: Mapping[str, Any], *,
                starting: bool = False) -> None:
    """``search_dir/flags.json``: how the run was started. ``starting``: before the search, so
    a run that fails or is killed keeps it too; only into a directory that holds no search
    yet (a resume or an --overwrite rewrites it when the search has ended)."""
    if starting and ((search_dir / "trials.db").exists()
                     or Manifest(search_dir).foreign(["flags.json"])):
        return  # another search's flags, or a file no search wrote: the engine decides
    Manifest(search_dir).claim_absent(["flags.json"])
    (search_dir / "flags.json").write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")


def make_data(flags: Mapping[str, Any]) -> tuple[Any, Any]:
    """``(data, what the evaluator gets)``: a registered dataset's source (workers reload it),
    or, for ``--dataset=folder``, ``--data_fn`` or ``--augment``, the dataset in memory
    (workers get it as an ``.npz``)."""
    from keras_cnas import data as datasets
    from keras_cnas.errors import DataError
    from keras_cnas.training import DataSource

    augment = flags.get("augment")
    if not flags.get("data_fn") and flags.get("dataset") != FOLDER_DATASET:
        source = DataSource.registered(
            flags["dataset"], flags.get("data_dir"), validation_split=flags["validation_split"],
            seed=flags.get("seed", 0), max_train_examples=flags.get("max_train_examples"))
        try:
            data = source.load()  # cached per process: the evaluator reuses it
        except DataError as e:  # missing or corrupt files: not a usage error (exit 1)
            raise DataError(f"--dataset={flags['dataset']} --data_dir="
                            f"{flags.get('data_dir')}: {e}") from None
        if not augment:
            return data, source
    else:
        try:
            if flags.get("data_fn"):
                from keras_cnas._imports import import_object

                _importable_from_cwd()
                made = import_object(flags["data_fn"], argument="--data_fn")()
                data = datasets.as_dataset(made)
            else:
                if not flags.get("data_dir"):
                    raise app.UsageError("--dataset=folder needs --data_dir=DIR (one sub-folder "
                                         "of images per class)")
                size = flags.get("image_size")
                data = datasets.from_directory(
                    flags["data_dir"], image_size=[int(v) for v in size] if size else None,
                    color_mode=flags.get("color_mode") or "rgb",
                    validation_split=flags["validation_split"], seed=flags.get("seed", 0),
                    augmentation=augment or "crop")
        except (ValueError, DataError) as e:
            where = (f"--data_fn={flags['data_fn']}" if flags.get("data_fn") else
                     f"--dataset=folder --data_dir={flags.get('data_dir')}")
            if isinstance(e, DataError):  # unreadable files: exit 1, as for registered data
                raise DataError(f"{where}: {e}") from None
            raise app.UsageError(f"{where}: {e}") from None
    if augment:
        data = dataclasses.replace(data, augmentation=datasets.augmentation_named(augment))
    return data, data


def reference_spec_path(path: str) -> pathlib.Path:
    """``--reference``: a spec JSON file, a search dir (its ``best/spec.json``) or a dir
    holding ``spec.json``."""
    p = pathlib.Path(path)
    for candidate in (p, p / "best" / "spec.json", p / "spec.json"):
        if candidate.is_file():
            return candidate
    raise app.UsageError(f"--reference: {path} is neither a spec JSON file nor a directory with "
                         "best/spec.json or spec.json; pass an earlier search's directory or a spec file")


def make_constraints(flags: Mapping[str, Any]) -> Constraints:
    """``--device``'s bounds, overridden by explicit ``--max_<cost>`` flags, merged with
    ``--max_fraction`` of ``--reference``."""
    return resolve_constraints(flags)[0]


def resolve_constraints(flags: Mapping[str, Any]) -> tuple[Constraints, dict[str, str]]:
    """The constraints of :func:`make_constraints` and where each bound comes from
    (``{"max_arena_bytes": "device nrf52840: SRAM ... - reserve ...", ...}``)."""
    bounds: dict[str, float] = {}
    sources: dict[str, str] = {}
    device = device_of(flags)
    if device is not None:
        bounds.update(device.constraints().to_dict())
        sources.update(device.bound_sources())
    for cost in BOUND_COSTS:
        value = bound_value(flags, cost)
        if value is not None:  # an explicit flag overrides the device's figure
            bounds[f"max_{cost}"] = value
            sources[f"max_{cost}"] = f"flag --max_{cost}={flags[f'max_{cost}']}"
    try:
        budget = Constraints(**bounds)
    except ValueError as e:
        raise app.UsageError(f"--{e}") from None
    fraction = flags.get("max_fraction")
    if fraction is not None:
        if not flags.get("reference"):
            raise app.UsageError("--max_fraction needs --reference=DIR|spec.json (the model whose "
                                 "memory and FLOPs the fraction is of)")
        ref = estimate(load_spec(str(reference_spec_path(flags["reference"])), flag="reference"))
        share = Constraints.fraction_of(ref, fraction, costs=("memory_bytes", "flops"))
        budget = budget.merged(share)
        for key, value in share.to_dict().items():
            if budget.to_dict()[key] == value:
                sources[key] = f"--max_fraction={fraction} of --reference={flags['reference']}"
    elif flags.get("reference"):
        raise app.UsageError("--reference is only used with --max_fraction; pass --max_fraction=0.5 "
                             "for half of its memory and FLOPs")
    return budget, sources


def strategy_flags() -> dict[str, tuple[StrategyFlag, list[str]]]:
    """Every flag the registered strategies declare, once: name -> (declaration, the
    strategies that use it). A name two strategies share must be declared alike.

    Example:
        >>> strategy_flags()["num_random"][1]
        ['montecarlo', 'random']
    """
    out: dict[str, tuple[StrategyFlag, list[str]]] = {}
    for name in STRATEGIES.names():
        for flag in STRATEGIES.get(name).flags:
            if flag.name in out:
                known = out[flag.name][0]
                if (known.default, known.kind, known.low, known.high, tuple(known.choices)) != (
                        flag.default, flag.kind, flag.low, flag.high, tuple(flag.choices)):
                    raise ValueError(f"--{flag.name}: declared differently by strategies "
                                     f"{out[flag.name][1]} and {name!r}; declare it once")
                out[flag.name][1].append(name)
            else:
                out[flag.name] = (flag, [name])
    return out


def define_strategy_flags(flag_values: Any = None) -> list[str]:
    """Defines the strategies' flags (absl), each in the ``--help`` group of the strategies
    that use it ("strategy montecarlo, random"); returns the group names in order."""
    from absl import flags as absl_flags

    fv = flag_values if flag_values is not None else absl_flags.FLAGS
    groups: list[str] = []
    for flag, owners in strategy_flags().values():
        group = f"strategy {', '.join(owners)}"
        groups += [] if group in groups else [group]
        common_args = {"flag_values": fv, "module_name": group}
        if flag.kind == "enum":
            absl_flags.DEFINE_enum(flag.name, flag.default, list(flag.choices), flag.help,
                                   **common_args)
        elif flag.kind == "list":
            absl_flags.DEFINE_list(flag.name, flag.default, flag.help, **common_args)
        else:
            define = absl_flags.DEFINE_integer if flag.kind == "integer" else absl_flags.DEFINE_float
            define(flag.name, flag.default, flag.help, lower_bound=flag.low,
                   upper_bound=flag.high, **common_args)
    return groups


def strategy_kwargs(name: str, flags: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments of strategy ``name`` from its declared flags.

    Raises:
        app.UsageError: ``name`` is not a registered strategy (listing the known ones), or
            a flag's value is malformed.
    """
    try:
        cls = STRATEGIES.get(name)
    except KeyError as e:
        raise app.UsageError(f"--strategy={name}: {e.args[0] if e.args else e}") from None
    try:
        return cls.flag_arguments(flags)
    except ValueError as e:
        raise app.UsageError(f"--{e}") from None


def refuse_foreign_strategy_flags(name: str, given: Collection[str]) -> None:
    """Refuses a strategy flag the user set (``given``: the flags on the command line) that
    strategy ``name`` does not use: it would be silently ignored.

    Example:
        >>> refuse_foreign_strategy_flags("montecarlo", {"num_random", "max_trials"})
        >>> refuse_foreign_strategy_flags("random", {"num_full"})
        Traceback (most recent call last):
        ...
        absl.app.UsageError: --num_full only applies to --strategy=montecarlo, got --strategy=random; drop --num_full or pass --strategy=montecarlo
    """
    for flag, owners in strategy_flags().values():
        if flag.name in given and name in STRATEGIES.names() and name not in owners:
            choices = " or ".join(f"--strategy={owner}" for owner in owners)
            raise app.UsageError(f"--{flag.name} only applies to {choices}, got --strategy="
                                 f"{name}; drop --{flag.name} or pass {choices}")


def make_strategy(name: str, space: Space, flags: Mapping[str, Any]) -> Any:
    """``--strategy=name`` with its flags, checked against the space (B-ENAS needs ENAS
    cells): the same path for every registered strategy."""
    kwargs = strategy_kwargs(name, flags)
    try:
        strategy = STRATEGIES.get(name)(**kwargs)
        strategy.check_space(space)
    except ValueError as e:
        raise app.UsageError(f"--strategy={name} with --space={flags.get('space')}: {e}") from None
    return strategy


def penalty_bounds(values: Sequence[str] | None) -> dict[str, float]:
    """``--penalty_bounds=train_seconds=30,params=5e4`` as ``{cost: bound}``."""
    try:
        return parse_penalty_bounds(values)
    except ValueError as e:
        raise app.UsageError(f"--{e}") from None


def evaluator_kwargs(flags: Mapping[str, Any]) -> dict[str, Any]:
    """``KerasEvaluator``'s arguments: its recipe, fidelity and measurement pieces and the
    objective, from the training flags."""
    from keras_cnas.training.objective import Objective
    from keras_cnas.training.settings import Fidelity, Measurement

    try:
        goal = Objective.parse(flags.get("objective") or "J")
    except ValueError as e:
        raise app.UsageError(f"--objective: {e}") from None
    try:
        fidelity = Fidelity(traction_epochs=flags["traction_epochs"],
                            full_epochs=flags["full_epochs"], patience=flags["patience"])
        measurement = Measurement.from_config(measurement_kwargs(flags))
    except ValueError as e:  # e.g. --max_arena_bytes without tflite-micro installed
        raise app.UsageError(str(e)) from None
    return {"objective": goal.name, "direction": goal.direction,
            "callbacks": list(flags.get("callbacks") or ()),
            "augment": flags.get("augment") != "none", "batch_size": flags["batch_size"],
            "beta": flags["beta"], "regularizer": flags["regularizer"],
            "time_limit_seconds": flags.get("trial_time_limit"),
            "recipe": OptimizerRecipe.from_config(optimizer_kwargs(flags)),
            "fidelity": fidelity, "measurement": measurement}


def optimizer_kwargs(flags: Mapping[str, Any]) -> dict[str, Any]:
    """The optimizer flags, or with ``--rcas_recipe`` RCAS §4.1 scaled to ``--full_epochs``."""
    if flags.get("rcas_recipe"):
        recipe = RCAS_RECIPE.scaled(from_epochs=RCAS_EPOCHS, to_epochs=flags["full_epochs"])
        return recipe.get_config()
    try:
        decay_epochs = [int(e) for e in flags.get("lr_decay_epochs") or ()]
    except ValueError:
        raise app.UsageError(f"--lr_decay_epochs: expected comma-separated epoch numbers such as "
                             f"4,7,9, got {','.join(flags['lr_decay_epochs'])}") from None
    # Every optimizer flag has its default in tools/search.py: read them as given.
    config = {"optimizer": flags["optimizer"], "learning_rate": flags["learning_rate"],
              "momentum": flags["momentum"], "weight_decay": flags["weight_decay"],
              "lr_decay_epochs": decay_epochs, "lr_decay_factor": flags["lr_decay_factor"]}
    try:
        return OptimizerRecipe.from_config(config).get_config()
    except ValueError as e:
        raise app.UsageError(f"--{str(e)}") from None


def export_settings(flags: Mapping[str, Any]) -> tuple[str, bool]:
    """The artifact's quantization and int8 I/O: ``--export`` / ``--int8_io``, else the
    device's, else int8 with float32 I/O. The trials are measured on exactly this artifact,
    and the best is shipped as it."""
    device = device_of(flags)
    quantize = flags.get("export") or (device.quantize if device else DEFAULT_MEASURE_QUANTIZE)
    int8_io = flags.get("int8_io")
    if int8_io is None:  # not given: the device's I/O where its export is int8
        int8_io = bool(device and device.int8_io and quantize == "int8")
    if int8_io and quantize != "int8":
        raise app.UsageError(f"--int8_io needs int8 tensors inside: use --export=int8 (got "
                             f"--export={quantize})")
    return quantize, int8_io


def measurement_kwargs(flags: Mapping[str, Any]) -> dict[str, Any]:
    """``measure`` / ``export_quantize`` / ``export_int8_io`` of the evaluator: the measured
    costs that have a bound (a ``--max_<cost>`` flag or the ``--device``'s), plus the device's
    own (a phone's latency), on the artifact :func:`export_settings` names; {} when none."""
    bounded = resolve_constraints(flags)[0].bounds
    device = device_of(flags)
    wanted = set(device.measured_costs if device else ()) | set(bounded)
    measure = [c for c in MEASURED_BOUNDS if c in wanted]
    if not measure:
        return {}
    quantize, int8_io = export_settings(flags)
    if "arena_bytes" in measure and not micro_runs(quantize):
        raise app.UsageError(f"--max_arena_bytes with --export={quantize}: TensorFlow Lite Micro "
                             "cannot run dynamic-range (hybrid) or float16 models, so no arena "
                             "can be measured; use --export=int8")
    return {"measure": measure, "export_quantize": quantize, "export_int8_io": int8_io}


def export_best(search_dir: pathlib.Path, options: Any, data: Any,
                constraints: Constraints) -> Any:
    """``--export``: the finalized best model (``search_dir/best/model.keras``) to
    ``search_dir/best/model.tflite`` (+ labels, ``export.json``; with ``micro`` the TFLite
    Micro sources) as ``options`` (an :class:`~keras_cnas.export.ExportOptions`) say,
    re-checked against the search's constraints; returns the ``ExportReport``.
    Raises ``ExportConstraintError`` if the artifact breaks a bound."""
    from keras_cnas.export import export_model

    best = search_dir / "best"
    if not (best / "model.keras").is_file():
        raise FileNotFoundError(f"--export: {best} holds no model.keras (the evaluator saved no "
                                "model); nothing to export")
    return export_model(best, best, options, constraints=constraints,
                        class_names=data.class_names, **export_data(data))


def export_data(data: Any) -> dict[str, Any]:
    """What an export is verified on: the test split, or the validation split when the data
    has none (a tf.data or folder input without test images); int8 calibrates on train."""
    if len(data.y_test):
        return {"data": data}
    return {"data": data.arrays("validation"), "representative_data": data}


def export_top(result: Any, n: int, options: Any, data: Any,
               constraints: Constraints) -> list[Any]:
    """``--top_k_export=N``: the N best models retrained on train + validation
    (``best/``, ``top/<rank>-<id>/``), each exported to a verified ``model.tflite`` there
    (``options`` as for :func:`export_best`); their ``ExportReport``s (``out_dir`` says
    where)."""
    from keras_cnas.export import export_model

    return [export_model(directory, directory, options, constraints=constraints,
                         class_names=data.class_names, **export_data(data))
            for directory in result.finalize_top(n)]


def export_line(report: Mapping[str, Any]) -> str:
    """One line on an export (an ``ExportReport`` or its dict): size, arena, latency,
    accuracy."""
    io = " (int8 I/O)" if report.get("int8_io") else ""
    parts = [f"{report['quantize']}{io} model.tflite: {report['tflite_bytes']:,} bytes "
             f"({report['tflite_bytes'] / 1024:.1f} KiB)"]
    if report.get("arena_bytes") is not None:
        arena = report["arena_bytes"]
        parts.append(f"arena {arena:,} bytes ({arena / 1024:.1f} KiB"
                     + (f"; kTensorArenaSize {report['tensor_arena_size']:,}"
                        if report.get("tensor_arena_size") else "") + ")")
    latency = report["latency_ms"]
    parts.append(f"latency {latency['xnnpack']:.3f} ms (XNNPACK) / {latency['builtin']:.3f} ms "
                 "(builtin)")
    if report.get("tflite_accuracy") is not None:
        parts.append(f"test accuracy {report['tflite_accuracy']:.4f} (Keras "
                     f"{report['keras_accuracy']:.4f}, agreement {report['agreement']:.4f})")
    check = report.get("int8_check")
    if check:
        parts.append(check["summary"])
    line = "exported " + ", ".join(parts)
    if report.get("files", {}).get("op_resolver"):
        line += "\nTFLite Micro sources: " + ", ".join(
            report["files"][k] for k in ("c_header", "c_source", "op_resolver"))
    return line
