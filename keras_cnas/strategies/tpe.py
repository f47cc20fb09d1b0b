"""Optuna's TPE sampler as a strategy, through Optuna's ask/tell interface.

Each decision of the space's categorical view is one categorical parameter; a proposal
that breaks the hard constraints is never evaluated but told to the study at once with
its relative violation (``constraints_func``), so TPE learns where the feasible region
is. The study lives in memory; the strategy's JSON state is the list of Optuna trials
(parameters, state, value, violation) and the NumPy RNG that seeds a fresh sampler on
every ask, so a resumed search rebuilds the same study (``add_trial`` in the original
order) and continues with the same proposals.

Needs ``optuna`` (``pip install keras_cnas[tpe]``), imported when the strategy is set up.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Mapping

from keras_cnas.errors import InvalidSpecError
from keras_cnas.strategies._common import (
    TrialBudget,
    check_count,
    check_fidelity,
    exhausted_reason,
    sample_unseen,
)
from keras_cnas.strategies.base import STRATEGIES, SearchContext, Strategy
from keras_cnas.trial import Candidate, Trial

logger = logging.getLogger(__name__)

#: The violation told for a trial whose measured costs broke a bound (no figure known).
MEASURED_VIOLATION = 1.0


@STRATEGIES.register("tpe")
class TPE(TrialBudget, Strategy):
    """Tree-structured Parzen estimators (Optuna's ``TPESampler``) over the categorical view.

    Args:
        num_trials: candidates to propose (its ``planned_trials``; ``max_trials`` sets it).
        n_startup_trials: random trials before TPE's model takes over (Optuna's default 10).
        multivariate: model the decisions jointly (Optuna's multivariate TPE) rather than
            one at a time.
        max_proposals: proposals per ask (repeats, infeasible ones) before a random sample.
        fidelity: ``"full"`` or ``"traction"``, for every candidate.
        max_rejections: infeasible proposals in a row after which the search stops.

    Example:
        >>> from keras_cnas.costs import Constraints, estimate
        >>> from keras_cnas.spaces import CategoricalSpace
        >>> from keras_cnas.trial import TrialStatus
        >>> tpe = TPE(num_trials=30)
        >>> tpe.setup(SearchContext(CategoricalSpace([5] * 3), Constraints(), estimate))
        >>> scores = []
        >>> for trial_id in range(30):
        ...     c = tpe.ask()
        ...     scores.append(-float(sum(abs(d - 1) for d in c.spec.decisions)))
        ...     tpe.tell(Trial(trial_id, c.spec, c.fidelity, c.phase, TrialStatus.COMPLETED,
        ...                    score=scores[-1], info=dict(c.info)))
        >>> max(scores[10:]) >= max(scores[:10]), tpe.ask()
        (True, None)
    """

    name = "tpe"

    def __init__(self, num_trials: int = 100, *, n_startup_trials: int = 10,
                 multivariate: bool = True, max_proposals: int = 200, fidelity: str = "full",
                 max_rejections: int = 2000):
        super().__init__(max_rejections=max_rejections)
        self.num_trials = check_count("num_trials", num_trials, 1)
        self.n_startup_trials = check_count("n_startup_trials", n_startup_trials, 0)
        if not isinstance(multivariate, bool):
            raise ValueError(f"multivariate: expected True or False, got {multivariate!r}")
        self.multivariate = multivariate
        self.max_proposals = check_count("max_proposals", max_proposals, 1)
        self.fidelity = check_fidelity("fidelity", fidelity)
        self._reset()

    def _reset(self) -> None:
        self.asked = 0
        # Optuna's trials in number order: params, state, value, violation.
        self.records: list[dict[str, Any]] = []
        self.pending: dict[str, int] = {}     # spec key -> trial number, asked and not told
        self.told: dict[str, int] = {}        # spec key -> trial number of its result
        self._study: Any = None
        self._search_space: Any = None  # Optuna's intersection search space of the study

    def setup(self, context: SearchContext, seed: int = 0) -> None:
        super().setup(context, seed)
        import optuna  # noqa: F401  (fails here, not mid-search, when it is missing)

        self._reset()
        self._sizes = context.space.decision_sizes()

    # --- the study --------------------------------------------------------------------------

    def _distributions(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution

        return {f"d{i}": CategoricalDistribution(list(range(size)))
                for i, size in enumerate(self._sizes)}

    def study(self) -> Any:
        """The in-memory Optuna study, rebuilt from the records when needed."""
        if self._study is None:
            import optuna
            from optuna.trial import TrialState, create_trial

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            study = optuna.create_study(direction="maximize")
            distributions = self._distributions()
            for r in self.records:
                violation = r["violation"]
                # As TPESampler.after_trial stores them: a tuple under "constraints".
                study.add_trial(create_trial(
                    params={f"d{i}": v for i, v in enumerate(r["params"])},
                    distributions=distributions, state=TrialState[r["state"]], value=r["value"],
                    system_attrs={} if violation is None else {"constraints": tuple(violation)}))
            self._study = study
            from optuna.search_space import IntersectionSearchSpace

            # As TPESampler builds its own; kept across the fresh samplers of the asks.
            self._search_space = IntersectionSearchSpace(include_pruned=True)
        return self._study

    def _sampler(self) -> Any:
        from optuna.samplers import TPESampler

        with warnings.catch_warnings():
            # Optuna 5 deprecates constraints_func for Trial.set_constraint, which needs the
            # live Trial object a resumed study no longer has (hence optuna<7 in setup.py).
            warnings.simplefilter("ignore", FutureWarning)
            sampler = TPESampler(seed=int(self.rng.integers(2 ** 31)),
                                 multivariate=self.multivariate,
                                 n_startup_trials=self.n_startup_trials,
                                 constraints_func=lambda t: self.records[t.number]["violation"])
        # A fresh sampler would recompute the intersection search space over every trial
        # of the study on each ask (O(n^2): 80 of the 110 s of a 200-trial search here);
        # the study's own one caches it by trial number and returns the same space.
        from optuna.search_space import IntersectionSearchSpace

        if isinstance(getattr(sampler, "_search_space", None), IntersectionSearchSpace):
            sampler._search_space = self._search_space
        return sampler

    def _finish(self, number: int, value: float | None, violation: list[float] | None) -> None:
        """Tells trial ``number`` (COMPLETE with a value, or FAIL) to the study and records it."""
        from optuna.trial import TrialState

        study, record = self.study(), self.records[number]
        if value is None:
            study.tell(number, state=TrialState.FAIL)
            record.update(state="FAIL")
            return
        record.update(violation=violation)  # read by constraints_func during the tell
        study.tell(number, value)
        record.update(state="COMPLETE", value=float(value))

    def _floor(self) -> float:
        """The value told for an infeasible trial: TPE ranks it by violation, never by value."""
        values = [r["value"] for r in self.records if r["state"] == "COMPLETE"]
        return min(values) if values else 0.0

    # --- ask / tell ----------------------------------------------------------------------------

    def ask(self) -> Candidate | None:
        if self.asked >= self.num_trials:
            return None
        space = self.context.space  # raises before setup
        study = self.study()
        bounds = self.context.constraints.bounds
        for _ in range(self.max_proposals):
            study.sampler = self._sampler()
            trial = study.ask(self._distributions())
            decisions = [int(trial.params[f"d{i}"]) for i in range(len(self._sizes))]
            self.records.append({"params": decisions, "state": "RUNNING", "value": None,
                                 "violation": None})
            try:
                spec = space.from_decisions(decisions)
            except InvalidSpecError:  # not an architecture of this space
                self._finish(trial.number, None, None)
                continue
            key = spec.key()
            if key in self.told:  # a repeat: its result again (TPE weighs it once more)
                done = self.records[self.told[key]]
                self._finish(trial.number, done["value"], done["violation"])
                continue
            if key in self.pending:
                self._finish(trial.number, None, None)
                continue
            verdict = self.check(spec)
            if not verdict:
                costs = verdict.costs
                violation = [float(costs[n]) / b - 1.0 if costs.get(n) is not None else 0.0
                             for n, b in bounds.items()]
                self.told[key] = trial.number
                self._finish(trial.number, self._floor(), violation)
                continue
            return self._propose(spec, trial.number, "tpe")
        # TPE keeps proposing what it has seen: a random unseen sample, told to the study.
        spec = sample_unseen(self, set(self.told) | set(self.pending))
        if spec is None:
            self.stop_reason = exhausted_reason(self.asked)
            logger.info("tpe: %s", self.stop_reason)
            return None
        decisions = space.to_decisions(spec)
        study.enqueue_trial({f"d{i}": v for i, v in enumerate(decisions)})
        study.sampler = self._sampler()
        trial = study.ask(self._distributions())
        self.records.append({"params": decisions, "state": "RUNNING", "value": None,
                             "violation": None})
        return self._propose(spec, trial.number, "random")

    def _propose(self, spec: Any, number: int, phase: str) -> Candidate:
        self.asked += 1
        self.pending[spec.key()] = number
        return Candidate(spec, self.fidelity, phase, {"move": phase, "optuna_trial": number})

    def tell(self, trial: Trial) -> None:
        key = trial.spec.key()
        number = self.pending.pop(key, None)
        if number is None:
            return
        bounds = self.context.constraints.bounds
        width = max(1, len(bounds))  # one constraint value per bound, at least one
        if trial.ok:
            self._finish(number, float(trial.score), [-1.0] * width)
        elif trial.status.value == "INFEASIBLE":  # a measured cost broke a bound
            self._finish(number, self._floor(), [MEASURED_VIOLATION] * width)
        else:
            self._finish(number, None, None)
        self.told[key] = number

    # --- config and state --------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        return {"num_trials": self.num_trials, "n_startup_trials": self.n_startup_trials,
                "multivariate": self.multivariate, "max_proposals": self.max_proposals,
                "fidelity": self.fidelity, "max_rejections": self.max_rejections}

    def _state(self) -> dict[str, Any]:
        return {"asked": self.asked, "records": [dict(r) for r in self.records],
                "pending": dict(self.pending), "told": dict(self.told)}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self.asked = int(state["asked"])
        self.records = [{"params": [int(p) for p in r["params"]], "state": str(r["state"]),
                         "value": None if r["value"] is None else float(r["value"]),
                         "violation": None if r["violation"] is None
                         else [float(v) for v in r["violation"]]} for r in state["records"]]
        self.pending = {str(k): int(v) for k, v in state["pending"].items()}
        self.told = {str(k): int(v) for k, v in state["told"].items()}
        self._study = None  # rebuilt from the records on the next ask or tell
        self._search_space = None
