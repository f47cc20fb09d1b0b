"""Small helpers shared by the strategies: argument checks, unseen sampling, results.

Pure Python + NumPy.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Container, Mapping

import numpy as np

from keras_cnas._checks import is_int, is_real
from keras_cnas.spaces.base import Spec, spec_from_dict
from keras_cnas.strategies.base import Strategy
from keras_cnas.trial import FIDELITIES, Trial

#: Fresh samples drawn before concluding that the space has no unseen spec left. Each
#: miss means the sample was already asked for, so after this many in a row fewer than
#: about 3 % of the feasible specs can still be new.
UNSEEN_TRIES = 100


def check_count(name: str, value: Any, low: int, hint: str = "") -> int:
    """``value`` as an int >= ``low``, else ValueError naming ``name``."""
    if not is_int(value, numpy=True) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}"
                         + (f"; {hint}" if hint else ""))
    return int(value)


def check_probability(name: str, value: Any) -> float:
    if not is_real(value) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {value!r}")
    return float(value)


def check_fidelity(name: str, value: Any) -> str:
    if value not in FIDELITIES:
        raise ValueError(f"{name}: expected one of {FIDELITIES}, got {value!r}")
    return value


def sample_unseen(strategy: Strategy, seen: Container[str],
                  tries: int = UNSEEN_TRIES) -> Spec | None:
    """A feasible random spec whose key is not in ``seen``; None if ``tries`` were all seen.

    Raises:
        InfeasibleConstraintsError: through ``strategy.sample_feasible`` when the
            constraints reject too many samples in a row.
    """
    for _ in range(tries):
        spec = strategy.sample_feasible()
        if spec.key() not in seen:
            return spec
    return None


def budget_use(costs: Mapping[str, float], constraints: Any) -> float:
    """How much of its tightest-used bound a spec takes: the least ``cost / bound`` over the
    bounded costs that ``costs`` prices (0.0 with no bound priced).

    Example:
        >>> from keras_cnas.costs import Constraints
        >>> budget_use({"params": 50, "madds": 10}, Constraints(max_params=100, max_madds=100))
        0.1
    """
    uses = [costs[name] / bound for name, bound in constraints.bounds.items()
            if costs.get(name) is not None and bound > 0]
    return min(uses) if uses else 0.0


def sample_fullest(strategy: Strategy, seen: Container[str], draws: int) -> Spec | None:
    """Of ``draws`` feasible unseen random specs, the one that uses most of the budget
    (:func:`budget_use`); ``draws=1`` is a plain :func:`sample_unseen`. Pricing is cached and
    needs no training, so this is a zero-cost prior: under a budget the networks that use
    more of it tend to train to higher accuracy (docs/results.md, real_task)."""
    context = strategy.context
    specs = [spec for spec in (sample_unseen(strategy, seen) for _ in range(draws))
             if spec is not None]
    if not specs:
        return None
    return max(specs, key=lambda spec: budget_use(context.pricer.check(spec).costs,
                                                  context.constraints))


def probe_costs(context: Any) -> dict[str, Any]:
    """The cost names (and values) the search's cost function reports for a random spec;
    empty for a space without costs (a plain ``CategoricalSpace``). A throwaway RNG keeps
    the strategy's own untouched."""
    from keras_cnas.errors import InvalidSpecError

    try:
        return context.pricer.costs(context.space.sample(np.random.default_rng(0))).as_dict()
    except InvalidSpecError:
        return {}


def exhausted_reason(asked: int) -> str:
    """The stop reason of a strategy that found no unseen feasible spec."""
    return (f"no unseen feasible spec found in {UNSEEN_TRIES} samples after {asked} "
            "candidates: the feasible part of the space looks exhausted")


def split_budget(total: int, parts: "list[int]") -> list[int]:
    """``total`` split in proportion to ``parts`` (largest remainders), every non-zero part
    keeping at least one trial while ``total`` allows.

    Example:
        >>> split_budget(200, [50, 50, 20]), split_budget(3, [50, 50, 20])
        ([83, 83, 34], [1, 1, 1])
    """
    weight = sum(parts)
    raw = [total * p / weight for p in parts]
    out = [int(math.floor(r)) for r in raw]
    for i in sorted(range(len(parts)), key=lambda i: (out[i] - raw[i], -i))[:total - sum(out)]:
        out[i] += 1
    for i, p in enumerate(parts):  # a phase the plan has keeps one trial, taken from the largest
        if p and not out[i] and total >= sum(1 for q in parts if q):
            out[max(range(len(out)), key=lambda j: out[j])] -= 1
            out[i] = 1
    return out


class TrialBudget:
    """Mixin of a strategy whose plan is one count, ``num_trials``: ``max_trials`` sets it
    (the base class's :attr:`~keras_cnas.strategies.base.Strategy.budget_field` does the
    work)."""

    num_trials: int
    budget_field = "num_trials"


@dataclasses.dataclass(frozen=True)
class Result:
    """A completed trial as a strategy remembers it (JSON via ``to_dict``).

    Attributes:
        id: the trial id.
        fidelity: the fidelity it was evaluated at.
        score: ``trial.score`` (higher is better, finite).
        spec: the architecture.
        info: the strategy's bookkeeping the candidate carried (the move, the parent).
    """

    id: int
    fidelity: str
    score: float
    spec: Spec
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_trial(cls, trial: Trial, info: Mapping[str, Any] | None = None) -> "Result":
        assert trial.score is not None and math.isfinite(trial.score)
        return cls(int(trial.id), trial.fidelity, float(trial.score), trial.spec,
                   dict(trial.info if info is None else info))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "fidelity": self.fidelity, "score": self.score,
                "spec": self.spec.to_dict(), "info": dict(self.info)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Result":
        return cls(int(data["id"]), str(data["fidelity"]), float(data["score"]),
                   spec_from_dict(data["spec"]), dict(data.get("info") or {}))
