"""Contracts shared by every search space: specs as JSON values, spaces, mutations.

A *spec* is an immutable, hashable value (a frozen dataclass) describing one network
completely: ``keras_cnas.costs.estimate(spec)`` and ``keras_cnas.build_model(spec)`` need
nothing else. A *space* knows how to sample, validate and mutate specs, and offers a
categorical view (a vector of integer decisions) that generic strategies work on.

Pure Python + NumPy: this module never imports TensorFlow.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from keras_cnas._checks import is_int
from keras_cnas.errors import InvalidSpecError
from keras_cnas.registry import Registry

#: Spec classes by their JSON ``space`` tag, for :func:`spec_from_json`.
SPEC_TYPES: Registry[type["Spec"]] = Registry("spec type")
#: Space classes by name, for ``Space.from_config`` and the command-line tools.
SPACES: Registry[type["Space"]] = Registry("space")
#: ``for_budget`` by space name: ``fn(constraints, input_shape, num_classes, **options) ->
#: Space``. Registered by ``keras_cnas._plugins`` (the sizing prices specs: it lives in
#: ``costs``, above the spaces).
SIZERS: Registry[Callable[..., "Space"]] = Registry("space sizer")


class Spec(abc.ABC):
    """Base of every architecture spec; subclasses are frozen dataclasses.

    Subclasses set ``SPACE`` (the JSON tag) and ``VERSION`` and implement
    ``_payload()`` / ``_from_payload()``.
    """

    SPACE: ClassVar[str]
    VERSION: ClassVar[int] = 1

    @abc.abstractmethod
    def _payload(self) -> dict[str, Any]:
        """The spec's fields as JSON-compatible values (no ``space``/``version``)."""

    @classmethod
    @abc.abstractmethod
    def _from_payload(cls, payload: Mapping[str, Any]) -> "Spec":
        """Inverse of ``_payload``; raises InvalidSpecError on malformed input."""

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.SPACE, "version": self.VERSION, **self._payload()}

    def to_json(self, indent: int | None = None) -> str:
        """Canonical JSON: sorted keys, a ``space`` tag and a ``version``."""
        separators = (",", ":") if indent is None else (",", ": ")
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, separators=separators)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Spec":
        if not isinstance(data, Mapping):
            raise InvalidSpecError(
                f"spec: expected a JSON object, got {type(data).__name__} {data!r:.80}")
        space = data.get("space")
        if space != cls.SPACE:
            raise InvalidSpecError(
                f"space: expected {cls.SPACE!r} for {cls.__name__}, got {space!r}")
        version = data.get("version")
        if version != cls.VERSION:
            raise InvalidSpecError(
                f"version: {cls.__name__} reads version {cls.VERSION}, got {version!r}; "
                "re-export the spec with this version of keras_cnas")
        payload = {k: v for k, v in data.items() if k not in ("space", "version")}
        return cls._from_payload(payload)

    @classmethod
    def from_json(cls, text: str) -> "Spec":
        return cls.from_dict(_loads(text))

    def key(self) -> str:
        """A stable identifier: equal specs have equal keys across processes and versions."""
        digest = hashlib.sha256(self.to_json().encode()).hexdigest()[:16]
        return f"{self.SPACE}-{digest}"


def spec_from_json(text: str) -> Spec:
    """Parses any spec's JSON, dispatching on its ``space`` tag.

    Example:
        >>> from keras_cnas.spaces import reference
        >>> spec = reference.vgg19((32, 32, 3), 10)
        >>> spec_from_json(spec.to_json()) == spec
        True
    """
    return spec_from_dict(_loads(text))


def spec_from_dict(data: Mapping[str, Any]) -> Spec:
    if not isinstance(data, Mapping):
        raise InvalidSpecError(f"spec: expected a JSON object, got {type(data).__name__}")
    tag = data.get("space")
    if tag not in SPEC_TYPES:
        raise InvalidSpecError(
            f"space: unknown spec type {tag!r}; known: {', '.join(SPEC_TYPES.names())}")
    from keras_cnas.spaces.limits import check_limits

    check_limits(data)  # hostile sizes are refused before any work (spaces.limits)
    return SPEC_TYPES.get(tag).from_dict(data)


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError) as e:  # ValueError: also 5,000-digit ints
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise InvalidSpecError(f"spec JSON: cannot parse ({why}); received "
                               f"{str(text)[:80]!r}") from None


@dataclasses.dataclass(frozen=True)
class Mutation:
    """One neighbour of a spec: what was changed and the resulting spec.

    Attributes:
        move: the kind of move, e.g. ``"add_layer"``, ``"remove_layer"``, ``"scale"``,
            ``"set"`` (a categorical decision changed).
        detail: a human-readable description, e.g. ``"conv_layers[2].n_filters x1.5"``.
        spec: the neighbour.
    """

    move: str
    detail: str
    spec: Spec


class Space(abc.ABC):
    """A search space: sampling, validation, mutation and a categorical view.

    Subclasses set ``name`` (their registry key) and implement the abstract methods.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> Spec:
        """A random valid spec of this space."""

    @abc.abstractmethod
    def validate(self, spec: Spec) -> None:
        """Raises InvalidSpecError unless ``spec`` is a valid member of this space."""

    @abc.abstractmethod
    def mutations(self, spec: Spec, rng: np.random.Generator) -> list[Mutation]:
        """Every valid one-step neighbour of ``spec`` (randomised moves use ``rng``)."""

    @abc.abstractmethod
    def decision_sizes(self) -> list[int]:
        """Number of choices of each categorical decision."""

    @abc.abstractmethod
    def to_decisions(self, spec: Spec) -> list[int]:
        """The spec as one integer per decision (inactive decisions are 0)."""

    @abc.abstractmethod
    def from_decisions(self, decisions: Sequence[int]) -> Spec:
        """Inverse of ``to_decisions``; raises InvalidSpecError if the result is invalid."""

    @abc.abstractmethod
    def get_config(self) -> dict[str, Any]:
        """JSON-compatible constructor arguments: ``type(self)(**get_config())`` rebuilds it."""

    def ordered_decisions(self) -> list[bool]:
        """Whether each decision's choices are ordered (True) or merely labels (False).

        Ordered: filters, kernel sizes, widths, depths, identity < small < big block, so
        a ±1 step is a step in one direction. Unordered: operation or block types, input
        indices, where a neighbour is any other value. The default is unordered (no order
        assumed); spaces that know better override it.
        """
        return [False] * len(self.decision_sizes())

    @property
    def empty_choice(self) -> int | None:
        """The decision value meaning "nothing here" (identity), if the space has one."""
        return None

    def contains(self, spec: Spec) -> bool:
        try:
            self.validate(spec)
        except InvalidSpecError:
            return False
        return True

    def mutate(self, spec: Spec, rng: np.random.Generator) -> Spec:
        """One random valid neighbour of ``spec`` (``spec`` itself if it has none)."""
        options = self.mutations(spec, rng)
        if not options:
            return spec
        return options[int(rng.integers(len(options)))].spec

    def to_json(self) -> str:
        return json.dumps({"space": self.name, "config": self.get_config()}, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> "Space":
        data = json.loads(text)
        return SPACES.get(data["space"])(**data["config"])

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(json.dumps(self.get_config(), sort_keys=True))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


# --- small validation helpers shared by the spec classes --------------------------------


def check_int(field: str, value: Any, low: int, high: int | None = None, fix: str = "") -> int:
    """Returns ``value`` if it is an int in [low, high], else raises InvalidSpecError."""
    if not is_int(value, numpy=True):
        raise InvalidSpecError(
            f"{field}: expected an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InvalidSpecError(f"{field}: {value} is not {allowed}{'; ' + fix if fix else ''}")
    return value


def check_shape(field: str, value: Any) -> tuple[int, int, int]:
    """An (height, width, channels) tuple of positive ints."""
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise InvalidSpecError(
            f"{field}: expected (height, width, channels), got {value!r}")
    return tuple(check_int(f"{field}[{i}]", v, 1) for i, v in enumerate(value))  # type: ignore[return-value]


def require(payload: Mapping[str, Any], field: str) -> Any:
    try:
        return payload[field]
    except KeyError:
        raise InvalidSpecError(
            f"{field}: missing; the spec JSON has fields {sorted(payload)}") from None


def neighbour_values(value: int, size: int, ordered: bool) -> list[int]:
    """The values one mutation may give a decision now at ``value``: the adjacent ones
    (±1) of an ordered decision, every other one of an unordered decision.

    Example:
        >>> neighbour_values(2, 5, ordered=True), neighbour_values(2, 5, ordered=False)
        ([1, 3], [0, 1, 3, 4])
    """
    if ordered:
        return [v for v in (value - 1, value + 1) if 0 <= v < size]
    return [v for v in range(size) if v != value]


def check_ordered(ordered: Any, sizes: Sequence[int]) -> tuple[bool, ...]:
    """``ordered`` (one bool for every decision, or one bool per decision) as a tuple.

    Raises:
        ValueError: naming ``ordered`` when it is neither.
    """
    if isinstance(ordered, (bool, np.bool_)):
        return (bool(ordered),) * len(sizes)
    if isinstance(ordered, Sequence) and not isinstance(ordered, str) \
            and len(ordered) == len(sizes) and all(isinstance(o, (bool, np.bool_)) for o in ordered):
        return tuple(bool(o) for o in ordered)
    raise ValueError(f"ordered: expected True / False or one bool per decision "
                     f"({len(sizes)} of them), got {ordered!r:.80}")


def decisions_key(decisions: Sequence[int], sizes: Sequence[int]) -> str:
    """``"02012100"`` when every decision has at most 10 choices, else comma-separated."""
    if all(size <= 10 for size in sizes):
        return "".join(str(d) for d in decisions)
    return ",".join(str(d) for d in decisions)
