"""``KerasEvaluator``: builds a candidate, trains it with ``model.fit`` and scores it.

The score is the MIT-LL objective (§3.1) ``J = validation loss + beta * R(A)``, minimised,
where ``R`` measures the architecture's size (:data:`REGULARIZERS`). A candidate at
``"traction"`` fidelity trains for a few epochs (or steps) and reports that early score
(§3.4); at ``"full"`` fidelity it trains until the validation loss stops improving
(``EarlyStopping``, best weights restored) or ``full_epochs`` is reached.

A trial that cannot be built, diverges (NaN loss), runs out of time or raises in training is
returned as FAILED with the reason; ``evaluate`` never raises for a bad architecture.

This module imports TensorFlow only when it trains, so that ``import keras_cnas.training``
registers the ``"keras"`` evaluator (for rebuilding it in a worker from JSON) without
loading TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pathlib
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from keras_cnas._imports import import_object, module_root_of, object_path
from keras_cnas.data import Dataset
from keras_cnas.data.cache import (DataSource, cache_file_name, fingerprint, remember,
                                   save_npz)
from keras_cnas.errors import DataError
from keras_cnas.registry import Registry
from keras_cnas.spaces.base import Spec
from keras_cnas.training.base import EVALUATORS, Evaluator
from keras_cnas.training.objective import J, Objective
from keras_cnas.optimizer import OptimizerRecipe
from keras_cnas.training.settings import EXPORT_QUANTIZATIONS, MEASURABLE_COSTS, Fidelity, Measurement
from keras_cnas.trial import Candidate, EvaluationResult, TrialStatus

if TYPE_CHECKING:
    from keras_cnas._keras import keras

__all__ = ["EXPORT_QUANTIZATIONS", "MEASURABLE_COSTS", "KerasEvaluator", "REGULARIZERS"]

logger = logging.getLogger(__name__)

#: R(A) of the objective J = val_loss + beta * R(A), by name: (spec, built model) -> R.
REGULARIZERS: Registry[Callable[[Spec, "keras.Model"], float]] = Registry("regularizer")


@REGULARIZERS.register("params_k")
def params_k(spec: Spec, model: "keras.Model") -> float:
    """Parameters in thousands: beta = 5e-5 adds 0.13 for a 2.6 M-parameter model."""
    return model.count_params() / 1e3


@REGULARIZERS.register("madds_m")
def madds_m(spec: Spec, model: "keras.Model") -> float:
    """Multiply-accumulates of one inference, in millions (the analytic estimate)."""
    from keras_cnas.costs import estimate

    madds = estimate(spec).madds
    if madds is None:
        raise ValueError(f"regularizer 'madds_m': no MAdds estimate for {type(spec).__name__}; "
                         "use regularizer='params_k'")
    return madds / 1e6


@REGULARIZERS.register("none")
def no_regularizer(spec: Spec, model: "keras.Model") -> float:
    """R = 0: the objective is the validation loss alone."""
    return 0.0


# The data entry of the config of an evaluator built on an in-memory dataset.
IN_MEMORY = "in_memory"
# How the config records a callback object that has no importable path.
IN_MEMORY_CALLBACK = "<in-memory callback "

# Longest error text kept in a trial record: TensorFlow errors can run to pages.
MAX_ERROR_CHARS = 1000

#: The flat keyword names of the typed pieces' fields: ``KerasEvaluator``'s shorthand and
#: its JSON config (which stays flat, so that searches stored before the pieces resume).
RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(OptimizerRecipe))
FIDELITY_FIELDS = tuple(f.name for f in dataclasses.fields(Fidelity))
MEASUREMENT_FIELDS = ("measure", "export_quantize", "export_int8_io", "latency_runs")


def _positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive integer{' or None' if allow_none else ''}"
                         f", got {value!r}")


def _number(name: str, value: Any, *, positive: bool, example: str) -> None:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
          and (value > 0 if positive else value >= 0))
    if not ok:
        kind = "a positive" if positive else "a non-negative"
        raise ValueError(f"{name}: expected {kind} number such as {example}, got {value!r}")


def _error_text(prefix: str, error: BaseException) -> str:
    """One line: TensorFlow's errors carry the Python stack of the failing op ("File ..."
    lines), which would bury the message (e.g. "Received a label value of 12 ...")."""
    lines = [line.strip() for line in str(error).splitlines()
             if line.strip() and not line.lstrip().startswith("File ")]
    text = f"{prefix}: {type(error).__name__}: {' '.join(lines)}".strip()
    if len(text) > MAX_ERROR_CHARS:
        half = MAX_ERROR_CHARS // 2 - 3
        text = f"{text[:half]} ... {text[-half:]}"
    return text


@EVALUATORS.register("keras")
class KerasEvaluator(Evaluator):
    """Trains candidates with Keras and scores them by J = val_loss + beta * R(A) (minimised),
    the validation accuracy or any metric the model logs.

    Args:
        data: the data: a :class:`~keras_cnas.data.Dataset` in memory (kept for use in this
            process; call :meth:`portable` before handing the evaluator to workers), a
            :class:`~keras_cnas.data.cache.DataSource`, or its config dict (e.g.
            ``{"name": "digits"}``); or anything :func:`keras_cnas.data.as_dataset` reads:
            ``(x, y)`` arrays, a ``tf.data.Dataset`` (or ``(train, validation)`` ones), an
            image folder. A source is loaded lazily, once per process.
        recipe: the optimizer and its schedule (:class:`~keras_cnas.optimizer.OptimizerRecipe`;
            default Adam 5e-4, MIT-LL; ``RCAS_RECIPE``: SGD Nesterov, RCAS §4.1).
        fidelity: traction / full epochs and early-stopping patience
            (:class:`~keras_cnas.training.settings.Fidelity`; default 3 / 30 epochs, patience 5).
        measurement: costs measured on each trained candidate's TFLite artifact, and which
            artifact (:class:`~keras_cnas.training.settings.Measurement`, e.g.
            ``Measurement.for_device("nrf52840")``); default: measure nothing, price int8.
        batch_size: mini-batch size (MIT-LL: 128).
        augment: apply the dataset's training augmentation (flip / pad-and-crop / jitter).
        beta: weight of R(A) in J (MIT-LL: 5e-5).
        regularizer: R(A), which the paper leaves unit-free: ``"params_k"`` (parameters in
            thousands, the default: beta * R = 0.13 for 2.6 M parameters), ``"madds_m"``
            (multiply-accumulates in millions) or ``"none"`` (J = validation loss).
        time_limit_seconds: wall-clock budget of one training run; a run that exceeds it is
            FAILED with reason ``"time limit ..."`` (its partial score is not comparable with
            fully trained ones, so it is not ranked). None: no limit.
        save_models: when ``evaluate`` gets a ``workdir``, save each COMPLETED trial's model
            there (``model.keras``, ``spec.json``, ``metrics.json``), e.g. for an
            :class:`~keras_cnas.training.ensemble.Ensemble` of the best N.
        inherit_weights: save each COMPLETED trial's weights (``weights.npz`` in its trial
            directory) and start a candidate whose ``info`` names a ``"parent"`` trial from
            that trial's weights where the layers match (:mod:`keras_cnas.training.inherit`);
            its metrics then hold ``inherited_layers``, ``inherited_partial`` and the
            ``initial_val_loss`` before training. Off by default.
        objective: what the search optimises (:class:`~keras_cnas.training.objective.Objective`):
            ``"J"`` (MIT-LL, the default), ``"val_accuracy"``, ``"val_loss"``, or the name
            of any metric the model logs with ``direction``. A full-fidelity run keeps the
            epoch best by it (for J: the lowest val_loss).
        direction: ``"min"`` or ``"max"`` for a metric whose direction cannot be inferred.
        callbacks: the user's own Keras callbacks, added to every search trial's ``fit``
            (not to the final retraining, which has no validation split). Objects work in
            this process; for worker processes and Ray, name them by ``"module:attribute"``
            (a callback instance, a Callback class built without arguments, or a function
            returning a callback or a list of them).
        verbose: Keras verbosity.
        **fields: shorthand for the pieces' fields by flat name, e.g. ``full_epochs=3`` for
            ``fidelity=Fidelity(full_epochs=3)``: the recipe's (``learning_rate``,
            ``optimizer``, ...), the fidelity's (``traction_epochs``, ``traction_steps``,
            ``full_epochs``, ``patience``) and the measurement's as ``measure``,
            ``export_quantize``, ``export_int8_io``, ``latency_runs``. Not together with the
            piece they belong to.

    Metrics of a COMPLETED trial: ``objective``, ``val_loss``, ``val_accuracy``,
    ``train_loss``, ``train_accuracy`` (of the best epoch at full fidelity, the last one at
    traction), ``epochs`` (run), ``best_epoch`` (1-based; the epoch count :meth:`finalize`
    should retrain for), ``regularizer`` (R) and ``params``; costs: ``train_seconds`` and
    the ``measure``d ones. A candidate whose conversion or measurement fails is FAILED.

    Example:
        >>> import keras_cnas as cnas
        >>> from keras_cnas.trial import Candidate
        >>> evaluator = KerasEvaluator({"name": "digits"}, fidelity=Fidelity(traction_epochs=1))
        >>> spec = cnas.spaces.Descriptor((8, 8, 1), 10, [cnas.spaces.ConvLayer(8)])
        >>> result = evaluator.evaluate(Candidate(spec, "traction"), seed=1)
        >>> result.status.value, result.metrics["epochs"]
        ('COMPLETED', 1)
        >>> Evaluator.from_json_config(evaluator.to_json_config()).get_config() == \\
        ...     evaluator.get_config()
        True
    """

    name = "keras"
    objective = "objective"
    direction = "min"
    reported_costs = ("train_seconds",)

    def __init__(self, data: Dataset | DataSource | Mapping[str, Any], *,
                 recipe: OptimizerRecipe | None = None, fidelity: Fidelity | None = None,
                 measurement: Measurement | None = None, batch_size: int = 128,
                 augment: bool = True, beta: float = 5e-5, regularizer: str = "params_k",
                 time_limit_seconds: float | None = None, save_models: bool = False,
                 objective: Any = J, direction: str | None = None,
                 callbacks: Sequence[Any] = (), verbose: int = 0, inherit_weights: bool = False,
                 **fields: Any):
        if isinstance(data, Dataset):
            self._source: DataSource | None = None
            self._dataset: Dataset | None = data
        elif isinstance(data, DataSource):
            self._source, self._dataset = data, None
        elif isinstance(data, Mapping) and IN_MEMORY in data:
            raise ValueError(
                f"data: this config was made from an in-memory dataset ({data[IN_MEMORY]}), "
                "which a JSON config cannot carry; build the evaluator from "
                "evaluator.portable(cache_dir).get_config() instead (it writes the data to an "
                ".npz cache that the config names)")
        elif isinstance(data, Mapping):
            self._source, self._dataset = DataSource.from_config(data), None
        else:  # arrays, tf.data pipelines, an image folder (DataError if none of those)
            from keras_cnas.data import as_dataset

            self._source, self._dataset = None, as_dataset(data)
        self.recipe, self.fidelity, self.measurement = _pieces(recipe, fidelity, measurement,
                                                               fields)
        _positive_int("batch_size", batch_size)
        if not isinstance(augment, bool):
            raise ValueError(f"augment: expected True or False, got {augment!r}")
        _number("beta", beta, positive=False, example="5e-5")
        REGULARIZERS.get(regularizer)  # KeyError listing the known names.
        if time_limit_seconds is not None:
            _number("time_limit_seconds", time_limit_seconds, positive=True, example="600")
        if not isinstance(save_models, bool):
            raise ValueError(f"save_models: expected True or False, got {save_models!r}")
        self.goal = Objective.resolve(objective, direction)
        self.objective, self.direction = self.goal.metric, self.goal.direction
        self.callbacks = _checked_callbacks(callbacks)
        self.batch_size = batch_size
        self.augment = augment
        self.beta = float(beta)
        self.regularizer = regularizer
        self.time_limit_seconds = None if time_limit_seconds is None else float(time_limit_seconds)
        self.save_models = save_models
        if not isinstance(inherit_weights, bool):
            raise ValueError(f"inherit_weights: expected True or False, got {inherit_weights!r}")
        self.inherit_weights = inherit_weights
        # Instance attribute: the constraints may bound exactly the costs measured here.
        self.reported_costs = ("train_seconds", *self.measurement.costs)
        self.verbose = int(verbose)

    # --- data ----------------------------------------------------------------------------

    @property
    def is_portable(self) -> bool:
        """Whether :meth:`get_config` can carry the data to another process."""
        return self._source is not None

    @property
    def dataset(self) -> Dataset:
        """The data, loaded on first use (once per process for a source)."""
        if self._dataset is None:
            assert self._source is not None
            self._dataset = self._source.load()
        return self._dataset

    def portable(self, cache_dir: str | os.PathLike[str], *,
                 cache_registered: bool = True) -> "KerasEvaluator":
        """An equivalent evaluator whose config a worker process can rebuild.

        An in-memory dataset is written to ``cache_dir/<name>-<fingerprint>.npz`` (skipped if
        that file exists: a resumed search reuses it). A registered dataset is cached the
        same way unless ``cache_registered=False``, so that N workers read one ``.npz``
        instead of decoding the source N times (CIFAR-10's JPEGs).

        Example:
            >>> import tempfile, keras_cnas as cnas
            >>> evaluator = KerasEvaluator(cnas.data.load("digits"))
            >>> evaluator.is_portable
            False
            >>> evaluator.portable(tempfile.mkdtemp()).is_portable
            True
        """
        unnamed = [c for c in self.callbacks
                   if str(_callback_config(c)).startswith(IN_MEMORY_CALLBACK)]
        if unnamed:
            raise ValueError(
                f"callbacks: {type(unnamed[0]).__name__} is an object made in this process, which "
                "worker processes cannot rebuild; pass it as 'module:attribute' (a module-level "
                "callback, a Callback class or a function returning callbacks), or run in process")
        if self._source is not None and (self._source.npz_path is not None or not cache_registered):
            return KerasEvaluator(self._source, **self._hyperparameters())
        data = self.dataset
        path = pathlib.Path(cache_dir) / cache_file_name(data)
        if not path.is_file():
            save_npz(data, path)
        source = DataSource.npz(path)
        remember(source, data)  # this process already holds the data: do not read it back.
        evaluator = KerasEvaluator(source, **self._hyperparameters())
        evaluator._dataset = data
        return evaluator

    # --- configuration -------------------------------------------------------------------

    def _hyperparameters(self) -> dict[str, Any]:
        """Flat, in the layout stored searches recorded (their resume compares it)."""
        fidelity = self.fidelity
        return {**self.recipe.get_config(), "batch_size": self.batch_size,
                "augment": self.augment, "traction_epochs": fidelity.traction_epochs,
                "traction_steps": fidelity.traction_steps, "full_epochs": fidelity.full_epochs,
                "patience": fidelity.patience, "beta": self.beta, "regularizer": self.regularizer,
                "time_limit_seconds": self.time_limit_seconds, "save_models": self.save_models,
                **self.measurement.get_config(),
                "objective": self.goal.name, "direction": self.goal.direction,
                "callbacks": [_callback_config(c) for c in self.callbacks], "verbose": self.verbose,
                # Only when set: an older search's identity still compares equal on resume.
                **({"inherit_weights": True} if self.inherit_weights else {})}

    def get_config(self) -> dict[str, Any]:
        """JSON-compatible constructor arguments.

        For an in-memory dataset (see :attr:`is_portable`) the config records what the data
        was (``{"in_memory": "Dataset(name='digits', ...)"}``) so that it can still be
        logged, but rebuilding from it raises an error saying to use :meth:`portable`.
        """
        data = ({IN_MEMORY: repr(self._dataset)} if self._source is None
                else self._source.to_config())
        return {"data": data, **self._hyperparameters()}

    def identity(self) -> dict[str, Any]:
        """The training settings (not logging or saving) and the data's identity: its name,
        split sizes and a fingerprint of its contents (so a changed validation split,
        ``max_train_examples`` or file is a different search)."""
        data = self.dataset
        training = {k: v for k, v in self._hyperparameters().items()
                    if k not in ("verbose", "save_models")}
        return {"evaluator": self.name, "training": training,
                "data": {"name": data.name, "train": len(data.y_train),
                         "validation": len(data.y_val), "test": len(data.y_test),
                         "fingerprint": fingerprint(data)}}

    # --- evaluation ----------------------------------------------------------------------

    def evaluate(self, candidate: Candidate, *, seed: int = 0,
                 workdir: pathlib.Path | None = None) -> EvaluationResult:
        """Trains ``candidate`` at its fidelity and returns J and the training metrics.

        Raises:
            DataError: the data cannot be loaded or has no validation split: a problem of
                the search's set-up, not of this architecture, so it stops the search.
        """
        data = self.dataset
        if len(data.y_val) == 0:
            raise DataError(
                f"data: {data.name!r} has no validation split, but the objective is the "
                "validation loss; load it with validation_split > 0 (e.g. 0.1)")
        from keras_cnas._keras import keras  # lazy: see the module docstring.
        from keras_cnas.training.callbacks import NanGuard, TractionCallback, TrialTimeLimit

        spec = candidate.spec
        try:
            model = self._build(spec, data, seed)
        except Exception as e:  # noqa: BLE001  any failure to build is this trial's outcome.
            logger.info("trial %s failed to build: %s", spec.key(), e)
            return EvaluationResult(status=TrialStatus.FAILED, error=_error_text("build failed", e))
        inherited = self._inherit(model, data, candidate, workdir)

        guard = NanGuard()
        callbacks: list[keras.callbacks.Callback] = [guard]
        timer = None
        if self.time_limit_seconds is not None:
            timer = TrialTimeLimit(self.time_limit_seconds)
            callbacks.append(timer)
        early = None
        if candidate.fidelity == "traction":
            fidelity = self.fidelity
            callbacks.append(TractionCallback(fidelity.traction_epochs, fidelity.traction_steps))
            epochs = fidelity.traction_epochs or math.ceil(
                fidelity.traction_steps / math.ceil(len(data.y_train) / self.batch_size))
        else:
            early = keras.callbacks.EarlyStopping(monitor=self.goal.monitor, mode=self.goal.direction,
                                                  patience=self.fidelity.patience,
                                                  restore_best_weights=True)
            callbacks.append(early)
            epochs = self.fidelity.full_epochs
        try:
            callbacks.extend(_resolved_callbacks(self.callbacks))
        except Exception as e:  # noqa: BLE001  a set-up problem: stop the search with it.
            raise ValueError(f"callbacks: {e}") from None

        started = time.perf_counter()
        try:
            history = self._fit(model, data, "train", epochs, seed, callbacks, validate=True)
        except Exception as e:  # noqa: BLE001  OOM, shape errors...: fail the trial only.
            logger.info("trial %s failed in training: %s", spec.key(), e)
            return EvaluationResult(costs={"train_seconds": time.perf_counter() - started},
                                    status=TrialStatus.FAILED,
                                    error=_error_text("training failed", e))
        costs = {"train_seconds": time.perf_counter() - started}

        run = len(history.get("loss", []))
        best = run - 1
        if early is not None and early.best_epoch is not None and 0 <= early.best_epoch < run:
            best = early.best_epoch
        metrics: dict[str, float] = {"epochs": run, "best_epoch": best + 1,
                                     "params": model.count_params(), **inherited}
        for name, values in history.items():  # every logged metric, the compiled ones too
            if name != "lr" and len(values) > best >= 0:
                metrics[name if name.startswith("val_") else f"train_{name}"] = float(values[best])

        reason = guard.reason or (timer.reason if timer is not None else None)
        if reason is None and not math.isfinite(metrics.get("val_loss", math.nan)):
            reason = "no finite val_loss was logged"
        if reason is not None:
            # Partial metrics are kept for diagnosis; no objective, so nothing ranks it.
            return EvaluationResult(metrics, costs, TrialStatus.FAILED, reason)

        try:
            penalty = float(REGULARIZERS.get(self.regularizer)(spec, model))
        except Exception as e:  # noqa: BLE001
            return EvaluationResult(metrics, costs, TrialStatus.FAILED,
                                    _error_text("regularizer failed", e))
        metrics["regularizer"] = penalty
        metrics["objective"] = metrics["val_loss"] + self.beta * penalty
        if self.goal.name != J and self.objective not in metrics:
            logged = sorted(k for k in metrics if k.startswith(("val_", "train_")))
            return EvaluationResult(metrics, costs, TrialStatus.FAILED,
                                    f"objective {self.goal.name!r} was not logged by fit; logged: "
                                    f"{', '.join(logged)} (a train metric is train_<name>)")
        if self.measurement.costs:
            try:
                costs.update(self._measure(model, data, seed))
            except Exception as e:  # noqa: BLE001  an unconvertible model fails this trial.
                logger.info("trial %s: TFLite measurement failed: %s", spec.key(), e)
                return EvaluationResult(metrics, costs, TrialStatus.FAILED,
                                        _error_text("TFLite measurement failed", e))
        if self.inherit_weights and workdir is not None:
            from keras_cnas.training.inherit import WEIGHTS_FILE, save_weights

            save_weights(model, pathlib.Path(workdir) / WEIGHTS_FILE)
        if self.save_models and workdir is not None:
            try:
                _save(model, spec, {**metrics, **costs, "seed": seed,
                                    "fidelity": candidate.fidelity}, pathlib.Path(workdir))
            except OSError as e:  # a full disk loses the artifact, not the measured result.
                logger.warning("trial %s: could not save the model to %s: %s", spec.key(),
                               workdir, e)
        return EvaluationResult(metrics, costs)

    def finalize(self, candidate: Candidate, out_dir: pathlib.Path, *, seed: int = 0,
                 epochs: int | None = None) -> dict[str, Any]:
        """Retrains ``candidate`` on train + validation (MIT-LL §4.1), tests and saves it.

        Writes ``out_dir/model.keras``, ``spec.json`` and ``metrics.json``.

        Args:
            candidate: the search's best candidate.
            out_dir: where to save (created if needed).
            seed: seeds initialisation, shuffling and augmentation.
            epochs: epochs to train: pass the full-fidelity trial's ``best_epoch`` metric
                (there is no validation split left to stop on); default ``full_epochs``.

        Returns:
            ``epochs``, ``train_loss``, ``train_accuracy``, ``train_seconds``, ``params``,
            ``seed`` and, if the data has a test split, ``test_loss`` and ``test_accuracy``.

        Raises:
            RuntimeError: training diverged (NaN loss).
            InvalidSpecError, ValueError: the spec cannot be built for this data.
        """
        epochs = self.fidelity.full_epochs if epochs is None else epochs
        _positive_int("epochs", epochs)
        from keras_cnas.training.callbacks import NanGuard

        data = self.dataset
        spec = candidate.spec
        model = self._build(spec, data, seed)
        guard = NanGuard()
        started = time.perf_counter()
        history = self._fit(model, data, "train+validation", epochs, seed, [guard], validate=False)
        if guard.reason is not None:
            raise RuntimeError(f"finalize: retraining {spec.key()} on train+validation diverged: "
                               f"{guard.reason}; try a lower learning_rate or another seed")
        metrics: dict[str, Any] = {
            "epochs": len(history["loss"]), "train_loss": float(history["loss"][-1]),
            "train_accuracy": float(history["accuracy"][-1]),
            "train_seconds": time.perf_counter() - started, "params": model.count_params(),
            "seed": seed}
        if len(data.y_test):
            loss, accuracy = model.evaluate(
                data.tf_dataset("test", batch_size=self.batch_size), verbose=0)
            metrics.update(test_loss=float(loss), test_accuracy=float(accuracy))
        _save(model, spec, metrics, pathlib.Path(out_dir))
        return metrics

    @property
    def export_target(self) -> Any:
        """What the search prices before training: the measurement's ``quantize``
        (``"int8"`` or ``"none"``; the float16 and dynamic-range exports TFLite Micro cannot
        run price nothing) with its ``int8_io`` when set."""
        from keras_cnas.costs.deployment import TARGET_QUANTIZATIONS, ExportTarget

        quantize = self.measurement.quantize
        if quantize not in TARGET_QUANTIZATIONS:
            return None
        return ExportTarget(quantize, self.measurement.int8_io and quantize == "int8")

    # --- helpers -------------------------------------------------------------------------

    def _measure(self, model: "keras.Model", data: Dataset, seed: int) -> dict[str, float]:
        """Converts the trained model with the measurement's quantization and measures its costs."""
        # Lazy: export loads TensorFlow and LiteRT.
        from keras_cnas.export import measure_costs, to_tflite

        how = self.measurement
        flatbuffer = to_tflite(model, how.quantize,
                               representative_data=data if how.quantize == "int8" else None,
                               int8_io=how.int8_io, seed=seed)
        return measure_costs(flatbuffer, how.costs, latency_runs=how.latency_runs,
                             latency_warmup=min(5, how.latency_runs))

    def _inherit(self, model: "keras.Model", data: Dataset, candidate: Candidate,
                 workdir: pathlib.Path | None) -> dict[str, float]:
        """Starts ``model`` from its parent trial's weights (``inherit_weights``); the counts
        and the validation loss before training, for the metrics."""
        if not self.inherit_weights:
            return {}
        from keras_cnas.training.inherit import inherit_weights, parent_weights

        source = parent_weights(workdir, dict(candidate.info))
        if source is None:
            return {}
        counts = inherit_weights(model, source)
        out: dict[str, float] = {"inherited_layers": counts["copied"],
                                 "inherited_partial": counts["partial"]}
        if not getattr(model, "_is_compiled", False):  # a build function's compile is kept
            model.compile(loss="sparse_categorical_crossentropy")
            out["initial_val_loss"] = float(model.evaluate(
                data.tf_dataset("validation", batch_size=self.batch_size), verbose=0))
            model._is_compiled = False  # _fit compiles it with the recipe's optimizer
        return out

    def _build(self, spec: Spec, data: Dataset, seed: int) -> "keras.Model":
        from keras_cnas._keras import keras
        from keras_cnas.builders import build_model

        # A fresh graph per trial (Keras otherwise accumulates layer names and memory) and
        # seeds set per trial, so a trial's result depends only on (spec, seed).
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        model = build_model(spec)
        if tuple(model.input_shape[1:]) != tuple(data.input_shape):
            raise ValueError(
                f"spec: the model's input shape {tuple(model.input_shape[1:])} differs from the "
                f"data's {data.input_shape}; build the space with input_shape={data.input_shape}")
        if model.output_shape[-1] != data.num_classes:
            raise ValueError(
                f"spec: the model has {model.output_shape[-1]} outputs but the data has "
                f"{data.num_classes} classes; build the space with num_classes={data.num_classes}")
        return model

    def _fit(self, model: "keras.Model", data: Dataset, split: str, epochs: int, seed: int,
             callbacks: Sequence["keras.callbacks.Callback"], *,
             validate: bool) -> dict[str, list[float]]:
        if getattr(model, "_is_compiled", False):
            # The build function compiled it (KerasTuner's convention): keep its optimizer,
            # loss and metrics, with accuracy logged for the reports.
            metrics = list(getattr(model.compiled_metrics, "_user_metrics", None) or [])
            if not any(m in ("accuracy", "acc") for m in metrics):
                metrics.append("accuracy")
            model.compile(optimizer=model.optimizer, loss=model.loss, metrics=metrics)
        else:
            model.compile(optimizer=self.recipe.make_optimizer(),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(
            data.tf_dataset(split, batch_size=self.batch_size, augment=self.augment, seed=seed),
            validation_data=(data.tf_dataset("validation", batch_size=self.batch_size)
                             if validate else None),
            epochs=epochs, callbacks=[*self.recipe.callbacks(), *callbacks], verbose=self.verbose)
        return history.history


def _pieces(recipe: OptimizerRecipe | None, fidelity: Fidelity | None,
            measurement: Measurement | None,
            fields: Mapping[str, Any]) -> tuple[OptimizerRecipe, Fidelity, Measurement]:
    """The three typed pieces, each given or made from its flat ``fields`` (never both)."""
    unknown = sorted(set(fields) - set(RECIPE_FIELDS) - set(FIDELITY_FIELDS)
                     - set(MEASUREMENT_FIELDS))
    if unknown:
        raise TypeError(f"KerasEvaluator: unknown argument(s) {', '.join(unknown)}; the pieces' "
                        f"fields are {', '.join(RECIPE_FIELDS + FIDELITY_FIELDS + MEASUREMENT_FIELDS)}")
    out = []
    for piece, name, cls, names in ((recipe, "recipe", OptimizerRecipe, RECIPE_FIELDS),
                                    (fidelity, "fidelity", Fidelity, FIDELITY_FIELDS),
                                    (measurement, "measurement", Measurement, MEASUREMENT_FIELDS)):
        given = {k: fields[k] for k in names if k in fields}
        if piece is None:
            piece = cls.from_config(given) if cls is not Fidelity else cls(**given)
        elif not isinstance(piece, cls):
            raise ValueError(f"{name}: expected a {cls.__name__}, got {type(piece).__name__}")
        elif given:
            raise ValueError(f"{', '.join(given)}: set in {name}={cls.__name__}(...) or as "
                             "keywords, not both")
        out.append(piece)
    return out[0], out[1], out[2]


def _save(model: "keras.Model", spec: Spec, metrics: Mapping[str, Any], out_dir: pathlib.Path) -> None:
    """``model.keras``, ``spec.json`` and ``metrics.json`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(out_dir / "model.keras")
    (out_dir / "spec.json").write_text(spec.to_json(indent=2) + "\n")
    finite = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
              for k, v in metrics.items()}
    (out_dir / "metrics.json").write_text(json.dumps(finite, indent=2, sort_keys=True) + "\n")


def _checked_callbacks(callbacks: Any) -> tuple[Any, ...]:
    """``callbacks`` validated: Keras callback objects, or ``"module:attribute"`` paths, kept as
    ``{"path": ..., "root": ...}`` with the directory their module was imported from (a
    worker, whose working directory is its own, puts it on ``sys.path``)."""
    if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, Sequence):
        raise ValueError(f"callbacks: expected a list of Keras callbacks or 'module:attribute' "
                         f"paths, got {callbacks!r:.80}")
    out: list[Any] = []
    for i, c in enumerate(callbacks):
        if isinstance(c, str) and c.startswith(IN_MEMORY_CALLBACK):
            raise ValueError(f"callbacks[{i}]: {c} was an object of another process, which a "
                             "JSON config cannot carry; name it by 'module:attribute'")
        if isinstance(c, (str, Mapping)):
            path = c if isinstance(c, str) else c.get("path")
            root = None if isinstance(c, str) else c.get("root")
            path = object_path(path, f"callbacks[{i}]")
            # Imported now (a set-up error stops here, in one line), and again in each worker.
            import_object(path, root, argument=f"callbacks[{i}]")
            out.append({"path": path, "root": root if root is not None else module_root_of(path)})
        elif callable(getattr(c, "set_model", None)):
            out.append(c)
        else:
            raise ValueError(f"callbacks[{i}]: expected a Keras callback (keras.callbacks."
                             f"Callback) or 'module:attribute', got {type(c).__name__}")
    return tuple(out)


def _callback_config(callback: Any) -> Any:
    """A callback's JSON form: its path and module root, or a note for an object no module
    holds (which :meth:`KerasEvaluator.portable` refuses)."""
    if isinstance(callback, Mapping):
        return dict(callback)
    try:
        path = object_path(callback, "callbacks")
    except ValueError:
        return f"{IN_MEMORY_CALLBACK}{type(callback).__name__}>"
    return {"path": path, "root": module_root_of(path)}


def _resolved_callbacks(callbacks: Sequence[Any]) -> list[Any]:
    """Callback objects: paths imported (a class instantiated, a function called)."""
    import inspect

    out: list[Any] = []
    for c in callbacks:
        if isinstance(c, Mapping):
            c = import_object(c["path"], c.get("root"), argument="callbacks")
            if inspect.isclass(c) or inspect.isfunction(c):
                c = c()
        out.extend(c if isinstance(c, (list, tuple)) else [c])
    for c in out:
        if not callable(getattr(c, "set_model", None)):
            raise ValueError(f"expected Keras callbacks, got {type(c).__name__}")
    return out
