"""A plain vector of categorical decisions: tabular benchmarks and generic strategies.

A :class:`CategoricalSpace` may carry a *cost table* (``key -> {cost: value}``, e.g. the
params and FLOPs columns of NAS-Bench-Macro), which ``keras_cnas.costs.estimate(spec,
space=space)`` answers from, so that constraints are checked
before a table query exactly as analytic costs are checked before training.

Pure Python + NumPy.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np

from keras_cnas._checks import is_int, is_real
from keras_cnas.errors import DataError, InvalidSpecError
from keras_cnas.spaces.base import (
    SPACES,
    SPEC_TYPES,
    Mutation,
    Space,
    Spec,
    check_int,
    check_ordered,
    decisions_key,
    neighbour_values,
    require,
)

#: A per-architecture table: spec key -> {field: value}.
Table = Mapping[str, Mapping[str, Any]]


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
    """A vector of categorical decisions, optionally with a per-architecture cost table.

    Args:
        decision_sizes: the number of choices of each decision.
        empty_choice: the value meaning "nothing here" (for example an identity layer),
            which lazy greedy search treats as the empty set; None if there is none.
        costs: a cost table ``key -> {cost name: value}`` (``params``, ``flops``,
            ``latency_ms``, ...), inline as a mapping or as the path of a JSON file holding
            one (see :func:`load_table`). ``keras_cnas.costs.estimate(spec, space=self)``
            answers from it. None: the space has no costs.
        cost_fields: which fields of each row are costs (e.g. ``["params", "flops"]`` of a
            benchmark table whose rows also hold accuracies); None keeps every field, and
            then every field must be a number.
        key_offset: the digit the table's keys use for a decision's first choice. Spec
            keys number choices from 0 (``"0312"``); a table whose keys number them from 1
            (Channel-Bench-Macro's ``"1423"``) needs ``key_offset=1``. The table is re-keyed
            once, on load, so that it is indexed by ``spec.key()``.
        ordered: whether the choices of each decision are ordered (widths, depths,
            identity < small < big block), one bool for all or one per decision. Coordinate
            descent steps ±1 along an ordered decision and mutations go to the adjacent
            values; an unordered decision (operation types) jumps to any other value.
            Default False: choices are labels.

    The configuration stays JSON-compatible: a table given as a path is stored as the
    (absolute) path, an inline one as itself.

    Example:
        >>> space = CategoricalSpace([3] * 8, empty_choice=0, ordered=True)
        >>> space.from_decisions([0, 2, 0, 1, 2, 1, 0, 0]).key()
        '02012100'
        >>> line = CategoricalSpace([4], ordered=True)
        >>> [m.detail for m in line.mutations(line.spec([1]), None)]
        ['decisions[0]: 1 -> 0', 'decisions[0]: 1 -> 2']
        >>> priced = CategoricalSpace([2, 2], costs={"01": {"params": 10}, "11": {"params": 20}},
        ...                           cost_fields=["params"])
        >>> from keras_cnas.costs import estimate
        >>> estimate(space=priced, spec=priced.from_decisions([1, 1])).params
        20
    """

    name = "categorical"

    def __init__(self, decision_sizes: Sequence[int], empty_choice: int | None = None,
                 costs: Table | str | os.PathLike[str] | None = None, *,
                 cost_fields: Sequence[str] | None = None, key_offset: int = 0,
                 ordered: bool | Sequence[bool] = False):
        if not isinstance(decision_sizes, Sequence) or not decision_sizes:
            raise ValueError(
                f"decision_sizes: expected a non-empty list of choice counts, got {decision_sizes!r}")
        self._sizes = tuple(check_int(f"decision_sizes[{i}]", s, 1)
                            for i, s in enumerate(decision_sizes))
        self._ordered = check_ordered(ordered, self._sizes)
        if empty_choice is not None:
            check_int("empty_choice", empty_choice, 0, min(self._sizes) - 1,
                      fix="it must be a valid value of every decision")
        self._empty_choice = empty_choice
        if not is_int(key_offset) or key_offset < 0:
            raise ValueError(f"key_offset: expected a non-negative integer (1 for tables whose "
                             f"keys number choices from 1), got {key_offset!r}")
        if cost_fields is not None and (isinstance(cost_fields, str) or not all(
                isinstance(f, str) for f in cost_fields)):
            raise ValueError(f"cost_fields: expected a list of field names such as "
                             f"['params', 'flops'], got {cost_fields!r}")
        self._key_offset = key_offset
        self._cost_fields = None if cost_fields is None else list(cost_fields)
        self._costs_arg: Any = None
        self._cost_table: dict[str, dict[str, float]] | None = None
        if costs is None:
            if cost_fields is not None or key_offset:
                raise ValueError("cost_fields / key_offset: they describe a cost table; pass "
                                 "costs= too, or drop them")
            return
        if isinstance(costs, (str, os.PathLike)):
            path = pathlib.Path(os.fspath(costs)).expanduser().resolve()
            self._costs_arg = str(path)
            table = load_table(path, fields=self._cost_fields, key_offset=key_offset)
        elif isinstance(costs, Mapping):
            self._costs_arg = costs
            table = rekey_table(costs, fields=self._cost_fields, key_offset=key_offset)
        else:
            raise ValueError(f"costs: expected a mapping key -> {{cost: value}} or the path of a "
                             f"JSON table, got {type(costs).__name__}")
        self._cost_table = self._checked_costs(table)

    def _checked_costs(self, table: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
        """Every key must be a spec of this space and every cost a number: checked once
        here so that a wrong ``key_offset`` or a non-cost column fails at construction,
        not in the middle of a search."""
        hint = ("; if the table numbers choices from 1, pass key_offset=1" if not self._key_offset
                else "")
        for key, row in table.items():
            parts = key.split(",") if "," in key else list(key)
            if len(parts) != len(self._sizes):
                raise DataError(
                    f"costs: key {key!r} has {len(parts)} decisions but the space has "
                    f"{len(self._sizes)} (decision_sizes={list(self._sizes)})")
            for i, (part, size) in enumerate(zip(parts, self._sizes)):
                if not (part.isdigit() and int(part) < size):
                    raise DataError(
                        f"costs: key {_original_key(key, self._key_offset)!r} gives decision "
                        f"{i} the choice {part!r} (after key_offset={self._key_offset}), which is "
                        f"not in [0, {size - 1}]{hint}")
            for field, value in row.items():
                if not is_real(value) \
                        or not math.isfinite(value):
                    raise DataError(
                        f"costs[{key!r}][{field!r}]: expected a finite number, got {value!r:.60}; "
                        "pass cost_fields=[...] to keep only the cost columns")
        return table  # type: ignore[return-value]

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"decision_sizes": list(self._sizes),
                                  "empty_choice": self._empty_choice}
        if self._cost_table is not None:
            config["costs"] = (self._costs_arg if isinstance(self._costs_arg, str)
                               else {k: dict(v) for k, v in self._costs_arg.items()})
            if self._cost_fields is not None:
                config["cost_fields"] = list(self._cost_fields)
            if self._key_offset:
                config["key_offset"] = self._key_offset
        if any(self._ordered):  # absent when False, so older configs still match
            config["ordered"] = (True if all(self._ordered) else list(self._ordered))
        return config

    def ordered_decisions(self) -> list[bool]:
        return list(self._ordered)

    @property
    def empty_choice(self) -> int | None:
        return self._empty_choice

    @property
    def cost_table(self) -> Mapping[str, Mapping[str, float]] | None:
        """The cost table keyed by ``spec.key()`` (re-keyed by ``key_offset``), or None."""
        return self._cost_table

    def table_costs(self, spec: Spec) -> dict[str, float]:
        """The costs of ``spec`` from the cost table, by name (``keras_cnas.costs.estimate``
        wraps them in a ``CostReport``; spaces never import the cost package).

        Raises:
            InvalidSpecError: the space has no cost table, ``spec`` is not in this space,
                or its key is not in the table.
        """
        if self._cost_table is None:
            raise InvalidSpecError(
                "spec: this CategoricalSpace has no cost table; build it with "
                "CategoricalSpace(..., costs=table_or_path)")
        self.validate(spec)
        row = self._cost_table.get(spec.key())
        if row is None:
            raise InvalidSpecError(
                f"spec: key {spec.key()!r} is not in the space's cost table "
                f"({len(self._cost_table)} rows); add it to the table or restrict the space")
        return dict(row)

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
        """Every spec that differs from ``spec`` in one decision: by ±1 on an ordered
        decision, to any other value on an unordered one."""
        self.validate(spec)
        assert isinstance(spec, CategoricalSpec)
        out = []
        d = spec.decisions
        for i, (size, ordered) in enumerate(zip(self._sizes, self._ordered)):
            for value in neighbour_values(d[i], size, ordered):
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


# --- per-architecture tables (pure Python: shared with keras_cnas.training.tabular) -------


def load_table(path: str | os.PathLike[str], *, fields: Sequence[str] | None = None,
               key_offset: int = 0) -> dict[str, dict[str, Any]]:
    """Reads a JSON table ``{key: {field: value, ...}}`` and re-keys it by ``spec.key()``.

    Args:
        path: a JSON file such as NAS-Bench-Macro's ``nas-bench-macro_cifar10.json``.
        fields: keep only these fields of each row (every row must have them); None keeps all.
        key_offset: the digit the file's keys use for a decision's first choice (1 for
            Channel-Bench-Macro, whose keys are digits 1..4); it is subtracted from every
            digit so that the result is indexed like ``CategoricalSpec.key()``.

    Returns:
        ``{spec key: {field: value}}``.

    Raises:
        FileNotFoundError: no file at ``path``.
        DataError: the file is not a JSON object of objects, a key is malformed or a row
            lacks a requested field.

    Example:
        >>> import json, tempfile
        >>> with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        ...     json.dump({"14": {"acc": 91.0, "params": 7}}, f)
        >>> load_table(f.name, key_offset=1)
        {'03': {'acc': 91.0, 'params': 7}}
    """
    path = pathlib.Path(os.fspath(path)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"table: no file at {path}; pass the path of a JSON table "
                                "{key: {field: value}} (e.g. nas-bench-macro_cifar10.json)")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"table: {path} is not valid JSON ({e})") from None
    return rekey_table(data, fields=fields, key_offset=key_offset, source=str(path))


def rekey_table(table: Any, *, fields: Sequence[str] | None = None, key_offset: int = 0,
                source: str = "the table") -> dict[str, dict[str, Any]]:
    """Checks an in-memory table, keeps ``fields`` and re-keys it (see :func:`load_table`).

    Example:
        >>> rekey_table({"21": {"acc": 0.5, "flops": 9}}, fields=["flops"], key_offset=1)
        {'10': {'flops': 9}}
    """
    if not isinstance(table, Mapping) or not table:
        raise DataError(f"table: {source} must be a non-empty JSON object "
                        f"{{key: {{field: value}}}}; got {type(table).__name__}")
    out: dict[str, dict[str, Any]] = {}
    for key, row in table.items():
        if not isinstance(row, Mapping):
            raise DataError(f"table[{key!r}]: expected an object of fields, got {row!r:.60}")
        if fields is not None:
            missing = [f for f in fields if f not in row]
            if missing:
                raise DataError(f"table[{key!r}]: has no field {missing[0]!r}; its fields are "
                                f"{sorted(row)}")
            row = {f: row[f] for f in fields}
        out[_shift_key(str(key), key_offset)] = dict(row)
    return out


def _shift_key(key: str, offset: int) -> str:
    if not offset:
        return key
    comma = "," in key
    parts = key.split(",") if comma else list(key)
    if not all(p.isdigit() and int(p) >= offset for p in parts):
        raise DataError(f"table: key {key!r} has a choice below key_offset={offset}; keys must "
                        f"be digits >= {offset} (use key_offset=0 if they number choices from 0)")
    shifted = [str(int(p) - offset) for p in parts]
    return ",".join(shifted) if comma else "".join(shifted)


def _original_key(key: str, offset: int) -> str:
    if not offset:
        return key
    comma = "," in key
    parts = key.split(",") if comma else list(key)
    shifted = [str(int(p) + offset) if p.isdigit() else p for p in parts]
    return ",".join(shifted) if comma else "".join(shifted)
