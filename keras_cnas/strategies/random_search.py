"""Constrained random search: Algorithm I of the MIT-LL Monte Carlo paper.

Pure Python + NumPy.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from keras_cnas.strategies._common import (
    check_count,
    check_fidelity,
    exhausted_reason,
    sample_unseen,
)
from keras_cnas.strategies.flags import StrategyFlag
from keras_cnas.strategies.base import STRATEGIES, SearchContext, Strategy
from keras_cnas.trial import Candidate, Trial

logger = logging.getLogger(__name__)


@STRATEGIES.register("random")
class RandomSearch(Strategy):
    """Rejection sampling under the hard constraints (Algorithm I).

    Each ask draws specs from the space until one meets the analytic constraints
    (rejections are counted; too many in a row stop the search with
    ``InfeasibleConstraintsError``) and has not been asked for before.

    Args:
        num_samples: how many candidates to propose (its ``planned_trials``).
        fidelity: ``"full"`` (train to convergence) or ``"traction"`` (a few epochs).
        max_rejections: infeasible samples in a row after which the search stops.

    Example:
        >>> from keras_cnas.costs import Constraints, estimate
        >>> from keras_cnas.spaces import CategoricalSpace
        >>> strategy = RandomSearch(num_samples=2)
        >>> strategy.setup(SearchContext(CategoricalSpace([4, 4]), Constraints(), estimate))
        >>> first, second = strategy.ask(), strategy.ask()
        >>> first.phase, first.fidelity, first.spec != second.spec, strategy.ask()
        ('random', 'full', True, None)
    """

    name = "random"
    #: --num_random (shared with Monte Carlo) when --max_trials is not given.
    flags = (StrategyFlag("num_random", 50, "Random samples (paper: 50).", argument="num_samples",
                          low=0),)
    flag_budget = True

    def __init__(self, num_samples: int = 50, *, fidelity: str = "full",
                 max_rejections: int = 2000):
        super().__init__(max_rejections=max_rejections)
        self.num_samples = check_count("num_samples", num_samples, 1)
        self.fidelity = check_fidelity("fidelity", fidelity)

    budget_field = "num_samples"

    def ask(self) -> Candidate | None:
        if self.asked >= self.num_samples:
            return None
        spec = sample_unseen(self, self._asked_set)
        if spec is None:
            self.stop_reason = exhausted_reason(self.asked)
            logger.info("random search: %s", self.stop_reason)
            return None
        self.mark_asked(spec)
        return Candidate(spec, self.fidelity, "random")

    def tell(self, trial: Trial) -> None:
        # Samples are independent of results: nothing to learn.
        del trial

    def get_config(self) -> dict[str, Any]:
        return {"num_samples": self.num_samples, "fidelity": self.fidelity,
                "max_rejections": self.max_rejections}

    def _state(self) -> dict[str, Any]:
        return self._asked_state()

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self._load_asked_state(state["asked"], state["seen"])
