"""The ask/tell strategy interface and the constraint filter every strategy uses.

A strategy never trains anything: it proposes candidates (``ask``) and learns from
finished trials (``tell``). Its whole state, RNG included, is a JSON-compatible dict
(``state_dict``), snapshotted by the engine after every ask and tell so a killed search
resumes exactly. Pure Python + NumPy.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from keras_cnas._checks import is_int
from keras_cnas.costs import Constraints, CostReport
from keras_cnas.costs.pricer import Pricer, Verdict
from keras_cnas.errors import InfeasibleConstraintsError
from keras_cnas.registry import Registry
from keras_cnas.strategies.flags import StrategyFlag
from keras_cnas.spaces.base import Space, Spec
from keras_cnas.trial import Candidate, Trial

#: Strategies by name (``--strategy``); register new ones here.
STRATEGIES: Registry[type["Strategy"]] = Registry("strategy")


@dataclasses.dataclass
class SearchContext:
    """What the engine hands a strategy: the space, the hard bounds and the pricer.

    Attributes:
        space: the search space.
        constraints: hard upper bounds; priced ones (analytic, and the deployment costs
            ``arena_bytes`` / ``tflite_bytes`` of the export the search measures) are
            checked before a candidate is asked for, measured ones by the engine on the
            trained artifact.
        pricer: prices a spec once and checks it (:class:`~keras_cnas.costs.pricer.Pricer`);
            a plain cost function ``spec -> CostReport`` is wrapped in one.
    """

    space: Space
    constraints: Constraints
    pricer: Pricer | Callable[[Spec], CostReport]

    def __post_init__(self) -> None:
        if not isinstance(self.pricer, Pricer):
            self.pricer = Pricer(self.constraints, estimate=self.pricer)


class Strategy(abc.ABC):
    """Base class of every search strategy.

    Subclasses implement ``ask`` / ``tell``, ``get_config`` and ``_state`` /
    ``_load_state``; they call :meth:`feasible` or :meth:`sample_feasible` so that
    infeasible proposals are counted and a hopeless search stops with
    :class:`InfeasibleConstraintsError` instead of looping forever.

    Args:
        max_rejections: infeasible proposals in a row after which the search stops.
    """

    name: ClassVar[str]

    def __init__(self, *, max_rejections: int = 2000):
        if not is_int(max_rejections) or max_rejections < 1:
            raise ValueError(f"max_rejections: expected a positive integer, got {max_rejections!r}")
        self.max_rejections = max_rejections
        self._context: SearchContext | None = None
        self.rng = np.random.default_rng(0)
        self.rejections = 0  # infeasible proposals in total
        self.consecutive_rejections = 0
        self.cheapest: dict[str, float] = {}  # lowest value of each bounded cost seen
        # Why the last ask() proposed nothing although budget was left (the engine reports
        # it when a search ends early); None while the strategy still has proposals.
        self.stop_reason: str | None = None
        Strategy._reset(self)  # the base's part: a subclass's may need its own settings first

    # --- engine-facing API ------------------------------------------------------------

    def setup(self, context: SearchContext, seed: int = 0) -> None:
        """Binds the strategy to a search; called once by the engine before any ask. Clears
        the per-search bookkeeping (:meth:`_reset`), so a strategy object can run twice."""
        self._context = context
        self.rng = np.random.default_rng(seed)
        self._reset()

    @property
    def context(self) -> SearchContext:
        if self._context is None:
            raise RuntimeError(f"{type(self).__name__}.setup(context) must be called before ask()")
        return self._context

    @abc.abstractmethod
    def ask(self) -> Candidate | None:
        """The next candidate, or None when there is nothing to propose now.

        None while trials are still running means "ask again after the next tell" (a
        sequential step); None with nothing running ends the search.
        """

    @abc.abstractmethod
    def tell(self, trial: Trial) -> None:
        """A finished trial (COMPLETED, FAILED or INFEASIBLE) of a candidate it asked for."""

    def report(self) -> dict[str, Any]:
        """Strategy-specific results for ``summary.json`` (e.g. RCAS's search path)."""
        return {}

    #: Command-line flags this strategy declares (``tools/search.py --strategy=<name>``):
    #: each sets one constructor argument (:mod:`keras_cnas.strategies.flags`).
    flags: ClassVar[tuple[StrategyFlag, ...]] = ()
    #: Whether ``--max_trials`` sets :attr:`budget_field` when the flags build the strategy.
    flag_budget: ClassVar[bool] = False
    #: ``"module:function"`` of a driver that runs the whole search for this strategy
    #: (B-ENAS trains shared weights before any trial); None: the engine's loop.
    driver: ClassVar[str | None] = None

    @classmethod
    def flag_arguments(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """Constructor arguments from parsed flag ``values`` (flag name -> value).

        Raises:
            ValueError: a flag's value cannot be converted (naming the flag).
        """
        args = {flag.target: flag.argument_value(values.get(flag.name)) for flag in cls.flags}
        if cls.flag_budget and cls.budget_field is not None and values.get("max_trials"):
            args[cls.budget_field] = values["max_trials"]
        return args

    @classmethod
    def from_flags(cls, values: Mapping[str, Any]) -> "Strategy":
        """The strategy its declared flags describe (missing ones take their defaults).

        Example:
            >>> from keras_cnas.strategies import RandomSearch
            >>> RandomSearch.from_flags({"num_random": 7}).num_samples
            7
        """
        return cls(**cls.flag_arguments(values))

    def check_space(self, space: Any) -> None:
        """Refuses (ValueError naming ``space``) a space this strategy cannot search;
        called before a search starts. Default: any space."""
        del space

    #: The constructor argument that is the whole plan (``"num_trials"``, ``"num_samples"``)
    #: of a strategy whose plan is one count: :attr:`planned_trials` reads it and
    #: :meth:`set_budget` sets it. None: the strategy plans its own phases.
    budget_field: ClassVar[str | None] = None

    @property
    def planned_trials(self) -> int | None:
        """How many trials the strategy's own phases plan (None: unbounded)."""
        return None if self.budget_field is None else getattr(self, self.budget_field)

    def set_budget(self, max_trials: int) -> None:
        """Plans for ``max_trials`` trials (``search(max_trials=...)``, ``--max_trials``);
        called before ``setup``. Each strategy scales its own phase counts so that it
        spends the whole budget; this default sets :attr:`budget_field` if there is one, and
        otherwise (a fixed plan) leaves the plan as it is."""
        if self.budget_field is not None:
            if not is_int(max_trials, numpy=True) or max_trials < 1:
                raise ValueError(f"max_trials: expected an integer >= 1, got {max_trials!r}")
            setattr(self, self.budget_field, int(max_trials))

    # --- the bookkeeping every strategy keeps ---------------------------------------------

    def _reset(self) -> None:
        """Clears what one search accumulates: ``asked`` (candidates proposed) and the keys
        of the specs asked for, in order. Subclasses extend it (calling ``super()._reset()``)
        with their own per-search state; :meth:`setup` calls it."""
        self.asked = 0
        self._asked_keys: list[str] = []
        self._asked_set: set[str] = set()

    def mark_asked(self, spec: Spec) -> None:
        """Counts a proposal of ``spec`` and remembers its key (:meth:`was_asked`)."""
        key = spec.key()
        self.asked += 1
        self._asked_keys.append(key)
        self._asked_set.add(key)

    def was_asked(self, key: str) -> bool:
        """Whether the spec with this ``key()`` was proposed in this search."""
        return key in self._asked_set

    def _asked_state(self) -> dict[str, Any]:
        """``{"asked": n, "seen": [keys in order]}`` for a subclass's ``_state``."""
        return {"asked": self.asked, "seen": list(self._asked_keys)}

    def _load_asked_state(self, asked: Any, seen: Any) -> None:
        """Inverse of :meth:`_asked_state` (the count and the keys, as stored)."""
        self.asked = int(asked)
        self._asked_keys = [str(k) for k in seen]
        self._asked_set = set(self._asked_keys)

    @abc.abstractmethod
    def get_config(self) -> dict[str, Any]:
        """JSON-compatible constructor arguments."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: RNG state, counters, subclass state."""
        return {"rng": self.rng.bit_generator.state, "rejections": self.rejections,
                "consecutive_rejections": self.consecutive_rejections,
                "cheapest": dict(self.cheapest), "strategy": self._state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        self.rejections = int(state["rejections"])
        self.consecutive_rejections = int(state["consecutive_rejections"])
        self.cheapest = dict(state["cheapest"])
        self._load_state(state["strategy"])

    @abc.abstractmethod
    def _state(self) -> dict[str, Any]:
        """The subclass's own JSON-compatible state."""

    @abc.abstractmethod
    def _load_state(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``_state``."""

    # --- helpers for subclasses ------------------------------------------------------

    def check(self, spec: Spec) -> Verdict:
        """Prices ``spec`` once and checks the priced constraints; counts a rejection and
        stops a hopeless search.

        Returns:
            The pricer's :class:`~keras_cnas.costs.pricer.Verdict` (truthy when feasible),
            whose ``costs`` a strategy may use to learn from a rejection.

        Raises:
            InfeasibleConstraintsError: after ``max_rejections`` infeasible proposals in a
                row, naming each bound and the cheapest value seen for it.
        """
        context = self.context
        if not context.constraints:
            self.consecutive_rejections = 0
            return Verdict(True, {})
        verdict = context.pricer.check(spec)
        costs = verdict.costs
        for name in context.constraints.bounds:
            if costs.get(name) is not None:
                self.cheapest[name] = min(self.cheapest.get(name, float("inf")), costs[name])
        if verdict:
            self.consecutive_rejections = 0
        else:
            self.count_rejection()
        return verdict

    def feasible(self, spec: Spec) -> bool:
        """``bool(self.check(spec))``."""
        return bool(self.check(spec))

    def count_rejection(self, message: Callable[[], str] | None = None) -> None:
        """Counts one rejected proposal; after ``max_rejections`` in a row raises
        :class:`InfeasibleConstraintsError` with ``message()`` (default: the bounds and the
        cheapest costs seen)."""
        self.rejections += 1
        self.consecutive_rejections += 1
        if self.consecutive_rejections >= self.max_rejections:
            raise InfeasibleConstraintsError((message or self.infeasible_message)())

    def infeasible_message(self) -> str:
        bounds = self.context.constraints.bounds
        seen = ", ".join(
            f"{name} {self.cheapest[name]:,.6g} vs max_{name}={bound:,.6g}"
            + (f" ({self.cheapest[name] / bound:.3g}x)" if self.cheapest[name] > bound else "")
            for name, bound in bounds.items() if name in self.cheapest)
        broken = [f"max_{n}" for n, b in bounds.items() if self.cheapest.get(n, 0) > b]
        fix = (f"raise {', '.join(broken)} to at least the cheapest value seen"
               if broken else "the bounds are met one at a time but not together: relax one")
        return (f"{self.max_rejections} proposals in a row broke the hard constraints "
                f"{self.context.constraints}; the cheapest costs seen: {seen}. Fix: {fix}, "
                "or shrink the search space (fewer or narrower layers)")

    def sample_feasible(self) -> Spec:
        """A random spec of the space that meets the analytic constraints (bounded tries)."""
        for _ in range(self.max_rejections):
            spec = self.context.space.sample(self.rng)
            if self.feasible(spec):
                return spec
        raise InfeasibleConstraintsError(self.infeasible_message())  # pragma: no cover

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
