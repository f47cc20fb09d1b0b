"""A plain vector of categorical decisions: tabular benchmarks and generic strategies.

Pure Python + NumPy.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

from keras_cnas.errors import InvalidSpecError
from keras_cnas.spaces.base import (
    SPACES,
    SPEC_TYPES,
    Mutation,
    Space,
    Spec,
    check_int,
    decisions_key,
    require,
)


@dataclasses.dataclass(frozen=True)
class CategoricalSpec(Spec):
    """One value per decision; ``sizes`` says how many choices each decision has.

    Example:
        >>> spec = CategoricalSpec(decisions=(0, 2, 0, 1), sizes=(3, 3, 3, 3))
        >>> spec.key()
        '0201'
    """

    SPACE = "categorical"
    VERSION = 1

    decisions: tuple[int, ...]
    sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        sizes = tuple(check_int(f"sizes[{i}]", s, 1) for i, s in enumerate(self.sizes))
        if len(self.decisions) != len(sizes):
            raise InvalidSpecError(
                f"decisions: expected {len(sizes)} values (one per decision), got {len(self.decisions)}")
        decisions = tuple(check_int(f"decisions[{i}]", d, 0, s - 1)
                          for i, (d, s) in enumerate(zip(self.decisions, sizes)))
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "decisions", decisions)

    @classmethod
    def _trusted(cls, decisions: tuple[int, ...], sizes: tuple[int, ...]) -> "CategoricalSpec":
        """Builds a spec known to be valid (sampling, mutation) without re-checking it."""
        spec = object.__new__(cls)
        object.__setattr__(spec, "decisions", decisions)
        object.__setattr__(spec, "sizes", sizes)
        return spec

    def key(self) -> str:
        """The decisions as a string: ``"02012100"``, or comma-separated if a size > 10."""
        return decisions_key(self.decisions, self.sizes)

    def _payload(self) -> dict[str, Any]:
        return {"decisions": list(self.decisions), "sizes": list(self.sizes)}

    @classmethod
    def _from_payload(cls, payload: Mapping[str, Any]) -> "CategoricalSpec":
        decisions, sizes = require(payload, "decisions"), require(payload, "sizes")
        for field, value in (("decisions", decisions), ("sizes", sizes)):
            if not isinstance(value, list):
                raise InvalidSpecError(f"{field}: expected a list of integers, got {value!r:.80}")
        return cls(tuple(decisions), tuple(sizes))


SPEC_TYPES.add(CategoricalSpec.SPACE, CategoricalSpec)


@SPACES.register("categorical")
class CategoricalSpace(Space):
    """A vector of categorical decisions.

    Args:
        decision_sizes: the number of choices of each decision.
        empty_choice: the value meaning "nothing here" (for example an identity layer),
            which lazy greedy search treats as the empty set; None if there is none.

    Example:
        >>> space = CategoricalSpace([3] * 8, empty_choice=0)
        >>> space.from_decisions([0, 2, 0, 1, 2, 1, 0, 0]).key()
        '02012100'
    """

    name = "categorical"

    def __init__(self, decision_sizes: Sequence[int], empty_choice: int | None = None):
        if not isinstance(decision_sizes, Sequence) or not decision_sizes:
            raise ValueError(
                f"decision_sizes: expected a non-empty list of choice counts, got {decision_sizes!r}")
        self._sizes = tuple(check_int(f"decision_sizes[{i}]", s, 1)
                            for i, s in enumerate(decision_sizes))
        if empty_choice is not None:
            check_int("empty_choice", empty_choice, 0, min(self._sizes) - 1,
                      fix="it must be a valid value of every decision")
        self._empty_choice = empty_choice

    def get_config(self) -> dict[str, Any]:
        return {"decision_sizes": list(self._sizes), "empty_choice": self._empty_choice}

    @property
    def empty_choice(self) -> int | None:
        return self._empty_choice

    def spec(self, decisions: Sequence[int]) -> CategoricalSpec:
        return CategoricalSpec(tuple(decisions), self._sizes)

    def sample(self, rng: np.random.Generator) -> CategoricalSpec:
        u = rng.random(len(self._sizes)).tolist()
        return CategoricalSpec._trusted(tuple(int(x * s) for x, s in zip(u, self._sizes)), self._sizes)

    def validate(self, spec: Spec) -> None:
        if not isinstance(spec, CategoricalSpec):
            raise InvalidSpecError(f"spec: expected a CategoricalSpec, got {type(spec).__name__}")
        if spec.sizes != self._sizes:
            raise InvalidSpecError(
                f"spec.sizes: {list(spec.sizes)} differ from the space's {list(self._sizes)}")

    def mutations(self, spec: Spec, rng: np.random.Generator) -> list[Mutation]:
        """Every spec that differs from ``spec`` in exactly one decision."""
        self.validate(spec)
        assert isinstance(spec, CategoricalSpec)
        out = []
        d = spec.decisions
        for i, size in enumerate(self._sizes):
            for value in range(size):
                if value != d[i]:
                    out.append(Mutation("set", f"decisions[{i}]: {d[i]} -> {value}",
                                        CategoricalSpec._trusted(d[:i] + (value,) + d[i + 1:], self._sizes)))
        return out

    def decision_sizes(self) -> list[int]:
        return list(self._sizes)

    def to_decisions(self, spec: Spec) -> list[int]:
        self.validate(spec)
        assert isinstance(spec, CategoricalSpec)
        return list(spec.decisions)

    def from_decisions(self, decisions: Sequence[int]) -> CategoricalSpec:
        return self.spec(decisions)

