"""The library behind ``tools/compress.py``: baselines, targets, methods and the outputs."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import shutil
import time
from typing import Any, Mapping

from absl import app

#: --baseline names: He et al.'s CIFAR ResNets (``resnet<6n + 2>``).
RESNET = re.compile(r"^resnet(\d+)$")
TARGET_FLAGS = {"flops_fraction": "flops", "madds_fraction": "madds",
                "params_fraction": "params", "memory_fraction": "memory_bytes"}
#: --flops_fraction when no fraction is given: the survey's one third.
DEFAULT_FLOPS_FRACTION = 0.33


def make_target(flags: Mapping[str, Any]) -> Any:
    """``--<cost>_fraction`` flags as a :class:`~keras_cnas.compression.Target` (a third of
    the FLOPs when none is given)."""
    from keras_cnas.compression.target import Target

    fractions = {cost: flags[name] for name, cost in TARGET_FLAGS.items()
                 if flags.get(name) is not None}
    if not fractions:
        fractions = {"flops": DEFAULT_FLOPS_FRACTION}
    try:
        return Target(**fractions)
    except ValueError as e:
        raise app.UsageError(f"--*_fraction: {e}") from None


#: What tools/compress.py writes in --out_dir; --overwrite removes these and nothing else.
OUTPUTS = ("model.keras", "baseline", "summary.json", "flags.json", "model.tflite", "labels.txt",
           "export.json", "model_data.h", "model_data.cc")


def prepare_out_dir(path: str, overwrite: bool) -> pathlib.Path:
    """``--out_dir``, created if needed. A directory holding earlier outputs is refused
    unless ``--overwrite``, which removes those outputs only (never a user's other files)."""
    if not path.strip():
        raise app.UsageError("--out_dir: got an empty path; pass a directory for the results, "
                             "e.g. runs/c")
    out = pathlib.Path(path)
    if out.exists() and not out.is_dir():
        raise app.UsageError(f"--out_dir: {out} is a file; pass a directory")
    earlier = [name for name in OUTPUTS if (out / name).exists()]
    if earlier and not overwrite:
        raise app.UsageError(f"--out_dir: {out} already holds {', '.join(earlier)}; pass "
                             "--overwrite to replace them, or another directory")
    for name in earlier:
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def check_baseline(name: str) -> None:
    """Refuses a bad ``--baseline`` before anything slow: ``resnet<d>`` with a depth that is
    not 6n + 2, or a path that holds no saved model."""
    match = RESNET.match(name)
    if match:
        from keras_cnas.spaces import reference  # pure Python

        try:
            reference.resnet_cifar(int(match.group(1)))
        except ValueError as e:
            raise app.UsageError(f"--baseline={name}: {e}") from None
        return
    path = pathlib.Path(name)
    if not ((path / "model.keras").is_file() or (path.is_file() and path.suffix == ".keras")):
        raise app.UsageError(f"--baseline={name}: not resnet<depth> (resnet20, resnet32, resnet56, "
                             "...) and not a .keras file or a directory holding model.keras")
    from keras_cnas.export.model_file import ModelFileError, check_model_file  # no TF

    try:  # before anything loads: a file that would run code is refused here
        check_model_file(path / "model.keras" if path.is_dir() else path)
    except ModelFileError as e:
        raise app.UsageError(f"--baseline={name}: {e}") from None


def load_baseline(name: str, data: Any, flags: Mapping[str, Any],
                  out_dir: pathlib.Path) -> tuple[Any, dict[str, Any]]:
    """``--baseline``: ``resnet<depth>`` is built for the data and trained for
    ``--baseline_epochs`` (saved in ``out_dir/baseline``); anything else is a saved model
    (a ``.keras`` file or a directory holding ``model.keras``), used as it is."""
    from keras_cnas.compression.training import TrainingConfig, fit

    match = RESNET.match(name)
    if match:
        from keras_cnas.builders import build_model
        from keras_cnas.spaces import reference

        try:
            spec = reference.resnet_cifar(int(match.group(1)), data.input_shape,
                                          data.num_classes, width=flags["width"])
        except ValueError as e:
            raise app.UsageError(f"--baseline={name}: {e}") from None
        model = build_model(spec)
        config = TrainingConfig(epochs=flags["baseline_epochs"], batch_size=flags["batch_size"],
                                learning_rate=flags["baseline_learning_rate"],
                                steps_per_epoch=flags.get("steps_per_epoch"))
        _, seconds = fit(model, data, config, seed=flags["seed"])
        saved = out_dir / "baseline"
        saved.mkdir(parents=True, exist_ok=True)
        model.save(saved / "model.keras")
        (saved / "spec.json").write_text(spec.to_json(indent=2) + "\n")
        return model, {"baseline": name, "spec": spec.to_dict(), "train_seconds": seconds,
                       "epochs": config.epochs, "saved": str(saved / "model.keras")}
    from keras_cnas.export import load_saved_model

    try:
        model = load_saved_model(name)
    except FileNotFoundError as e:
        raise app.UsageError(f"--baseline={name}: not resnet<depth> (resnet20, resnet32, "
                             f"resnet56, ...) and {e}") from None
    if tuple(model.input_shape[1:]) != tuple(data.input_shape):
        raise app.UsageError(f"--baseline={name}: the model takes inputs of shape "
                             f"{tuple(model.input_shape[1:])} but --dataset has images of shape "
                             f"{data.input_shape}")
    return model, {"baseline": name, "loaded": str(name)}


def make_method(name: str, flags: Mapping[str, Any]) -> Any:
    """The method ``name`` with the training flags (the method's defaults where unset)."""
    from keras_cnas.compression import METHODS, TrainingConfig

    cls = METHODS.get(name)
    default = cls.DEFAULT_TRAINING
    training = dataclasses.replace(
        default, batch_size=flags["batch_size"],
        epochs=flags["epochs"] if flags.get("epochs") is not None else default.epochs,
        learning_rate=(flags["learning_rate"] if flags.get("learning_rate") is not None
                       else default.learning_rate),
        steps_per_epoch=flags.get("steps_per_epoch"))
    finetune = TrainingConfig(epochs=flags["finetune_epochs"], batch_size=flags["batch_size"],
                              learning_rate=flags["finetune_learning_rate"],
                              steps_per_epoch=flags.get("steps_per_epoch"))
    extra: dict[str, Any] = {}
    if flags.get("strength") is not None:
        if name == "synthesis":
            raise app.UsageError("--strength: iterative synthesis has no strength; it steps "
                                 "toward the target with --steps")
        extra["strength"] = flags["strength"]
    if name == "synthesis":
        extra["steps"] = flags["steps"]
        extra["tolerance"] = flags.get("tolerance")
    elif flags.get("tolerance") is not None:
        raise app.UsageError("--tolerance: only --method=synthesis checks an accuracy tolerance")
    if flags.get("min_width") is not None:
        if name != "morphnet":
            raise app.UsageError(f"--min_width: only --method=morphnet keeps a width floor, "
                                 f"got --method={name}")
        extra["min_width"] = flags["min_width"]
    try:
        return cls(training, finetune, **extra)
    except ValueError as e:
        raise app.UsageError(f"--method={name}: {e}") from None


def parse_m_by_n(values: Any) -> tuple[int, int] | None:
    if not values:
        return None
    try:
        m, n = (int(v) for v in values)
    except ValueError:
        raise app.UsageError(f"--sparsity_m_by_n: expected two integers m,n such as 2,4, got "
                             f"{','.join(values)}") from None
    if not 0 < m < n:
        raise app.UsageError(f"--sparsity_m_by_n: expected 0 < m < n (e.g. 2,4), got {m},{n}")
    return m, n


def optimize(model: Any, data: Any, flags: Mapping[str, Any],
             m_by_n: tuple[int, int] | None) -> tuple[Any, Any, dict[str, Any]]:
    """The tfmot stage: optional m:n pruning (stripped), optional QAT. Returns the float
    model to save, the model to export and a report."""
    from keras_cnas.compression import TrainingConfig, prune_m_by_n, quantization_aware
    from keras_cnas.compression.training import accuracy

    report: dict[str, Any] = {}
    to_export = model
    if m_by_n is not None:
        started = time.perf_counter()
        model = prune_m_by_n(model, data, TrainingConfig(
            epochs=flags["prune_epochs"], batch_size=flags["batch_size"],
            learning_rate=flags["finetune_learning_rate"],
            steps_per_epoch=flags.get("steps_per_epoch")), m_by_n, seed=flags["seed"])
        to_export = model
        report["m_by_n"] = {"m_by_n": list(m_by_n), "epochs": flags["prune_epochs"],
                            "seconds": time.perf_counter() - started,
                            "accuracy": accuracy(model, data)}
    if flags.get("qat_epochs"):
        started = time.perf_counter()
        to_export = quantization_aware(model, data, TrainingConfig(
            epochs=flags["qat_epochs"], batch_size=flags["batch_size"], learning_rate=1e-4,
            steps_per_epoch=flags.get("steps_per_epoch")),
            preserve_sparsity=m_by_n is not None, seed=flags["seed"])
        report["qat"] = {"epochs": flags["qat_epochs"], "seconds": time.perf_counter() - started,
                         "accuracy": accuracy(to_export, data)}
    return model, to_export, report


def write_json(path: pathlib.Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, float):
        return None
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def result_table(result: Any) -> str:
    """Baseline vs compressed: MFLOPs, MMAdds, params, top-1."""
    rows = [("baseline", result.baseline_costs, result.baseline_accuracy),
            (result.method, result.costs, result.accuracy)]
    lines = [f"{'model':<12} {'MFLOPs':>9} {'MMAdds':>9} {'params':>10} {'top-1':>7}"]
    for name, costs, acc in rows:
        top1 = "-" if acc is None else f"{acc:.4f}"
        lines.append(f"{name:<12} {costs.flops / 1e6:>9.3f} {costs.madds / 1e6:>9.3f} "
                     f"{costs.params:>10,} {top1:>7}")
    return "\n".join(lines)
