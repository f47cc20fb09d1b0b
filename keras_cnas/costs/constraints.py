"""Hard upper bounds on costs: ``Constraints(max_params=..., max_flops=...)``, byte sizes
with units (``parse_bytes("64KiB")``) and device budgets (``Constraints.for_device``)."""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

from keras_cnas.costs.report import CostReport
from keras_cnas.errors import UnknownCostError

CostsLike = CostReport | Mapping[str, float]

# name -> that device's budget, for Constraints.for_device. Registered by keras_cnas._plugins
# (keras_cnas.devices sits above costs: it turns presets into Constraints).
_DEVICE_BUDGET: Callable[[str], "Constraints"] | None = None


def register_device_budgets(budget: Callable[[str], "Constraints"]) -> None:
    """Sets the lookup behind :meth:`Constraints.for_device` (done once, by the package)."""
    global _DEVICE_BUDGET
    _DEVICE_BUDGET = budget


class Violation(NamedTuple):
    """A broken bound: ``value`` of ``cost`` exceeds ``bound``."""

    cost: str
    bound: float
    value: float

    @property
    def excess(self) -> float:
        return self.value - self.bound

    @property
    def ratio(self) -> float:
        """value / bound: 1.25 means 25 % over."""
        return self.value / self.bound

    def __str__(self) -> str:
        return f"{self.cost} = {_number(self.value)} > max {_number(self.bound)} ({self.ratio - 1:+.1%})"


#: Byte units :func:`parse_bytes` accepts (case-insensitive): binary (KiB = 1024) and
#: decimal (kB = 1000), as datasheets and ``ls`` use them.
BYTE_UNITS = {"": 1, "b": 1, "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3,
              "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3}
_SIZE = re.compile(r"\s*([-+]?[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*\Z", re.IGNORECASE)


def parse_bytes(text: str | float, name: str = "size") -> int:
    """A byte size written with an optional unit, as a whole number of bytes (rounded down).

    Example:
        >>> parse_bytes("64KiB"), parse_bytes("0.25MiB"), parse_bytes("200kB"), parse_bytes("65536")
        (65536, 262144, 200000, 65536)

    Raises:
        ValueError: not a positive number with one of :data:`BYTE_UNITS`; the message names
            ``name``, the text and the accepted units.
    """
    if isinstance(text, bool):
        raise ValueError(f"{name}: expected a size such as 65536, 64KiB or 0.25MiB, got {text!r}")
    if isinstance(text, (int, float)):
        value, unit = float(text), ""
    else:
        match = _SIZE.match(str(text))
        if not match or match.group(2).lower() not in BYTE_UNITS:
            raise ValueError(
                f"{name}: cannot read {text!r} as a size; write bytes (65536) or a number with "
                f"a unit: {', '.join(u for u in ('KiB', 'MiB', 'GiB', 'kB', 'MB', 'GB'))} "
                "(e.g. 64KiB, 0.25MiB)")
        value, unit = float(match.group(1)), match.group(2).lower()
    size = math.floor(value * BYTE_UNITS[unit])
    if not math.isfinite(value) or size < 1:
        raise ValueError(f"{name}: expected a positive number of bytes, got {text!r}; drop the "
                         "flag to leave the size unbounded")
    return size


#: Costs shown in KiB (the units a firmware's linker map uses).
KIB_COSTS = ("arena_bytes", "tflite_bytes")


def kib(value: float) -> str:
    """Bytes as KiB for tables and progress lines (``"15.5KiB"``)."""
    return f"{value / 1024:.1f}KiB"


def _number(value: float) -> str:
    """Whole numbers with thousands separators (6,000,000), others to 6 significant digits."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.6g}"


class Constraints:
    """Hard upper bounds on any cost an estimate or an evaluator reports.

    Each keyword is ``max_<cost name>``: ``max_params``, ``max_madds``, ``max_flops``,
    ``max_memory_bytes``, ``max_peak_activation_bytes``, or a measured cost such as
    ``max_latency_ms`` or ``max_arena_bytes``. Bounds are checked only against costs a
    report contains (analytic ones before building, measured ones on the artifact);
    :meth:`check_available` catches a bound on a cost that nothing reports.

    Example:
        >>> budget = Constraints(max_params=100_000, max_madds=5e6)
        >>> budget.satisfied({"params": 90_000, "madds": 6e6})
        False
        >>> [str(v) for v in budget.violations({"params": 90_000, "madds": 6e6})]
        ['madds = 6,000,000 > max 5,000,000 (+20.0%)']
    """

    def __init__(self, **bounds: float):
        self._bounds: dict[str, float] = {}
        for key, value in bounds.items():
            if not key.startswith("max_") or len(key) == 4:
                raise ValueError(
                    f"{key}={value!r}: constraint keywords are max_<cost name>, e.g. "
                    "max_params=1e6 or max_memory_bytes=200_000")
            if value is None:
                continue  # lets callers pass optional flags straight through
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value <= 0:
                raise ValueError(
                    f"{key}: expected a positive number, got {value!r}; a bound must be > 0 "
                    "(drop the keyword to leave that cost unbounded)")
            self._bounds[key[4:]] = value

    @property
    def bounds(self) -> dict[str, float]:
        """Cost name -> upper bound."""
        return dict(self._bounds)

    def __bool__(self) -> bool:
        return bool(self._bounds)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Constraints) and self._bounds == other._bounds

    def __repr__(self) -> str:
        return "Constraints(" + ", ".join(f"max_{k}={v!r}" for k, v in self._bounds.items()) + ")"

    def violations(self, report: CostsLike) -> list[Violation]:
        """Every bound that ``report`` breaks, among the costs it contains."""
        costs = _as_mapping(report)
        return [Violation(name, bound, costs[name]) for name, bound in self._bounds.items()
                if costs.get(name) is not None and costs[name] > bound]

    def satisfied(self, report: CostsLike) -> bool:
        """True when no cost in ``report`` exceeds its bound."""
        return not self.violations(report)

    def missing(self, report: CostsLike) -> list[str]:
        """Bounded costs that ``report`` does not contain (to be checked later, measured)."""
        costs = _as_mapping(report)
        return [name for name in self._bounds if costs.get(name) is None]

    def check_available(self, available: Iterable[str]) -> None:
        """Raises UnknownCostError if a bound names a cost not in ``available``."""
        available = sorted(set(available))
        unknown = [name for name in self._bounds if name not in available]
        if unknown:
            raise UnknownCostError(
                f"constraints bound {', '.join('max_' + n for n in unknown)}, but nothing in "
                f"this search reports {'that cost' if len(unknown) == 1 else 'those costs'}; "
                f"available: {', '.join('max_' + n for n in available)}")

    @classmethod
    def for_device(cls, name: str) -> "Constraints":
        """The budget of a named target in :mod:`keras_cnas.devices`: ``max_arena_bytes``
        (its SRAM less the documented reserve) and ``max_tflite_bytes`` (its flash less the
        reserve). Unknown names raise ``ValueError`` listing the known ones.

        Example:
            >>> Constraints.for_device("nrf52840")
            Constraints(max_arena_bytes=196608, max_tflite_bytes=786432)
        """
        if _DEVICE_BUDGET is None:
            raise RuntimeError("no device presets: import keras_cnas (it registers them)")
        return _DEVICE_BUDGET(name)

    @classmethod
    def fraction_of(cls, reference: CostsLike, fraction: float,
                    costs: Sequence[str] = ("memory_bytes", "flops")) -> "Constraints":
        """Bounds at ``fraction`` of a reference's costs (the MIT-LL paper's Table 2).

        Example:
            >>> Constraints.fraction_of({"memory_bytes": 4e6, "flops": 1e8}, 0.5)
            Constraints(max_memory_bytes=2000000.0, max_flops=50000000.0)
        """
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
                or not 0 < fraction <= 1e6:
            raise ValueError(f"fraction: expected a positive number such as 0.5, got {fraction!r}")
        ref = _as_mapping(reference)
        absent = [c for c in costs if ref.get(c) is None]
        if absent:
            raise UnknownCostError(
                f"costs: the reference does not report {absent}; it has {sorted(ref)}")
        return cls(**{f"max_{c}": fraction * ref[c] for c in costs})

    def merged(self, other: "Constraints") -> "Constraints":
        """Both sets of bounds; where both bound a cost, the tighter one."""
        bounds = dict(self._bounds)
        for name, value in other._bounds.items():
            bounds[name] = min(value, bounds.get(name, value))
        return Constraints(**{f"max_{k}": v for k, v in bounds.items()})

    def to_dict(self) -> dict[str, float]:
        return {f"max_{k}": v for k, v in self._bounds.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Constraints":
        return cls(**data)


def _as_mapping(report: CostsLike) -> Mapping[str, float]:
    return report.as_dict() if isinstance(report, CostReport) else report
