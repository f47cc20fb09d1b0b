"""REINFORCE with a cost-penalised reward (B-ENAS, Xu et al. 2019; ENAS, Pham et al. 2018).

An LSTM :class:`~keras_cnas.strategies.controller.Controller` samples one decision per step
of the space's categorical view; every finished trial gives the reward of eq. 2,

    reward = accuracy - alpha * penalty(costs) + entropy_weight * entropy,

where the penalty (eq. 3, :class:`~keras_cnas.costs.CostPenalty`) prices every cost over its
bound (the search's hard bounds, plus soft ``penalty_bounds`` such as the measured
``train_seconds`` that only training reveals) and the entropy bonus keeps the policy
exploring. The policy-gradient step uses the advantage over an exponential-moving-average
baseline (eq. 5).

Hard constraints stay hard: a sample that breaks an analytic bound is never trained; it is
told to the controller at once with accuracy 0 and its penalty, so the policy learns to
avoid the infeasible region for free. A sample already evaluated is not trained again: its
remembered reward updates the policy and another sample is drawn.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Mapping

import numpy as np

from keras_cnas._checks import is_finite_number
from keras_cnas.costs.penalty import CostPenalty
from keras_cnas.errors import InvalidSpecError
from keras_cnas.strategies._common import check_count, check_fidelity
from keras_cnas.strategies.base import STRATEGIES, SearchContext, Strategy
from keras_cnas.strategies.flags import CONTROLLER_FLAGS
from keras_cnas.trial import Candidate, Trial

logger = logging.getLogger(__name__)

__all__ = ["PolicyGradient", "Reinforce", "ReinforceConfig"]


class PolicyGradient:
    """A controller trained by REINFORCE with an entropy bonus and a moving-average
    baseline (eq. 5): the learning rule shared by :class:`Reinforce` and B-ENAS.

    Args:
        controller: the policy (:class:`~keras_cnas.strategies.controller.Controller`).
        entropy_weight: the bonus ``entropy_weight * entropy`` added to every reward.
        baseline_decay: ``b <- decay * b + (1 - decay) * reward``.
        batch_size: rewards per policy-gradient step.
    """

    def __init__(self, controller: Any, *, entropy_weight: float = 0.1,
                 baseline_decay: float = 0.95, batch_size: int = 1):
        self.controller = controller
        self.entropy_weight = entropy_weight
        self.baseline_decay = baseline_decay
        self.batch_size = batch_size
        self.baseline: float | None = None
        self.updates = 0
        self._buffer: list[tuple[list[int], float]] = []  # (decisions, advantage) not yet used

    def sample(self, rng: np.random.Generator) -> tuple[list[int], float]:
        """(decisions, entropy of the policy along them), drawn with ``rng``."""
        decisions, _, entropy = self.controller.sample(rng.random(len(self.controller.decision_sizes)))
        return decisions, entropy

    def learn(self, decisions: list[int], reward: float, entropy: float) -> None:
        """Eq. 5: the baseline follows the reward; the advantage trains the policy."""
        reward = reward + self.entropy_weight * entropy
        if self.baseline is None:
            self.baseline = reward
        else:
            self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward
        self._buffer.append((decisions, reward - self.baseline))
        if len(self._buffer) >= self.batch_size:
            batch, self._buffer = self._buffer, []
            self.controller.update([d for d, _ in batch], [a for _, a in batch])
            self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "updates": self.updates,
                "buffer": [[d, a] for d, a in self._buffer],
                "controller": self.controller.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        self.updates = int(state["updates"])
        self._buffer = [([int(x) for x in d], float(a)) for d, a in state["buffer"]]
        self.controller.load_state_dict(state["controller"])


@dataclasses.dataclass(frozen=True)
class ReinforceConfig:
    """The settings of :class:`Reinforce`, validated once (B-ENAS values by default).

    Attributes:
        num_trials: candidates to evaluate in total (its ``planned_trials``).
        batch_size: rewards per policy-gradient step (ENAS micro: 1 per sampled child).
        alpha: the penalty's weight in the reward (B-ENAS: 0.1).
        beta: eq. 3's slope (B-ENAS: 1).
        penalty_bounds: soft bounds ``{cost: U_c}`` on top of the search's hard bounds,
            e.g. ``{"train_seconds": 60}`` (training time is known only after training).
        reward_metric: the accuracy in the reward (``val_accuracy`` of the Keras evaluator;
            a table's accuracy field); None: the trial's score (the evaluator's objective,
            higher is better), and a failed trial gets the lowest reward seen.
        reward_scale: multiplies the metric (0.01 for accuracies in percent).
        entropy_weight: the entropy bonus added to the reward (B-ENAS: 0.1).
        baseline_decay: the moving-average baseline's decay (eq. 5).
        lstm_size, lstm_layers, temperature, tanh_constant, learning_rate: the controller
            (B-ENAS: 2 layers, temperature 5.0, tanh constant 2.5, Adam 1e-3).
        fidelity: of every candidate.
        max_repeats: samples in a row that were all evaluated before, after which the policy
            has converged and the search ends.
        max_rejections: infeasible samples in a row after which the search stops.

    Example:
        >>> ReinforceConfig(alpha=0.2, lstm_size=16).controller()["lstm_size"]
        16
        >>> ReinforceConfig(baseline_decay=1.0)
        Traceback (most recent call last):
        ...
        ValueError: baseline_decay: expected a number in [0, 1) such as 0.95, got 1.0
    """

    num_trials: int = 100
    batch_size: int = 1
    alpha: float = 0.1
    beta: float = 1.0
    penalty_bounds: Mapping[str, float] = dataclasses.field(default_factory=dict)
    reward_metric: str | None = "val_accuracy"
    reward_scale: float = 1.0
    entropy_weight: float = 0.1
    baseline_decay: float = 0.95
    lstm_size: int = 64
    lstm_layers: int = 2
    temperature: float = 5.0
    tanh_constant: float = 2.5
    learning_rate: float = 1e-3
    fidelity: str = "full"
    max_repeats: int = 200
    max_rejections: int = 2000

    def __post_init__(self) -> None:
        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731  (frozen)
        for name, low in (("num_trials", 1), ("batch_size", 1), ("lstm_size", 1),
                          ("lstm_layers", 1), ("max_repeats", 1)):
            fix(name, check_count(name, getattr(self, name), low))
        fix("penalty_bounds", dict(self.penalty_bounds or {}))
        CostPenalty(self.penalty_bounds, alpha=self.alpha, beta=self.beta)  # validates the three
        fix("alpha", float(self.alpha))
        fix("beta", float(self.beta))
        metric = self.reward_metric
        if metric is not None and (not isinstance(metric, str) or not metric):
            raise ValueError(f"reward_metric: expected a metric name such as 'val_accuracy', got "
                             f"{metric!r}")
        for name in ("reward_scale", "entropy_weight", "temperature", "tanh_constant",
                     "learning_rate"):
            value = getattr(self, name)
            if not is_finite_number(value) or value < 0 or (value == 0 and name != "entropy_weight"):
                raise ValueError(f"{name}: expected a positive number, got {value!r}")
            fix(name, float(value))
        if not 0 <= self.baseline_decay < 1:
            raise ValueError(f"baseline_decay: expected a number in [0, 1) such as 0.95, got "
                             f"{self.baseline_decay!r}")
        fix("baseline_decay", float(self.baseline_decay))
        check_fidelity("fidelity", self.fidelity)

    def controller(self) -> dict[str, Any]:
        """The controller's keyword arguments."""
        return {"lstm_size": self.lstm_size, "lstm_layers": self.lstm_layers,
                "temperature": self.temperature, "tanh_constant": self.tanh_constant,
                "learning_rate": self.learning_rate}

    def get_config(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "penalty_bounds": dict(self.penalty_bounds)}


@STRATEGIES.register("reinforce")
class Reinforce(Strategy):
    """B-ENAS' REINFORCE controller as an ask/tell strategy (without weight sharing).

    Args:
        config: a :class:`ReinforceConfig` (its attributes are documented there).
        **fields: shorthand for the config's fields (``Reinforce(num_trials=30,
            alpha=0.2)``), not together with ``config``.

    Example:
        >>> from keras_cnas.costs import Constraints, estimate
        >>> from keras_cnas.spaces import CategoricalSpace
        >>> from keras_cnas.trial import TrialStatus
        >>> strategy = Reinforce(num_trials=3, lstm_size=8, reward_metric="acc")
        >>> strategy.setup(SearchContext(CategoricalSpace([4, 4]), Constraints(), estimate))
        >>> for trial_id in range(3):
        ...     c = strategy.ask()
        ...     acc = sum(c.spec.decisions) / 6
        ...     strategy.tell(Trial(trial_id, c.spec, c.fidelity, c.phase, TrialStatus.COMPLETED,
        ...                         score=acc, metrics={"acc": acc}, info=dict(c.info)))
        >>> strategy.report()["policy_updates"]
        3
    """

    name = "reinforce"
    budget_field = "num_trials"
    flags = CONTROLLER_FLAGS
    flag_budget = True

    def __init__(self, config: ReinforceConfig | None = None, **fields: Any):
        if config is None:
            config = ReinforceConfig(**fields)
        elif not isinstance(config, ReinforceConfig):
            raise ValueError(f"config: expected a ReinforceConfig, got {type(config).__name__}; "
                             "pass the settings as keywords or ReinforceConfig(...)")
        elif fields:
            raise ValueError(f"{', '.join(fields)}: set in config=ReinforceConfig(...) or as "
                             "keywords, not both")
        super().__init__(max_rejections=config.max_rejections)
        self.config = config
        self.num_trials = config.num_trials  # the budget (set_budget moves it)
        self.policy: PolicyGradient | None = None
        self._reset()

    # The settings read in the loop, by their config names.
    alpha = property(lambda self: self.config.alpha)
    beta = property(lambda self: self.config.beta)
    penalty_bounds = property(lambda self: self.config.penalty_bounds)
    reward_metric = property(lambda self: self.config.reward_metric)
    reward_scale = property(lambda self: self.config.reward_scale)
    fidelity = property(lambda self: self.config.fidelity)
    max_repeats = property(lambda self: self.config.max_repeats)

    def _reset(self) -> None:
        super()._reset()
        self.rewards: dict[str, float] = {}  # spec key -> reward of its evaluation
        self.history: list[dict[str, Any]] = []  # per evaluated trial: id, reward, penalty

    def setup(self, context: SearchContext, seed: int = 0) -> None:
        from keras_cnas.strategies.controller import Controller  # lazy: imports TensorFlow

        super().setup(context, seed)
        self.rule = CostPenalty({**context.constraints.bounds, **self.penalty_bounds},
                                alpha=self.alpha, beta=self.beta)
        controller = Controller(context.space.decision_sizes(), seed=seed,
                                **self.config.controller())
        self.policy = PolicyGradient(controller, entropy_weight=self.config.entropy_weight,
                                     baseline_decay=self.config.baseline_decay,
                                     batch_size=self.config.batch_size)

    # --- ask / tell ----------------------------------------------------------------------------

    def ask(self) -> Candidate | None:
        if self.asked >= self.num_trials:
            return None
        space = self.context.space
        repeats = 0
        while True:
            decisions, entropy = self.policy.sample(self.rng)
            try:
                spec = space.from_decisions(decisions)
            except InvalidSpecError as e:
                # Not an architecture at all: the worst penalty, never trained.
                self.policy.learn(decisions, -self.alpha * (9 * self.beta + 1), entropy)
                reason = f"invalid decisions {decisions}: {e}"
                self.count_rejection(lambda: (
                    f"reinforce: {self.max_rejections} samples in a row were invalid or "
                    f"infeasible (last: {reason}); relax the constraints or shrink the space"))
                continue
            key = spec.key()
            if self.was_asked(key):
                if key in self.rewards:  # evaluated: its reward still teaches the policy
                    self.policy.learn(decisions, self.rewards[key], entropy)
                repeats += 1
                if repeats >= self.max_repeats:
                    self.stop_reason = (f"the policy has converged: {repeats} samples in a row "
                                        "were evaluated before")
                    logger.info("reinforce: %s", self.stop_reason)
                    return None
                continue
            verdict = self.check(spec)
            if not verdict:  # priced once: its costs set the penalty it learns from
                self.policy.learn(decisions, -self.alpha * self.rule.penalty(verdict.costs),
                                  entropy)
                continue
            self.mark_asked(spec)
            return Candidate(spec, self.fidelity, "policy",
                             {"decisions": decisions, "entropy": entropy})

    def tell(self, trial: Trial) -> None:
        decisions = trial.info.get("decisions")
        if decisions is None:  # not one of ours (e.g. a re-queued foreign trial)
            return
        costs = {k: v for k, v in trial.costs.items() if v is not None}
        if any(name not in costs for name in self.rule.bounds):  # analytic ones, if not recorded
            analytic = self.context.pricer.costs(trial.spec).as_dict()
            costs = {**{k: v for k, v in analytic.items() if v is not None}, **costs}
        penalty = self.rule.penalty(costs)
        if self.reward_metric is None:
            if trial.ok and trial.score is not None and math.isfinite(trial.score):
                accuracy = float(trial.score)
            else:  # no score: as bad as the worst seen
                accuracy = min((h["accuracy"] for h in self.history), default=0.0)
        else:
            value = trial.metrics.get(self.reward_metric) if trial.ok else None
            if trial.ok and value is None:
                raise ValueError(
                    f"reward_metric: trial {trial.id} reports no {self.reward_metric!r}; its "
                    f"metrics are {', '.join(sorted(trial.metrics)) or 'none'}; pass "
                    "reward_metric= one of them (or None for the trial's score)")
            accuracy = 0.0 if value is None or not math.isfinite(value) else float(value)
        reward = accuracy * self.reward_scale - self.alpha * penalty
        self.rewards[trial.spec.key()] = reward
        self.history.append({"trial": trial.id, "reward": reward, "penalty": penalty,
                             "accuracy": accuracy})
        self.policy.learn([int(d) for d in decisions], reward, float(trial.info.get("entropy", 0.0)))

    # --- reporting and state ---------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        return {"policy_updates": self.policy.updates, "baseline": self.policy.baseline,
                "evaluated": len(self.history), "rewards": list(self.history)}

    def get_config(self) -> dict[str, Any]:
        # The budget as set_budget left it; the key order is the one stored searches hold.
        return {**self.config.get_config(), "num_trials": self.num_trials}

    def _state(self) -> dict[str, Any]:
        return {"asked": self.asked, "asked_keys": sorted(self._asked_set),
                "rewards": dict(self.rewards), "history": list(self.history),
                "policy": self.policy.state_dict()}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self._load_asked_state(state["asked"], state["asked_keys"])
        self.rewards = {str(k): float(v) for k, v in state["rewards"].items()}
        self.history = [dict(h) for h in state["history"]]
        self.policy.load_state_dict(state["policy"])

    def probability(self, decisions: list[int]) -> float:
        """The controller's probability of sampling ``decisions`` (for tests and reports)."""
        return self.policy.controller.probabilities([int(d) for d in decisions])
