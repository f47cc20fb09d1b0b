"""Flags of ``tools/search.py`` to library objects: space, constraints, strategy, evaluator."""

from __future__ import annotations

import pathlib
from typing import Any, Mapping

from absl import app

from keras_cnas.cli.common import load_spec
from keras_cnas.costs import Constraints, estimate
from keras_cnas.spaces import BlockSetSpace, DescriptorSpace, Space, reference

SPACE_NAMES = ("descriptor", "blockset")
#: Hard bounds settable from the command line (flag max_<cost>).
BOUND_COSTS = ("params", "madds", "flops", "memory_bytes", "peak_activation_bytes", "train_seconds")


def make_space(name: str, input_shape: tuple[int, int, int], num_classes: int,
               flags: Mapping[str, Any]) -> Space:
    """The search space ``name`` for this data, with the bounds given as flags."""
    if name == "descriptor":
        bounds = {k: flags[k] for k in ("max_conv_layers", "max_filters", "max_fc_layers",
                                        "max_hidden") if flags.get(k) is not None}
        return DescriptorSpace(input_shape, num_classes, **bounds)
    if name == "blockset":
        return reference.mobilenet_v2_space(input_shape, num_classes,
                                            alpha=flags.get("width_multiplier") or 1.0)
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
    if name == "evolution":
        return {"num_trials": flags.get("max_trials") or 100,
                "population_size": flags["population_size"],
                "sample_size": min(flags["sample_size"], flags["population_size"])}
    return {}


def evaluator_kwargs(flags: Mapping[str, Any]) -> dict[str, Any]:
    return {"traction_epochs": flags["traction_epochs"], "full_epochs": flags["full_epochs"],
            "patience": flags["patience"], "batch_size": flags["batch_size"],
            "learning_rate": flags["learning_rate"], "beta": flags["beta"],
            "regularizer": flags["regularizer"], "time_limit_seconds": flags.get("trial_time_limit")}
