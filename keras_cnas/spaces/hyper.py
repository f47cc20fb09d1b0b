"""A search space from the user's own model-building function, KerasTuner style.

``HyperSpace(build_fn, input_shape=..., num_classes=...)`` where ``build_fn(hp)`` builds a
``tf_keras`` model and asks ``hp`` for its choices with ``hp.Int``, ``hp.Float``,
``hp.Choice``, ``hp.Boolean`` and ``hp.Fixed``, optionally inside
``hp.conditional_scope(parent, values)``, with KerasTuner's meaning:

* the first call of a name defines the hyperparameter and returns its default (KerasTuner's
  defaults: ``min_value`` for Int/Float, the first value for Choice, False for Boolean);
  later calls return the value the search chose;
* a hyperparameter defined in a conditional scope (or with ``parent_name`` /
  ``parent_values``) is *active* only while its parents hold one of the listed values;
  while it is inactive the call returns None.

A spec (:class:`HyperSpec`) holds the *active* values by name (``{"filters_0": 32, ...}``),
so two specs that differ only in an inactive choice are the same network. It names the
build function by an importable ``"module:function"`` path, which is how worker processes
and Ray rebuild it; lambdas and functions defined inside other functions are refused.

The space is discovered by calling ``build_fn`` a few times (defaults first, then every
value of each Choice / Boolean and both ends of each Int / Float range, in the context that
defined it), so hyperparameters that appear only for some values (``units_2`` when
``num_layers`` is 3) are found. Its categorical view has one decision per hyperparameter;
a Float without ``step`` is a grid of :data:`FLOAT_GRID` values (geometric for
``sampling="log"``). Int, Float and Boolean decisions are ordered; a Choice of numbers is
ordered unless ``ordered=False``, a Choice of strings is not.

Costs come from building the model (``keras_cnas.builders.hyper``): the space module stays
free of TensorFlow, the user's function imports Keras itself.

Example:
    >>> def build(hp):
    ...     from keras_cnas._keras import keras
    ...     model = keras.Sequential([keras.Input((8, 8, 1))])
    ...     model.add(keras.layers.Conv2D(hp.Int("filters", 4, 16, step=4), 3))
    ...     if hp.Boolean("pool"):
    ...         model.add(keras.layers.MaxPooling2D())
    ...     model.add(keras.layers.Flatten())
    ...     model.add(keras.layers.Dense(10, activation="softmax"))
    ...     return model
    >>> space = HyperSpace(build, input_shape=(8, 8, 1), num_classes=10)
    >>> space.decision_sizes(), [hp.name for hp in space.hyperparameters]
    ([4, 2], ['filters', 'pool'])
    >>> import keras_cnas as cnas
    >>> spec = space.spec({"filters": 8, "pool": True})
    >>> spec.describe(), cnas.estimate(spec).params   # built, not trained: 80 + 72 * 10 + 10
    ('filters=8 pool=True', 810)
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import math
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from keras_cnas._checks import is_finite_number, is_int, is_real
from keras_cnas._imports import import_object, module_root_of, object_path
from keras_cnas.errors import InvalidSpecError
from keras_cnas.spaces.base import SPACES, SPEC_TYPES, Mutation, Space, Spec, check_shape, require

__all__ = ["FLOAT_GRID", "HyperParameter", "HyperParameters", "HyperSpace", "HyperSpec",
           "build_fn_path", "discover", "resolve_build_fn"]

#: Build function path -> why its models have no analytic costs beyond params, recorded by
#: the Keras side (``keras_cnas.builders.hyper.hyper_costs``) when it prices a model.
_UNPRICED: dict[str, str] = {}


def note_unpriced(build_fn: str, reason: str) -> bool:
    """Records that models of ``build_fn`` have only ``params``; True when it is news."""
    news = _UNPRICED.get(build_fn) != reason
    _UNPRICED[build_fn] = reason
    return news


def unpriced_reason(build_fn: str) -> str | None:
    """Why models of ``build_fn`` have only ``params`` (the unpriceable layer), or None."""
    return _UNPRICED.get(build_fn)

logger = logging.getLogger(__name__)

#: Values of a Float hyperparameter given without ``step`` (its categorical decision).
FLOAT_GRID = 10
#: At most this many calls of the build function while discovering the space.
MAX_DISCOVERY_BUILDS = 200
#: At most this many values of a log-sampled Int without ``step``.
LOG_INT_GRID = 32
KINDS = ("int", "float", "choice", "boolean", "fixed")
SAMPLINGS = ("linear", "log", "reverse_log")

Value = int | float | str | bool
Condition = tuple[str, tuple[Value, ...]]


@dataclasses.dataclass(frozen=True)
class HyperParameter:
    """One hyperparameter: its finite, ordered value set and when it is active.

    Attributes:
        name: unique name.
        kind: ``"int"``, ``"float"``, ``"choice"``, ``"boolean"`` or ``"fixed"``.
        values: every value it can take, in order (a decision's choices).
        default: the value the build function sees before the search chooses.
        ordered: whether neighbouring values are similar (moves step between them).
        conditions: ``(parent name, parent values)`` pairs, all of which must hold.
    """

    name: str
    kind: str
    values: tuple[Value, ...]
    default: Value
    ordered: bool
    conditions: tuple[Condition, ...] = ()

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "values": list(self.values),
                "default": self.default, "ordered": self.ordered,
                "conditions": [[p, list(v)] for p, v in self.conditions]}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "HyperParameter":
        try:
            return cls(str(config["name"]), str(config["kind"]), tuple(config["values"]),
                       config["default"], bool(config["ordered"]),
                       tuple((str(p), tuple(v)) for p, v in config.get("conditions", ())))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"hyperparameters: malformed entry {config!r:.120} ({e}); "
                             "pass the list HyperSpace.get_config() wrote") from None

    def index(self, value: Value) -> int:
        """The decision value (position in :attr:`values`) of ``value``."""
        for i, v in enumerate(self.values):
            if v == value and type(v) is type(value) or (is_real(v) and is_real(value)
                                                          and math.isclose(v, value)):
                return i
        raise InvalidSpecError(f"values[{self.name!r}]: {value!r} is not one of "
                               f"{_preview(self.values)}")


def _preview(values: Sequence[Any], n: int = 8) -> str:
    shown = ", ".join(map(repr, values[:n]))
    return f"[{shown}{', ...' if len(values) > n else ''}] ({len(values)} values)"


class HyperParameters:
    """The ``hp`` a build function receives: KerasTuner's ``HyperParameters`` API.

    Args:
        values: the chosen values by name; a name not given takes its default.

    Example:
        >>> hp = HyperParameters({"units": 64})
        >>> hp.Int("units", 32, 128, step=32), hp.Choice("act", ["relu", "tanh"])
        (64, 'relu')
        >>> with hp.conditional_scope("act", ["tanh"]):
        ...     print(hp.Float("slope", 0.1, 0.3, step=0.1))
        None
    """

    def __init__(self, values: Mapping[str, Value] | None = None):
        self.values: dict[str, Value] = dict(values or {})
        self._space: dict[str, HyperParameter] = {}
        self._scopes: list[Condition] = []

    @property
    def space(self) -> list[HyperParameter]:
        """The hyperparameters defined so far, in the order they were first asked for."""
        return list(self._space.values())

    # --- KerasTuner's API --------------------------------------------------------------------

    def Int(self, name: str, min_value: int, max_value: int, step: int | None = None,
            sampling: str = "linear", default: int | None = None,
            parent_name: str | None = None, parent_values: Sequence[Value] | None = None) -> int | None:
        """An integer in ``[min_value, max_value]``: every ``step``-th one (``sampling="log"``:
        ``step`` multiplies), the default ``min_value``."""
        for arg, v in (("min_value", min_value), ("max_value", max_value)):
            if not is_int(v, numpy=True):
                raise ValueError(f"hp.Int({name!r}): {arg} must be an int, got {v!r}")
        values = _range_values(name, int(min_value), int(max_value), step, sampling, integer=True)
        return self._retrieve(name, "int", values, default, True, parent_name, parent_values)

    def Float(self, name: str, min_value: float, max_value: float, step: float | None = None,
              sampling: str = "linear", default: float | None = None,
              parent_name: str | None = None,
              parent_values: Sequence[Value] | None = None) -> float | None:
        """A float in ``[min_value, max_value]``: every ``step`` (``sampling="log"``: ``step``
        multiplies), or :data:`FLOAT_GRID` grid values without ``step``."""
        for arg, v in (("min_value", min_value), ("max_value", max_value)):
            if not is_finite_number(v):
                raise ValueError(f"hp.Float({name!r}): {arg} must be a finite number, got {v!r}")
        values = _range_values(name, float(min_value), float(max_value), step, sampling,
                               integer=False)
        return self._retrieve(name, "float", values, default, True, parent_name, parent_values)

    def Choice(self, name: str, values: Sequence[Value], ordered: bool | None = None,
               default: Value | None = None, parent_name: str | None = None,
               parent_values: Sequence[Value] | None = None) -> Value | None:
        """One of ``values`` (all int, float, str or bool); ordered by default when they are
        numbers."""
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"hp.Choice({name!r}): values must be a non-empty list, got {values!r}")
        kinds = {type(v.item() if isinstance(v, np.generic) else v) for v in values}
        numeric = kinds <= {int, float}
        if not (numeric or kinds == {str} or kinds == {bool}):
            raise ValueError(f"hp.Choice({name!r}): values must all be int, float, str or bool "
                             f"(one type), got {list(values)!r}")
        clean = tuple(v if isinstance(v, (str, bool)) else v.item() if isinstance(v, np.generic)
                      else v for v in values)
        if len(set(clean)) != len(clean):
            raise ValueError(f"hp.Choice({name!r}): values must be distinct, got {list(values)!r}")
        if ordered is None:
            ordered = numeric
        elif ordered and not numeric:
            raise ValueError(f"hp.Choice({name!r}): ordered=True needs numeric values, got "
                             f"{list(values)!r}")
        return self._retrieve(name, "choice", clean, default, bool(ordered), parent_name,
                              parent_values)

    def Boolean(self, name: str, default: bool = False, parent_name: str | None = None,
                parent_values: Sequence[Value] | None = None) -> bool | None:
        """True or False, the default False."""
        return self._retrieve(name, "boolean", (False, True), bool(default), True, parent_name,
                              parent_values)

    def Fixed(self, name: str, value: Value, parent_name: str | None = None,
              parent_values: Sequence[Value] | None = None) -> Value | None:
        """A constant recorded with the other values."""
        return self._retrieve(name, "fixed", (value,), value, True, parent_name, parent_values)

    @contextlib.contextmanager
    def conditional_scope(self, parent_name: str, parent_values: Value | Sequence[Value]) -> Iterator[None]:
        """Hyperparameters defined inside are active only while ``parent_name`` holds one of
        ``parent_values``."""
        if parent_name not in self._space:
            raise ValueError(f"hp.conditional_scope: parent_name {parent_name!r} is not defined "
                             "yet; ask for it (hp.Choice(...), ...) before opening its scope")
        self._scopes.append((parent_name, _as_tuple(parent_values)))
        try:
            yield
        finally:
            self._scopes.pop()

    def get(self, name: str) -> Value:
        """The current value of a defined hyperparameter."""
        if name not in self._space:
            raise KeyError(f"hp.get: {name!r} is not defined; defined: {', '.join(self._space)}")
        return self.values[name]

    def is_active(self, hp: HyperParameter | str) -> bool:
        """Whether every condition of ``hp`` (and of its parents) holds."""
        hp = self._space[hp] if isinstance(hp, str) else hp
        return _active(hp, self.values, self._space)

    def __getitem__(self, name: str) -> Value:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._space

    # --- internals -------------------------------------------------------------------------

    def _retrieve(self, name: str, kind: str, values: tuple[Value, ...], default: Value | None,
                  ordered: bool, parent_name: str | None,
                  parent_values: Sequence[Value] | None) -> Any:
        if not isinstance(name, str) or not name:
            raise ValueError(f"hyperparameter name: expected a non-empty string, got {name!r}")
        hp = self._space.get(name)
        if hp is None:
            conditions = list(self._scopes)
            if parent_name is not None:
                if parent_values is None:
                    raise ValueError(f"hp {name!r}: parent_name needs parent_values too")
                if parent_name not in self._space:
                    raise ValueError(f"hp {name!r}: parent_name {parent_name!r} is not defined "
                                     "yet; ask for the parent first")
                conditions.append((parent_name, _as_tuple(parent_values)))
            if default is None:
                default = values[0]
            elif kind in ("int", "float") and is_real(default) \
                    and values[0] <= default <= values[-1] and default not in values:
                # KerasTuner accepts any default in the range: it joins the grid.
                values = tuple(sorted({*values, int(default) if kind == "int" else float(default)}))
            hp = HyperParameter(name, kind, values, default, ordered, tuple(conditions))
            hp.index(default)  # the default must be one of the values
            self._space[name] = hp
        if name not in self.values:
            self.values[name] = hp.default
        return self.values[name] if self.is_active(hp) else None


def _as_tuple(values: Value | Sequence[Value]) -> tuple[Value, ...]:
    if isinstance(values, (str, bool, int, float)):
        return (values,)
    return tuple(values)


def _active(hp: HyperParameter, values: Mapping[str, Value],
            space: Mapping[str, HyperParameter]) -> bool:
    for parent, allowed in hp.conditions:
        if values.get(parent) not in allowed:
            return False
        if parent in space and not _active(space[parent], values, space):
            return False
    return True


def _range_values(name: str, low: float, high: float, step: float | None, sampling: str,
                  *, integer: bool) -> tuple[Value, ...]:
    """The finite value set of an Int / Float range (KerasTuner's step semantics)."""
    what = f"hp.{'Int' if integer else 'Float'}({name!r})"
    if sampling not in SAMPLINGS:
        raise ValueError(f"{what}: sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    if high < low:
        raise ValueError(f"{what}: max_value {high} is below min_value {low}")
    log = sampling != "linear"
    if log and low <= 0:
        raise ValueError(f"{what}: sampling={sampling!r} needs min_value > 0, got {low}")
    if step is not None and (not is_real(step) or step <= 0
                             or (log and step <= 1)):
        raise ValueError(f"{what}: step must be a positive number (> 1 for log sampling, where "
                         f"it multiplies), got {step!r}")
    if step is None:
        if integer and not log:
            out: list[float] = list(range(int(low), int(high) + 1))
        elif integer:
            n = min(LOG_INT_GRID, int(high - low) + 1)
            out = sorted({int(round(v)) for v in np.geomspace(low, high, n)})
        else:
            grid = np.geomspace(low, high, FLOAT_GRID) if log else np.linspace(low, high, FLOAT_GRID)
            out = [float(f"{v:.12g}") for v in grid] if high > low else [low]
    else:
        out, k = [], 0
        while len(out) <= 100_000:
            v = low * step ** k if log else low + k * step  # no accumulated rounding error
            if v > high * (1 + 1e-9) + 1e-12:
                break
            out.append(int(round(v)) if integer else float(f"{v:.12g}"))
            k += 1
    # Rounding may repeat a value. "reverse_log" has the same value set as "log": KerasTuner
    # differs only in how it samples within it.
    out = list(dict.fromkeys(out))
    return tuple(int(v) for v in out) if integer else tuple(float(v) for v in out)


# --- the build function's importable path ---------------------------------------------------


def build_fn_path(build_fn: Callable[..., Any] | str) -> str:
    """The ``"module:function"`` path a worker imports ``build_fn`` from (see
    :mod:`keras_cnas._imports`); a ``keras_tuner.HyperModel`` instance is named by the
    module-level variable holding it.

    Raises:
        ValueError: a lambda, a function defined inside another function, a non-callable.
    """
    if not isinstance(build_fn, str) and not callable(build_fn) \
            and not callable(getattr(build_fn, "build", None)):
        raise ValueError(f"build_fn: expected a function build(hp) -> model, a "
                         f"keras_tuner.HyperModel or 'module:function', got "
                         f"{type(build_fn).__name__}")
    return object_path(build_fn, "build_fn")


def resolve_build_fn(path: str, root: str | None = None) -> Callable[..., Any]:
    """The build function named by ``path`` (a HyperModel's ``build``; a HyperModel class
    is instantiated without arguments, as KerasTuner does)."""
    target = import_object(path, root, "build_fn")
    if inspect.isclass(target):
        target = target()
    build = getattr(target, "build", None)
    if not inspect.isfunction(target) and callable(build):
        return build
    return target


# --- specs and the space ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HyperSpec(Spec):
    """One network of a :class:`HyperSpace`: the build function and its active values
    (sorted by name), the data's shape and classes, and where the function's module is.

    Example:
        >>> spec = HyperSpec("my_models:build", (("pool", True), ("filters", 32)), (8, 8, 1), 10)
        >>> spec.describe()
        'filters=32 pool=True'
        >>> HyperSpec.from_json(spec.to_json()) == spec
        True
    """

    SPACE = "hyper"
    VERSION = 1

    build_fn: str
    values: tuple[tuple[str, Value], ...]
    input_shape: tuple[int, int, int]
    num_classes: int
    module_root: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.build_fn, str) or ":" not in self.build_fn:
            raise InvalidSpecError(f"build_fn: expected 'module:function', got {self.build_fn!r}")
        values = self.values.items() if isinstance(self.values, Mapping) else self.values
        clean = []
        for item in values:
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
                raise InvalidSpecError(f"values: expected name -> value pairs, got {item!r:.60}")
            name, value = item
            if isinstance(value, np.generic):
                value = value.item()
            if not isinstance(value, (int, float, str, bool)):
                raise InvalidSpecError(f"values[{name!r}]: expected an int, float, str or bool, "
                                       f"got {type(value).__name__} {value!r:.60}")
            clean.append((name, value))
        # Sorted by name: a spec read back from (sorted-key) JSON equals the one sampled.
        object.__setattr__(self, "values", tuple(sorted(clean)))
        object.__setattr__(self, "input_shape", check_shape("input_shape", self.input_shape))
        if not is_int(self.num_classes) \
                or self.num_classes < 1:
            raise InvalidSpecError(f"num_classes: expected a positive int, got {self.num_classes!r}")
        if self.module_root is not None and not isinstance(self.module_root, str):
            raise InvalidSpecError(f"module_root: expected a directory or None, got "
                                   f"{self.module_root!r}")

    def as_dict(self) -> dict[str, Value]:
        """The active values by name."""
        return dict(self.values)

    def describe(self) -> str:
        """``"filters=32 pool=True"``: the values, for tables."""
        return " ".join(f"{k}={_short(v)}" for k, v in self.values)

    def _payload(self) -> dict[str, Any]:
        return {"build_fn": self.build_fn, "values": dict(self.values),
                "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "module_root": self.module_root}

    @classmethod
    def _from_payload(cls, payload: Mapping[str, Any]) -> "HyperSpec":
        values = require(payload, "values")
        if not isinstance(values, Mapping):
            raise InvalidSpecError(f"values: expected an object name -> value, got {values!r:.80}")
        return cls(require(payload, "build_fn"), tuple(values.items()),
                   tuple(require(payload, "input_shape")), require(payload, "num_classes"),
                   payload.get("module_root"))


def _short(value: Value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


SPEC_TYPES.add(HyperSpec.SPACE, HyperSpec)


@SPACES.register("hyper")
class HyperSpace(Space):
    """The space of the models ``build_fn(hp)`` builds (KerasTuner's hypermodel).

    Args:
        build_fn: ``build(hp) -> tf_keras.Model`` (it may compile the model: then its optimizer
            and loss are used), a ``keras_tuner.HyperModel`` instance, or its
            ``"module:function"`` path. It must be importable by that path (a top-level
            ``def`` of a module or of the script you run), so that worker processes and Ray
            can rebuild it.
        input_shape: ``(height, width, channels)`` of the data; a model built without an
            ``Input`` is built for it.
        num_classes: the classes of the data (the model's outputs).
        hyperparameters: the hyperparameters, as :meth:`get_config` lists them (a resumed
            search passes them back); None: discover them by calling ``build_fn``.

    Raises:
        ValueError: ``build_fn`` is a lambda / not importable, asks for no hyperparameter,
            or fails with its default values (the message names the error).
    """

    name = "hyper"

    def __init__(self, build_fn: Callable[..., Any] | str, input_shape: Sequence[int],
                 num_classes: int, *, hyperparameters: Sequence[Mapping[str, Any]] | None = None,
                 module_root: str | None = None):
        self.build_fn = build_fn_path(build_fn)
        self.module_root = module_root if module_root is not None else module_root_of(self.build_fn)
        self.input_shape = check_shape("input_shape", tuple(input_shape))
        if not is_int(num_classes) or num_classes < 1:
            raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        if hyperparameters is None:
            self._hps = discover(resolve_build_fn(self.build_fn, self.module_root), self.build_fn)
        else:
            self._hps = [HyperParameter.from_config(h) for h in hyperparameters]
        if not self._hps:
            raise ValueError(f"build_fn: {self.build_fn} asks hp for no hyperparameter "
                             "(hp.Int, hp.Choice, ...), so there is nothing to search")
        self._by_name = {hp.name: hp for hp in self._hps}

    @property
    def hyperparameters(self) -> list[HyperParameter]:
        """Every hyperparameter, in the order the build function first asks for them."""
        return list(self._hps)

    def get_config(self) -> dict[str, Any]:
        return {"build_fn": self.build_fn, "module_root": self.module_root,
                "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "hyperparameters": [hp.to_config() for hp in self._hps]}

    def spec(self, values: Mapping[str, Value] | None = None) -> HyperSpec:
        """The spec with ``values`` (by name; others take their defaults), inactive ones dropped.

        Raises:
            InvalidSpecError: a name is unknown or a value is not in its range.
        """
        values = dict(values or {})
        unknown = sorted(set(values) - set(self._by_name))
        if unknown:
            raise InvalidSpecError(f"values: unknown hyperparameter(s) {', '.join(unknown)}; "
                                   f"known: {', '.join(self._by_name)}")
        decisions = [hp.index(values[hp.name]) if hp.name in values else hp.index(hp.default)
                     for hp in self._hps]
        return self.from_decisions(decisions)

    def default_spec(self) -> HyperSpec:
        """Every hyperparameter at its default (what the build function returns unasked)."""
        return self.spec()

    def sample(self, rng: np.random.Generator) -> HyperSpec:
        u = rng.random(len(self._hps)).tolist()
        return self.from_decisions([int(x * len(hp.values)) for x, hp in zip(u, self._hps)])

    def validate(self, spec: Spec) -> None:
        if not isinstance(spec, HyperSpec):
            raise InvalidSpecError(f"spec: expected a HyperSpec, got {type(spec).__name__}")
        if spec.build_fn != self.build_fn or spec.module_root != self.module_root:
            raise InvalidSpecError(f"spec.build_fn: {spec.build_fn!r} is not this space's "
                                   f"{self.build_fn!r}")
        if self.from_decisions(self.to_decisions(spec)) != spec:
            raise InvalidSpecError(f"spec.values: {spec.as_dict()} are not the active values of "
                                   "one choice of this space (inactive or missing names)")

    def mutations(self, spec: Spec, rng: np.random.Generator) -> list[Mutation]:
        """Every spec that differs in one active decision: the next value up or down for an
        ordered one, any other value for an unordered Choice."""
        del rng
        decisions = self.to_decisions(spec)
        assert isinstance(spec, HyperSpec)
        active = spec.as_dict()
        out = []
        for i, hp in enumerate(self._hps):
            if hp.name not in active:
                continue
            d = decisions[i]
            options = ([v for v in (d - 1, d + 1) if 0 <= v < len(hp.values)] if hp.ordered
                       else [v for v in range(len(hp.values)) if v != d])
            for v in options:
                new = self.from_decisions(decisions[:i] + [v] + decisions[i + 1:])
                out.append(Mutation("set", f"{hp.name}: {_short(hp.values[d])} -> "
                                           f"{_short(hp.values[v])}", new))
        return out

    def decision_sizes(self) -> list[int]:
        return [len(hp.values) for hp in self._hps]

    def ordered_decisions(self) -> list[bool]:
        """Whether each decision's choices are ordered (steps of ±1 mean something)."""
        return [hp.ordered for hp in self._hps]

    def to_decisions(self, spec: Spec) -> list[int]:
        if not isinstance(spec, HyperSpec):
            raise InvalidSpecError(f"spec: expected a HyperSpec, got {type(spec).__name__}")
        values = spec.as_dict()
        unknown = sorted(set(values) - set(self._by_name))
        if unknown:
            raise InvalidSpecError(f"spec.values: unknown hyperparameter(s) {', '.join(unknown)}; "
                                   f"this space has {', '.join(self._by_name)}")
        return [hp.index(values[hp.name]) if hp.name in values else 0 for hp in self._hps]

    def from_decisions(self, decisions: Sequence[int]) -> HyperSpec:
        if len(decisions) != len(self._hps):
            raise InvalidSpecError(f"decisions: expected {len(self._hps)} values (one per "
                                   f"hyperparameter), got {len(decisions)}")
        chosen: dict[str, Value] = {}
        for hp, d in zip(self._hps, decisions):
            if not is_int(d, numpy=True) \
                    or not 0 <= d < len(hp.values):
                raise InvalidSpecError(f"decisions[{hp.name!r}]: {d!r} is not in "
                                       f"[0, {len(hp.values) - 1}]")
            chosen[hp.name] = hp.values[int(d)]
        active = tuple((hp.name, chosen[hp.name]) for hp in self._hps
                       if _active(hp, chosen, self._by_name))
        return HyperSpec(self.build_fn, active, self.input_shape, self.num_classes,
                         self.module_root)

    @property
    def unpriced(self) -> str | None:
        """Why the analytic costs beyond ``params`` are missing (the layer the cost code
        cannot price), once a spec was estimated; None if every cost is known."""
        return unpriced_reason(self.build_fn)


def discover(build_fn: Callable[..., Any], path: str) -> list[HyperParameter]:
    """The hyperparameters ``build_fn`` asks for, by calling it: first with the defaults,
    then with every value of each Choice / Boolean and both ends of each range, in the
    context (the other values) that defined it, until no new hyperparameter appears."""
    found: dict[str, HyperParameter] = {}
    queue: list[dict[str, Value]] = [{}]
    seen: set[str] = set()
    builds = 0
    while queue and builds < MAX_DISCOVERY_BUILDS:
        overrides = queue.pop(0)
        key = repr(sorted(overrides.items(), key=lambda kv: kv[0]))
        if key in seen:
            continue
        seen.add(key)
        hp = HyperParameters(overrides)
        builds += 1
        try:
            build_fn(hp)
        except Exception as e:  # noqa: BLE001
            if not overrides:
                raise ValueError(f"build_fn: {path} raised with its default values: "
                                 f"{type(e).__name__}: {e}") from None
            logger.info("discovering %s: values %s raise %s: %s", path, overrides,
                        type(e).__name__, e)
        for new in hp.space:
            old = found.get(new.name)
            if old is None:
                found[new.name] = new
                probes = (new.values if new.kind in ("choice", "boolean")
                          else (new.values[0], new.values[-1]))
                # This build already used the default; probe the other values.
                queue.extend({**overrides, new.name: v} for v in probes if v != new.default)
            elif (old.kind, old.values) != (new.kind, new.values):
                raise ValueError(f"build_fn: hyperparameter {new.name!r} is defined twice with "
                                 f"different values ({_preview(old.values)} and "
                                 f"{_preview(new.values)}); give each one its own name")
    if queue:
        logger.warning("discovering %s: stopped after %d builds; hyperparameters that appear "
                       "only for rarer combinations may be missing", path, builds)
    # Parents before children: the build function defines them in that order.
    return list(found.values())
