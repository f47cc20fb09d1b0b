"""Regularized (aging) evolution, Real et al. 2019: the baseline every strategy is
compared with.

Pure Python + NumPy.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from keras_cnas.strategies._common import (
    Result,
    check_count,
    check_fidelity,
    exhausted_reason,
    sample_unseen,
)
from keras_cnas.strategies.flags import StrategyFlag
from keras_cnas.strategies.base import STRATEGIES, SearchContext, Strategy
from keras_cnas.trial import Candidate, Trial

logger = logging.getLogger(__name__)


@STRATEGIES.register("evolution")
class RegularizedEvolution(Strategy):
    """Tournament selection, one mutation per child, and aging out the oldest member.

    The first ``population_size`` asks are feasible random samples. After that, each ask
    draws ``sample_size`` members of the population at random, takes the best of them
    (by ``trial.score``) as the parent, and proposes a random feasible neighbour from
    ``space.mutations`` that has not been asked for before (bounded tries; a random sample
    if none is found). Each completed trial joins the population in the order it is
    told; once the population holds ``population_size`` members the oldest one leaves,
    whatever its score (the "regularization").

    Candidates have phase ``"random"`` (the initial population, or a fallback with
    ``{"move": "random", "reason": ...}`` in ``info``) or ``"mutation"`` with ``info``
    ``{"move": "set", "mutation": "decisions[2]: 0 -> 3", "parent": 12}`` (the space's
    ``Mutation.move`` and ``.detail``).

    FAILED and INFEASIBLE trials never join the population: they have no score to compete
    with, and giving them -inf would only age good members out sooner. While nothing has
    completed yet (every trial still running, or all failed) asks fall back to random
    samples.

    Args:
        population_size: members kept alive (P).
        sample_size: tournament size (S), at most ``population_size``.
        num_trials: candidates to propose in total (its ``planned_trials``).
        fidelity: ``"full"`` or ``"traction"``, for every candidate.
        max_mutation_tries: neighbours of a parent tried (infeasible or already asked for
            ones are skipped) before falling back to a random sample.
        max_rejections: infeasible proposals in a row after which the search stops.

    Example:
        >>> from keras_cnas.costs import Constraints, estimate
        >>> from keras_cnas.spaces import CategoricalSpace
        >>> from keras_cnas.trial import TrialStatus
        >>> evolution = RegularizedEvolution(population_size=4, sample_size=2, num_trials=12)
        >>> evolution.setup(SearchContext(CategoricalSpace([8] * 3), Constraints(), estimate))
        >>> scores = []
        >>> for trial_id in range(12):
        ...     c = evolution.ask()
        ...     score = float(sum(c.spec.decisions))
        ...     scores.append(score)
        ...     evolution.tell(Trial(trial_id, c.spec, c.fidelity, c.phase,
        ...                          TrialStatus.COMPLETED, score=score, info=dict(c.info)))
        >>> len(evolution.population), max(scores[4:]) >= max(scores[:4])
        (4, True)
    """

    name = "evolution"
    flags = (StrategyFlag("population_size", 20, "Population size.", low=1),
             StrategyFlag("sample_size", 5, "Tournament size (at most --population_size).",
                          low=1))
    flag_budget = True

    @classmethod
    def flag_arguments(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        args = super().flag_arguments(values)
        args["sample_size"] = min(args["sample_size"], args["population_size"])
        return args

    def __init__(self, population_size: int = 20, sample_size: int = 5, num_trials: int = 100, *,
                 fidelity: str = "full", max_mutation_tries: int = 100,
                 max_rejections: int = 2000):
        super().__init__(max_rejections=max_rejections)
        self.population_size = check_count("population_size", population_size, 1)
        self.sample_size = check_count("sample_size", sample_size, 1)
        if self.sample_size > self.population_size:
            raise ValueError(
                f"sample_size: {sample_size} exceeds population_size={population_size}; the "
                "tournament draws from the population, so use sample_size <= population_size")
        self.num_trials = check_count("num_trials", num_trials, 1)
        self.fidelity = check_fidelity("fidelity", fidelity)
        self.max_mutation_tries = check_count("max_mutation_tries", max_mutation_tries, 1)

    #: ``max_trials`` sets the candidates; the population stays as configured.
    budget_field = "num_trials"

    def _reset(self) -> None:
        super()._reset()
        self.failed = 0  # FAILED / INFEASIBLE trials told
        self.population: list[Result] = []  # oldest first

    def ask(self) -> Candidate | None:
        if self.asked >= self.num_trials:
            return None
        candidate: Candidate | None = None
        info: dict[str, Any] = {}
        if self.asked >= self.population_size:
            if self.population:
                candidate = self._mutate_tournament_winner()
                info = {"move": "random", "reason": "no new feasible neighbour of the parent"}
            else:  # every trial so far is still running or failed
                info = {"move": "random", "reason": "no completed trial in the population yet"}
        if candidate is None:
            spec = sample_unseen(self, self._asked_set)
            if spec is None:
                self.stop_reason = exhausted_reason(self.asked)
                logger.info("evolution: %s", self.stop_reason)
                return None
            candidate = Candidate(spec, self.fidelity, "random", info)
        self.mark_asked(candidate.spec)
        return candidate

    def _mutate_tournament_winner(self) -> Candidate | None:
        size = min(self.sample_size, len(self.population))
        picks = self.rng.choice(len(self.population), size=size, replace=False).tolist()
        parent = max((self.population[i] for i in picks), key=lambda r: r.score)
        mutations = self.context.space.mutations(parent.spec, self.rng)
        order = self.rng.permutation(len(mutations)).tolist()
        for i in order[:self.max_mutation_tries]:
            mutation = mutations[i]
            if self.was_asked(mutation.spec.key()) or not self.feasible(mutation.spec):
                continue
            return Candidate(mutation.spec, self.fidelity, "mutation",
                             {"move": mutation.move, "mutation": mutation.detail,
                              "parent": parent.id})
        logger.debug("evolution: no new feasible neighbour of trial %d in %d tries; sampling "
                     "at random", parent.id, self.max_mutation_tries)
        return None

    def tell(self, trial: Trial) -> None:
        if not trial.ok:
            self.failed += 1
            return
        self.population.append(Result.from_trial(trial, info={}))
        if len(self.population) > self.population_size:
            self.population.pop(0)  # the oldest dies, however good it is

    def get_config(self) -> dict[str, Any]:
        return {"population_size": self.population_size, "sample_size": self.sample_size,
                "num_trials": self.num_trials, "fidelity": self.fidelity,
                "max_mutation_tries": self.max_mutation_tries,
                "max_rejections": self.max_rejections}

    def _state(self) -> dict[str, Any]:
        return {**self._asked_state(), "failed": self.failed,
                "population": [r.to_dict() for r in self.population]}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self._load_asked_state(state["asked"], state["seen"])
        self.failed = int(state["failed"])
        self.population = [Result.from_dict(r) for r in state["population"]]
