"""Flags of ``tools/search.py`` to library objects: space, constraints, strategy, evaluator."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Mapping

from absl import app

from keras_cnas.cli.common import load_spec
from keras_cnas.costs import Constraints, estimate
from keras_cnas.errors import InvalidSpecError
from keras_cnas.spaces import BlockSetSpace, DescriptorSpace, Space, reference
from keras_cnas.spaces.blockset import DEFAULT_STAGE_POSITIONS

SPACE_NAMES = ("descriptor", "blockset")
#: Costs measured on each trial's TFLite artifact; a --max_<cost> bound on one of them
#: switches the evaluator's measurement on (keras_cnas.export.MEASURED_COSTS).
MEASURED_BOUNDS = ("tflite_bytes", "arena_bytes", "latency_ms")
#: Hard bounds settable from the command line (flag max_<cost>).
BOUND_COSTS = ("params", "madds", "flops", "memory_bytes", "peak_activation_bytes", "train_seconds",
               *MEASURED_BOUNDS)
#: --export values (keras_cnas.export.QUANTIZATIONS).
EXPORT_QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
#: The quantization measured costs are taken on when --export is not given.
DEFAULT_MEASURE_QUANTIZE = "int8"


def make_space(name: str, input_shape: tuple[int, int, int], num_classes: int,
               flags: Mapping[str, Any]) -> Space:
    """The search space ``name`` for this data, with the bounds given as flags."""
    if name == "descriptor":
        bounds = {k: flags[k] for k in ("max_conv_layers", "max_filters", "max_fc_layers",
                                        "max_hidden") if flags.get(k) is not None}
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
    raise app.UsageError(f"--space={name}: unknown space; known: {', '.join(SPACE_NAMES)}")


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
    """Explicit ``--max_<cost>`` bounds, merged with ``--max_fraction`` of ``--reference``."""
    try:
        budget = Constraints(**{f"max_{c}": flags.get(f"max_{c}") for c in BOUND_COSTS})
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    fraction = flags.get("max_fraction")
    if fraction is not None:
        if not flags.get("reference"):
            raise app.UsageError("--max_fraction needs --reference=DIR|spec.json (the model whose "
                                 "memory and FLOPs the fraction is of)")
        ref = estimate(load_spec(str(reference_spec_path(flags["reference"]))))
        budget = budget.merged(Constraints.fraction_of(ref, fraction, costs=("memory_bytes", "flops")))
    elif flags.get("reference"):
        raise app.UsageError("--reference is only used with --max_fraction; pass --max_fraction=0.5 "
                             "for half of its memory and FLOPs")
    return budget


def strategy_kwargs(name: str, flags: Mapping[str, Any]) -> dict[str, Any]:
    """The flags that configure strategy ``name``."""
    if name == "montecarlo":
        return {"num_random": flags["num_random"], "num_adaptive": flags["num_adaptive"],
                "num_full": flags["num_full"], "n_best": flags["n_best"]}
    if name == "random":
        return {"num_samples": flags.get("max_trials") or flags["num_random"]}
    if name == "lazy_greedy":
        return {"cost_rules": (flags.get("cost_rule") or "apr",)}
    if name == "evolution":
        return {"num_trials": flags.get("max_trials") or 100,
                "population_size": flags["population_size"],
                "sample_size": min(flags["sample_size"], flags["population_size"])}
    return {}


def evaluator_kwargs(flags: Mapping[str, Any]) -> dict[str, Any]:
    return {"traction_epochs": flags["traction_epochs"], "full_epochs": flags["full_epochs"],
            "patience": flags["patience"], "batch_size": flags["batch_size"],
            "learning_rate": flags["learning_rate"], "beta": flags["beta"],
            "regularizer": flags["regularizer"], "time_limit_seconds": flags.get("trial_time_limit"),
            **measurement_kwargs(flags)}


def measurement_kwargs(flags: Mapping[str, Any]) -> dict[str, Any]:
    """``measure`` / ``export_quantize`` of the evaluator: the measured costs that have a
    ``--max_<cost>`` bound, on a ``--export`` (default int8) artifact; {} when none has."""
    measure = [c for c in MEASURED_BOUNDS if flags.get(f"max_{c}") is not None]
    if not measure:
        return {}
    quantize = flags.get("export") or DEFAULT_MEASURE_QUANTIZE
    if "arena_bytes" in measure and quantize in ("dynamic", "float16"):
        raise app.UsageError(f"--max_arena_bytes with --export={quantize}: TensorFlow Lite Micro "
                             "cannot run dynamic-range (hybrid) or float16 models, so no arena "
                             "can be measured; use --export=int8")
    return {"measure": measure, "export_quantize": quantize}


def export_best(search_dir: pathlib.Path, quantize: str, data: Any,
                constraints: Constraints) -> dict[str, Any]:
    """``--export``: the finalized best model (``search_dir/best/model.keras``) to
    ``search_dir/best/model.tflite`` (+ labels, ``export.json``), re-checked against the
    search's constraints. Raises ``ExportConstraintError`` if the artifact breaks one."""
    from keras_cnas.export import export_model

    best = search_dir / "best"
    if not (best / "model.keras").is_file():
        raise FileNotFoundError(f"--export: {best} holds no model.keras (the evaluator saved no "
                                "model); nothing to export")
    return export_model(best, best, quantize, data, constraints=constraints,
                        class_names=data.class_names)


def export_line(report: Mapping[str, Any]) -> str:
    """One line on an export: size, arena, latency, accuracy."""
    parts = [f"{report['quantize']} model.tflite: {report['tflite_bytes']:,} bytes"]
    if report.get("arena_bytes") is not None:
        parts.append(f"arena {report['arena_bytes']:,} bytes")
    latency = report["latency_ms"]
    parts.append(f"latency {latency['xnnpack']:.3f} ms (XNNPACK) / {latency['builtin']:.3f} ms "
                 "(builtin)")
    if report.get("tflite_accuracy") is not None:
        parts.append(f"test accuracy {report['tflite_accuracy']:.4f} (Keras "
                     f"{report['keras_accuracy']:.4f}, agreement {report['agreement']:.4f})")
    return "exported " + ", ".join(parts)
