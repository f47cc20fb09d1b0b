"""The typed pieces a trainer is made of, besides its :class:`OptimizerRecipe`:
:class:`Fidelity` (how long a traction and a full run train) and :class:`Measurement` (what
is measured on each trained candidate's TFLite artifact, and which artifact).

``KerasEvaluator(data, recipe=..., fidelity=..., measurement=...)`` takes them; the
compression package's ``TrainingConfig`` trains with the same ``OptimizerRecipe``. Each
piece validates its own fields, so a bad value is reported once, by its name. Pure Python.

Example:
    >>> Fidelity(traction_epochs=1, full_epochs=5, patience=2).full_epochs
    5
    >>> Measurement(("tflite_bytes",), quantize="none").costs
    ('tflite_bytes',)
"""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any, Mapping, Sequence

from keras_cnas.costs.measured import MEASURED_COSTS
from keras_cnas.costs.micro_support import micro_runs
from keras_cnas.costs.quantization import QUANTIZATIONS

__all__ = ["EXPORT_QUANTIZATIONS", "MEASURABLE_COSTS", "Fidelity", "Measurement"]

#: Costs a :class:`Measurement` can name, measured on each trained candidate's ``.tflite``,
#: and its ``quantize`` values: one home each, in costs (measured.py, quantization.py).
MEASURABLE_COSTS = MEASURED_COSTS
EXPORT_QUANTIZATIONS = QUANTIZATIONS


def _count(name: str, value: Any, *, low: int = 1, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        kind = "a positive" if low == 1 else "a non-negative"
        raise ValueError(f"{name}: expected {kind} integer{' or None' if allow_none else ''}, "
                         f"got {value!r}")


@dataclasses.dataclass(frozen=True)
class Fidelity:
    """How long a candidate trains at each fidelity.

    Attributes:
        traction_epochs: epochs of a ``"traction"`` candidate (MIT-LL §3.4); None for no
            epoch limit (then ``traction_steps`` must be set).
        traction_steps: training steps of a ``"traction"`` candidate, if set; with both, the
            first limit reached stops training.
        full_epochs: most epochs of a ``"full"`` candidate (and of the final retraining when
            no best epoch is known).
        patience: epochs without a better objective after which a ``"full"`` run stops
            (Keras ``EarlyStopping``; the best epoch's weights and metrics are kept).

    Example:
        >>> Fidelity(traction_epochs=None)
        Traceback (most recent call last):
        ...
        ValueError: traction_epochs / traction_steps: both are None; set at least one (e.g. traction_epochs=3)
    """

    traction_epochs: int | None = 3
    traction_steps: int | None = None
    full_epochs: int = 30
    patience: int = 5

    def __post_init__(self) -> None:
        _count("traction_epochs", self.traction_epochs, allow_none=True)
        _count("traction_steps", self.traction_steps, allow_none=True)
        if self.traction_epochs is None and self.traction_steps is None:
            raise ValueError("traction_epochs / traction_steps: both are None; set at least one "
                             "(e.g. traction_epochs=3)")
        _count("full_epochs", self.full_epochs)
        _count("patience", self.patience, low=0)

    def get_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Measurement:
    """What is measured on each trained candidate, on which TFLite artifact.

    The measured costs join the trial's costs (and the evaluator's ``reported_costs``), so
    that ``Constraints`` may bound them (``max_arena_bytes=...``): the engine marks a trial
    that breaks such a bound INFEASIBLE with the measured figure.

    Attributes:
        costs: from :data:`MEASURABLE_COSTS`: ``"tflite_bytes"``, ``"arena_bytes"`` (TFLite
            Micro; needs ``tflite-micro``), ``"latency_ms"``. Empty: measure nothing.
        quantize: the artifact's quantization (:data:`EXPORT_QUANTIZATIONS`; ``"int8"``: what
            a microcontroller runs). TFLite Micro cannot run ``"dynamic"`` or ``"float16"``
            models, so ``"arena_bytes"`` needs ``"int8"`` or ``"none"``. It is also the
            export the search prices ``arena_bytes`` / ``tflite_bytes`` for before training.
        int8_io: int8 input and output tensors (``"int8"`` only), so that what is checked
            during the search is what a firmware ships.
        latency_runs: timed invocations per ``latency_ms`` measurement.

    Example:
        >>> Measurement(("latency_ms",), quantize="float16").quantize
        'float16'
        >>> Measurement(("tflite_bytes",), quantize="dynamic", int8_io=True)
        Traceback (most recent call last):
        ...
        ValueError: int8_io: expected True (with quantize='int8') or False, got True with 'dynamic'
    """

    costs: tuple[str, ...] = ()
    quantize: str = "int8"
    int8_io: bool = False
    latency_runs: int = 50

    def __post_init__(self) -> None:
        costs = self.costs
        if isinstance(costs, str) or not isinstance(costs, Sequence):
            raise ValueError(f"measure: expected a list of cost names such as ('arena_bytes',), "
                             f"got {costs!r}")
        unknown = [m for m in costs if m not in MEASURABLE_COSTS]
        if unknown:
            raise ValueError(f"measure: unknown cost(s) {', '.join(map(repr, unknown))}; known: "
                             f"{', '.join(MEASURABLE_COSTS)}")
        if self.quantize not in EXPORT_QUANTIZATIONS:
            raise ValueError(f"export_quantize: unknown quantization {self.quantize!r}; known: "
                             f"{', '.join(EXPORT_QUANTIZATIONS)}")
        if "arena_bytes" in costs:
            if not micro_runs(self.quantize):
                raise ValueError(f"measure: 'arena_bytes' needs a model TensorFlow Lite Micro can "
                                 f"run, and it cannot run {self.quantize!r} ones (hybrid / float16 "
                                 "weights); use export_quantize='int8' (or 'none')")
            if importlib.util.find_spec("tflite_micro") is None:
                raise ValueError("measure: 'arena_bytes' runs the model in TensorFlow Lite Micro, "
                                 "which is not installed; pip install 'keras_cnas[micro]' (the "
                                 "tflite-micro package)")
        if not isinstance(self.int8_io, bool) or (self.int8_io and self.quantize != "int8"):
            raise ValueError(f"int8_io: expected True (with quantize='int8') or False, got "
                             f"{self.int8_io!r} with {self.quantize!r}")
        _count("latency_runs", self.latency_runs)
        object.__setattr__(self, "costs", tuple(dict.fromkeys(costs)))  # unique, in order

    @classmethod
    def for_device(cls, device: Any) -> "Measurement":
        """The costs a deployment target bounds, measured on the artifact it runs.

        Example:
            >>> Measurement.for_device("rp2040")  # doctest: +SKIP
            Measurement(costs=('tflite_bytes', 'arena_bytes'), quantize='int8', int8_io=True, latency_runs=50)
        """
        from keras_cnas.devices import get_device

        board = get_device(device) if isinstance(device, str) else device
        return cls(tuple(board.measured_costs), board.quantize,
                   bool(board.int8_io and board.quantize == "int8"))

    def get_config(self) -> dict[str, Any]:
        """The flat keyword form (``measure``, ``export_quantize``, ``export_int8_io``,
        ``latency_runs``), as ``KerasEvaluator``'s JSON config has always recorded it."""
        return {"measure": list(self.costs), "export_quantize": self.quantize,
                "export_int8_io": self.int8_io, "latency_runs": self.latency_runs}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Measurement":
        return cls(config.get("measure", ()), config.get("export_quantize", "int8"),
                   config.get("export_int8_io", False), config.get("latency_runs", 50))
