"""Full export of a trained model: ``.tflite`` (+ C array), labels, measured costs, and the
hard-bound re-check of the final artifact.

The search checks measured bounds on each trial's own conversion; the finalized model is
retrained, so its artifact is measured again here and an export that breaks a bound fails
loudly, before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pathlib
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from keras_cnas.costs import Constraints
from keras_cnas.costs.constraints import Violation
from keras_cnas.costs.measured import MEASURED_COSTS
from keras_cnas.costs.micro_support import MICRO_UNSUPPORTED, micro_runs
from keras_cnas.costs.quantization import QUANTIZATIONS
from keras_cnas.data import Dataset
from keras_cnas.errors import KerasCnasError
from keras_cnas.export.convert import to_tflite
from keras_cnas.export.latency import measure_latency
from keras_cnas.export.options import ExportOptions, ExportReport
from keras_cnas.export.verify import verify

if TYPE_CHECKING:
    from keras_cnas._keras import keras

__all__ = ["DEFAULT_MAX_INT8_DROP", "MEASURED_COSTS", "ExportConstraintError", "ExportOptions",
           "ExportReport", "export_model",
           "load_saved_model", "measure_costs"]

logger = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
TFLITE_FILE = "model.tflite"
LABELS_FILE = "labels.txt"
C_ARRAY_NAME = "model_data"
REPORT_FILE = "export.json"
#: Accuracy points an int8 export may lose against Keras before QAT fine-tuning is tried.
DEFAULT_MAX_INT8_DROP = 0.5


class ExportConstraintError(KerasCnasError, RuntimeError):
    """The exported artifact breaks a hard bound; nothing was written.

    Attributes:
        violations: the broken bounds (cost, bound, measured value).
        report: everything measured, as :func:`export_model`'s report would have held it
            (``ExportReport.to_dict()`` keys).
    """

    def __init__(self, message: str, violations: Sequence[Violation], report: dict[str, Any]):
        super().__init__(message)
        self.violations = list(violations)
        self.report = report


def load_saved_model(path: str | os.PathLike[str]) -> "keras.Model":
    """The ``tf_keras`` model in ``path``: a ``.keras`` file or a directory holding
    ``model.keras`` (e.g. a search's best/). Only the Keras v3 format, in safe mode:
    legacy HDF5 files and Lambda layers, which run code on load, are refused
    (:mod:`keras_cnas.export.model_file`). tfmot pruning or QAT wrappers load too.

    Raises:
        FileNotFoundError: no such file, or the directory has no ``model.keras``.
        ModelFileError: the file could run code when loaded, or is not a v3 archive.
    """
    from keras_cnas.export.model_file import load_model_file

    p = pathlib.Path(path)
    file = p / MODEL_FILE if p.is_dir() else p
    if not file.is_file():
        raise FileNotFoundError(
            f"model: {p} is not a .keras file or a directory holding {MODEL_FILE}; pass a "
            "search's best/ directory (written by finalize) or a saved .keras file")
    return load_model_file(file)


def measure_costs(tflite_bytes: bytes, costs: Sequence[str] = MEASURED_COSTS, *,
                  num_threads: int = 1, latency_runs: int = 50,
                  latency_warmup: int = 5) -> dict[str, float]:
    """The named :data:`MEASURED_COSTS` of an artifact.

    ``arena_bytes`` runs the model in TFLite Micro (a subprocess) and needs a float32 or
    full-integer model (Micro cannot run dynamic-range or float16 ones); ``latency_ms`` is the median
    with XNNPACK on, ``num_threads`` threads.

    Example:
        >>> from keras_cnas._keras import keras
        >>> from keras_cnas.export import to_tflite
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        >>> flatbuffer = to_tflite(model)
        >>> measure_costs(flatbuffer, ["tflite_bytes"]) == {"tflite_bytes": len(flatbuffer)}
        True
    """
    unknown = [c for c in costs if c not in MEASURED_COSTS]
    if unknown or isinstance(costs, str):
        raise ValueError(f"costs: unknown measured cost(s) {unknown or costs!r}; known: "
                         f"{', '.join(MEASURED_COSTS)}")
    measured: dict[str, float] = {}
    if "tflite_bytes" in costs:
        measured["tflite_bytes"] = len(tflite_bytes)
    if "arena_bytes" in costs:
        from keras_cnas.export.micro import check_micro_compatible, micro_arena_bytes

        check_micro_compatible(tflite_bytes)
        measured["arena_bytes"] = int(micro_arena_bytes(tflite_bytes))
    if "latency_ms" in costs:
        measured["latency_ms"] = measure_latency(tflite_bytes, num_threads, True, latency_runs,
                                                 latency_warmup).median_ms
    return measured


def export_model(model: "keras.Model | str | os.PathLike[str]", out_dir: str | os.PathLike[str],
                 options: ExportOptions | str = "int8",
                 data: Dataset | tuple[np.ndarray, np.ndarray] | None = None, *,
                 constraints: Constraints | None = None,
                 class_names: Sequence[str] | None = None,
                 representative_data: Dataset | np.ndarray | None = None,
                 **fields: Any) -> ExportReport:
    """Converts, verifies and measures a model, re-checks the hard bounds, then writes it.

    Files in ``out_dir`` (created if needed): ``model.tflite``; ``labels.txt`` (one class
    name per line, as Android's TFLite task libraries read it) when class names are known;
    ``model_data.h`` / ``model_data.cc`` (the flatbuffer as a C array for TFLite Micro, with
    ``kTensorArenaSize`` = the measured arena + headroom and the input / output scale and
    zero point) and ``model_data_ops.h`` (a ``tflite::MicroMutableOpResolver<N>`` with
    exactly the model's operators) with ``micro=True``; ``export.json`` (the returned report).

    Int8 accuracy: with ``max_int8_drop`` (accuracy points), an int8 export of a Dataset
    compares the artifact with Keras on the validation split (the test split if there is
    none); above the tolerance the model is fine-tuned with quantization-aware training for
    ``qat_epochs``, converted and checked again, and the better artifact is kept. The report's
    ``int8_check`` says what happened.

    Args:
        model: a ``tf_keras`` model, a ``.keras`` file, or a directory holding
            ``model.keras`` (a search's ``best/``; its ``spec.json``, if present, adds the
            analytic costs to the re-check).
        out_dir: where to write; may be the model's own directory.
        options: an :class:`~keras_cnas.export.options.ExportOptions` (quantization, micro,
            int8 I/O, QAT, the int8 check, headroom, threads, latency runs, seed), or the
            quantization alone (``"int8"``), completed by ``fields``.
        data: a :class:`~keras_cnas.data.Dataset` (training split calibrates int8 and QAT,
            test split verifies) or ``(x, y)`` (both calibrates and verifies). None: no
            verification, and ``"int8"`` then needs ``representative_data``.
        constraints: hard bounds to re-check on the artifact (``max_tflite_bytes``,
            ``max_arena_bytes``, ``max_latency_ms`` and, with a ``spec.json``, analytic
            ones such as ``max_params``).
        class_names: one name per class; default: ``data.class_names`` of a Dataset.
        representative_data: calibration inputs, if not ``data``.
        **fields: :class:`ExportOptions` fields by name (``micro=True``, ``latency_runs=5``)
            when ``options`` is a quantization string.

    Returns:
        An :class:`~keras_cnas.export.options.ExportReport`: ``tflite_bytes``,
        ``arena_bytes`` (None unless measured: with ``micro``, ``"int8"`` or an arena
        bound), ``arena_bytes_estimate``, ``latency_ms``, the verification, ``costs`` (what
        was re-checked), ``files``, the settings, ``sha256`` (of the bytes that were
        measured, checked and written: ``model.tflite`` and the C array hold exactly these)
        and, for a search's saved model (a ``spec.json`` beside it), ``priced``: the spec's
        ``arena_bytes`` / ``tflite_bytes`` the search checked before training, with
        ``priced_error`` (measured - priced) if they differ; ``export.json`` holds its
        ``to_dict()``.

    Raises:
        ExportConstraintError: the artifact breaks a bound (names the bound and the
            measured figure); nothing is written.
        MicroError: ``micro=True`` (or an arena bound) for a model TFLite Micro cannot run
            (dynamic-range, float16).
        ValueError: bad arguments (see :func:`~keras_cnas.export.to_tflite`).
        FileNotFoundError: ``model`` names no saved model.

    Example:
        >>> import tempfile, keras_cnas as cnas
        >>> from keras_cnas._keras import keras
        >>> data = cnas.data.load("digits")
        >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(10, activation="softmax")])
        >>> report = export_model(model, tempfile.mkdtemp(), ExportOptions("float16", latency_runs=5),
        ...                       data)
        >>> sorted(report.files), report.num_examples
        (['labels', 'tflite'], 359)
    """
    if isinstance(options, str):
        options = ExportOptions(options, **fields)
    elif not isinstance(options, ExportOptions):
        raise ValueError(f"options: expected an ExportOptions or a quantization such as 'int8', "
                         f"got {options!r:.80}")
    elif fields:
        raise ValueError(f"{', '.join(fields)}: set in options=ExportOptions(...) or as keywords "
                         "with a quantization string, not both")
    quantize, micro, int8_io, qat = options.quantize, options.micro, options.int8_io, options.qat
    qat_epochs, max_int8_drop, seed = options.qat_epochs, options.max_int8_drop, options.seed
    arena_headroom_bytes, num_threads = options.arena_headroom_bytes, options.num_threads
    latency_runs, latency_warmup = options.latency_runs, options.latency_warmup
    if constraints is None:
        constraints = Constraints()
    elif not isinstance(constraints, Constraints):
        raise ValueError(f"constraints: expected a keras_cnas.Constraints, got "
                         f"{type(constraints).__name__}")
    want_arena = micro or quantize == "int8" or "arena_bytes" in constraints.bounds
    if want_arena and not micro_runs(quantize):
        from keras_cnas.export.micro import MicroError

        why = "micro=True" if micro else "the max_arena_bytes bound"
        raise MicroError(
            f"quantize={quantize!r} with {why}: TensorFlow Lite Micro cannot run "
            f"{MICRO_UNSUPPORTED[quantize]} models, so there is no arena to measure or C array "
            "to ship; use quantize='int8' (full-integer, the usual microcontroller choice) or "
            "'none' (float32)")
    out = pathlib.Path(out_dir)
    spec_costs: dict[str, float] = {}
    spec_path: pathlib.Path | None = None
    if not hasattr(model, "predict"):
        spec_path = pathlib.Path(model)
        spec_costs = _spec_costs(spec_path)
        model = load_saved_model(model)
    _check_finite(model)
    if class_names is None and isinstance(data, Dataset):
        class_names = data.class_names
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if len(class_names) != model.output_shape[-1]:
            raise ValueError(f"class_names: {len(class_names)} names for a model with "
                             f"{model.output_shape[-1]} outputs")

    from keras_cnas.export.convert import strip_wrappers

    model = strip_wrappers(model)
    calibration = representative_data if representative_data is not None else data
    tflite = to_tflite(model, quantize, calibration, int8_io, qat=qat, qat_epochs=qat_epochs,
                       seed=seed)
    int8_check = None
    if quantize == "int8" and max_int8_drop is not None and isinstance(data, Dataset):
        tflite, int8_check = _protect_int8(tflite, model, data, calibration, int8_io, qat,
                                           qat_epochs, float(max_int8_drop), num_threads, seed)
    report: dict[str, Any] = {"quantize": quantize, "int8_io": int8_io,
                              "qat": qat or bool(int8_check and int8_check["qat_kept"]),
                              "micro": micro, "tflite_bytes": len(tflite), "arena_bytes": None,
                              "arena_bytes_estimate": None, "int8_check": int8_check}
    from keras_cnas.export.c_array import io_tensors

    report["input"], report["output"] = (t.to_dict() for t in io_tensors(tflite))
    if want_arena:
        from keras_cnas.export.micro import check_micro_compatible, micro_arena_bytes

        check_micro_compatible(tflite)
        report["arena_bytes"] = int(micro_arena_bytes(tflite))
        report["arena_bytes_estimate"] = _arena_estimate(tflite)
    latency = {mode: measure_latency(tflite, num_threads, mode == "xnnpack", latency_runs,
                                     latency_warmup, seed=seed) for mode in ("xnnpack", "builtin")}
    report["latency_ms"] = {mode: r.median_ms for mode, r in latency.items()}
    report["latency"] = {mode: r.to_dict() for mode, r in latency.items()}
    checked = verify(tflite, data, model, num_threads=num_threads) if data is not None else None
    for key in ("keras_accuracy", "tflite_accuracy", "agreement", "max_abs_diff", "num_examples"):
        report[key] = getattr(checked, key) if checked is not None else None

    # What the search checked is what ships: these bytes are measured, re-checked against
    # the bounds and written unchanged (their hash says so); their arena and size equal
    # the spec's priced costs, which the search checked before training.
    report["sha256"] = hashlib.sha256(tflite).hexdigest()
    report["priced"] = _priced_costs(spec_path, quantize, int8_io) if spec_path else None
    _compare_with_priced(report)
    costs = {**spec_costs, "tflite_bytes": report["tflite_bytes"],
             "latency_ms": report["latency_ms"]["xnnpack"]}
    if report["arena_bytes"] is not None:
        costs["arena_bytes"] = report["arena_bytes"]
    report["costs"] = costs
    report["constraints"] = constraints.to_dict()
    violations = constraints.violations(costs)
    if violations:
        raise ExportConstraintError(
            f"export: the {quantize} artifact breaks the hard constraints: "
            f"{'; '.join(map(str, violations))} (latency_ms: median with XNNPACK, "
            f"{num_threads} thread(s)); nothing was written to {out}. Relax the bound, try "
            "another quantize (int8 is the smallest), or search with the bound so that every "
            "trial is measured", violations, report)

    out.mkdir(parents=True, exist_ok=True)
    files = {"tflite": out / TFLITE_FILE}
    files["tflite"].write_bytes(tflite)
    if class_names is not None:
        files["labels"] = out / LABELS_FILE
        files["labels"].write_text("".join(f"{name}\n" for name in class_names))
    if micro:
        from keras_cnas.export.c_array import op_resolver_header, tensor_arena_size, to_c_array

        header, source = to_c_array(tflite, name=C_ARRAY_NAME, arena_bytes=report["arena_bytes"],
                                    arena_headroom_bytes=arena_headroom_bytes)
        report["tensor_arena_size"] = tensor_arena_size(report["arena_bytes"], arena_headroom_bytes)
        bound = constraints.bounds.get("arena_bytes")
        if bound is not None and report["tensor_arena_size"] > bound:
            # The measurement meets the bound, the headroom on top of it does not.
            logger.warning("export: kTensorArenaSize %d (arena %d + headroom) exceeds "
                           "max_arena_bytes %d; lower the headroom (arena_headroom_bytes) or "
                           "check arena_used_bytes() on the target", report["tensor_arena_size"],
                           report["arena_bytes"], bound)
        files["c_header"] = out / f"{C_ARRAY_NAME}.h"
        files["c_source"] = out / f"{C_ARRAY_NAME}.cc"
        files["op_resolver"] = out / f"{C_ARRAY_NAME}_ops.h"
        files["c_header"].write_text(header)
        files["c_source"].write_text(source)
        files["op_resolver"].write_text(op_resolver_header(tflite, name=C_ARRAY_NAME))
    report["files"] = {kind: str(path) for kind, path in files.items()}
    report["out_dir"] = str(out)
    (out / REPORT_FILE).write_text(json.dumps(json_safe(report), indent=2, sort_keys=True) + "\n")
    return ExportReport.from_dict(report)


# --- helpers ------------------------------------------------------------------------------


def _protect_int8(tflite: bytes, model: Any, data: Dataset, calibration: Any, int8_io: bool,
                  qat: bool, qat_epochs: int, max_drop: float, num_threads: int,
                  seed: int) -> tuple[bytes, dict[str, Any]]:
    """The int8 artifact whose accuracy drop against Keras is within ``max_drop`` points if
    QAT gets it there (else the better of the two), and what was checked."""
    has_val = len(data.x_val) > 0
    split = (data.x_val, data.y_val) if has_val else (data.x_test, data.y_test)
    check: dict[str, Any] = {"split": "validation" if has_val else "test",
                             "max_drop_points": max_drop, "qat_tried": False, "qat_kept": qat}

    def drop(flatbuffer: bytes) -> tuple[float, float, float]:
        r = verify(flatbuffer, split, model, num_threads=num_threads)
        return 100.0 * (r.keras_accuracy - r.tflite_accuracy), r.keras_accuracy, r.tflite_accuracy

    points, keras_acc, int8_acc = drop(tflite)
    check.update(keras_accuracy=keras_acc, int8_accuracy=int8_acc, drop_points=points)
    if points > max_drop and not qat:
        logger.info("export: int8 loses %.2f points (> %.2f); fine-tuning with QAT", points,
                    max_drop)
        check.update(qat_tried=True, qat_epochs=qat_epochs, ptq_drop_points=points)
        try:
            qat_tflite = to_tflite(model, "int8", calibration, int8_io, qat=True, qat_data=data,
                                   qat_epochs=qat_epochs, seed=seed)
        except ValueError as e:  # tfmot cannot wrap every model (e.g. ENAS cells' BN)
            logger.warning("export: QAT is not possible for this model (%s); keeping the "
                           "post-training int8 artifact", e)
            check["qat_error"] = str(e)
        else:
            qat_points, _, qat_acc = drop(qat_tflite)
            check.update(qat_drop_points=qat_points, qat_int8_accuracy=qat_acc)
            if qat_points < points:
                tflite, points, int8_acc = qat_tflite, qat_points, qat_acc
                check.update(qat_kept=True, int8_accuracy=qat_acc, drop_points=qat_points)
    check["within"] = points <= max_drop
    if qat:
        how = "with the requested QAT"
    elif check["qat_kept"]:
        how = f"after QAT ({check['ptq_drop_points']:+.2f} without)"
    else:
        how = "post-training" + (" (QAT not possible)" if "qat_error" in check else
                                 " (QAT did not help)" if check["qat_tried"] else "")
    check["summary"] = (f"int8 drop {points:.2f} points on the {check['split']} split {how}, "
                        f"{'within' if check['within'] else 'ABOVE'} the tolerance of "
                        f"{max_drop:g} (max_int8_drop)")
    if not check["within"]:
        logger.warning("export: %s", check["summary"])
    return tflite, check


def _check_finite(model: "keras.Model") -> None:
    """Refuses a diverged model: its artifact would convert, but predict nothing."""
    bad = sum(int(np.size(w) - np.isfinite(w).sum()) for w in model.get_weights())
    if bad:
        raise ValueError(f"model: {bad:,} of its weights are NaN or infinite (the training "
                         "diverged); retrain it (e.g. with a lower learning rate) before "
                         "exporting")


def _spec_costs(path: pathlib.Path) -> dict[str, float]:
    """Analytic costs of the ``spec.json`` beside a saved model, if there is one."""
    spec_file = (path if path.is_dir() else path.parent) / "spec.json"
    if not spec_file.is_file():
        return {}
    from keras_cnas.costs import estimate
    from keras_cnas.spaces import spec_from_json

    try:
        report = estimate(spec_from_json(spec_file.read_text()))
    except (ValueError, KeyError, TypeError) as e:  # an old or foreign spec: skip, say so.
        logger.warning("export: %s: cannot estimate analytic costs (%s); re-checking measured "
                       "costs only", spec_file, e)
        return {}
    return {k: v for k, v in report.as_dict().items() if v is not None}


def _priced_costs(path: pathlib.Path, quantize: str, int8_io: bool) -> dict[str, int] | None:
    """``arena_bytes`` / ``tflite_bytes`` priced from the ``spec.json`` beside a saved model
    for this export (what the search checked before training), or None."""
    spec_file = (path if path.is_dir() else path.parent) / "spec.json"
    if quantize not in ("int8", "none") or not spec_file.is_file():
        return None
    from keras_cnas.costs import ExportTarget, deployment_costs
    from keras_cnas.costs.deployment import has_deployment_costs
    from keras_cnas.spaces import spec_from_json

    try:
        spec = spec_from_json(spec_file.read_text())
    except (ValueError, KeyError, TypeError):
        return None  # _spec_costs has said why
    if not has_deployment_costs(spec):
        return None
    return deployment_costs(spec, ExportTarget(quantize, int8_io=int8_io and quantize == "int8"))


def _compare_with_priced(report: dict[str, Any]) -> None:
    """Records (and logs) where the artifact's measured arena or size differs from the
    spec's priced one: ``report["priced_error"]`` (measured - priced), absent when equal."""
    priced = report.get("priced")
    if not priced:
        return
    errors = {name: report[name] - value for name, value in priced.items()
              if report.get(name) is not None and report[name] != value}
    if errors:
        report["priced_error"] = errors
        logger.warning("export: the artifact's measured costs differ from the spec's priced ones "
                       "(measured - priced: %s); the deployment cost model needs a fix", errors)


def _arena_estimate(tflite: bytes) -> int | None:
    """The offline arena estimate, or None (logged) if it cannot replay this graph."""
    from keras_cnas.export.arena import estimate_arena_bytes

    try:
        return int(estimate_arena_bytes(tflite))
    except (ValueError, NotImplementedError, KeyError) as e:
        logger.warning("export: offline arena estimate failed: %s", e)
        return None


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (in nested dicts) as None, as JSON allows."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    return value
