"""Command-line settings a strategy declares for itself (``tools/search.py`` defines them).

Each registered strategy lists its :class:`StrategyFlag`\\ s in ``Strategy.flags``: the flag's
name, default, help and bounds, and the constructor argument it sets. ``tools/search.py``
defines every declared flag once (grouped by strategy in ``--help``), and
:meth:`Strategy.from_flags` builds the strategy from the parsed values, so a default is
written in one place: here, next to the strategy. A flag two strategies share (Reinforce and
B-ENAS both have a controller) is declared once, in :data:`CONTROLLER_FLAGS`. Pure Python.

Example:
    >>> flag = StrategyFlag("num_random", 50, "random samples", argument="num_samples", low=0)
    >>> flag.argument_value(12)
    12
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

__all__ = ["CONTROLLER_FLAGS", "StrategyFlag", "parse_penalty_bounds"]

#: absl flag kinds a strategy can declare.
KINDS = ("integer", "float", "enum", "list")


@dataclasses.dataclass(frozen=True)
class StrategyFlag:
    """One ``--<name>`` flag and the constructor argument it sets.

    Attributes:
        name: the flag's name (``--num_random``).
        default: its default (also the argument's when the flag is not given).
        help: what it does (the strategy's name is the ``--help`` group it appears in).
        argument: the constructor argument; default ``name``.
        kind: ``"integer"``, ``"float"``, ``"enum"`` (``choices``) or ``"list"``.
        low, high: the flag's bounds (absl validators), or None.
        choices: an enum's values.
        convert: flag value -> argument (e.g. ``cost=bound`` items -> a dict); raises
            ValueError on a bad value.
    """

    name: str
    default: Any
    help: str
    argument: str | None = None
    kind: str = "integer"
    low: float | None = None
    high: float | None = None
    choices: Sequence[str] = ()
    convert: Callable[[Any], Any] | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "enum" and self.default not in self.choices:
            raise ValueError(f"{self.name}: default {self.default!r} is not one of {self.choices}")

    @property
    def target(self) -> str:
        """The constructor argument this flag sets."""
        return self.argument or self.name

    def argument_value(self, value: Any) -> Any:
        """The constructor argument for a parsed flag ``value`` (None: the flag's default)."""
        value = self.default if value is None else value
        return self.convert(value) if self.convert is not None else value


def parse_penalty_bounds(items: Sequence[str] | None) -> dict[str, float]:
    """``["train_seconds=30", "params=5e4"]`` as ``{cost: bound}``.

    Example:
        >>> parse_penalty_bounds(["train_seconds=30"])
        {'train_seconds': 30.0}
    """
    bounds: dict[str, float] = {}
    for item in items or ():
        name, _, bound = str(item).partition("=")
        try:
            value = float(bound)
        except ValueError:
            raise ValueError(f"penalty_bounds: expected cost=bound items such as "
                             f"train_seconds=30, got {item!r}") from None
        if not name.strip() or not value > 0:
            raise ValueError(f"penalty_bounds: {item!r}: name a cost and a positive bound, "
                             "e.g. train_seconds=30")
        bounds[name.strip()] = value
    return bounds


#: The REINFORCE controller and reward, shared by Reinforce and B-ENAS (argument names are
#: Reinforce's; B-ENAS maps them onto its config).
CONTROLLER_FLAGS = (
    StrategyFlag("alpha", 0.1, "Weight of the cost penalty in the reward accuracy - alpha * "
                 "penalty (paper: 0.1).", kind="float", low=0),
    StrategyFlag("penalty_beta", 1.0, "Slope of the penalty above a bound (eq. 3's beta; "
                 "paper: 1).", argument="beta", kind="float", low=0),
    StrategyFlag("penalty_bounds", [], "Soft bounds cost=U penalised in the reward on top of "
                 "the hard --max_* bounds, e.g. train_seconds=30,params=50000.", kind="list",
                 convert=parse_penalty_bounds),
    StrategyFlag("controller_learning_rate", 1e-3, "Controller Adam step (paper: 1e-3).",
                 argument="learning_rate", kind="float", low=1e-9),
    StrategyFlag("entropy_weight", 0.1, "Entropy bonus in the reward.", kind="float", low=0),
    StrategyFlag("lstm_size", 64, "Controller LSTM width.", low=1),
)
