"""RCAS: lazy cost-effective greedy search over sets of (position, block type) elements.

RCAS (Xiong, Mehta, Singh) treats a network as a set ``S`` of (position, block type)
elements, at most one per position, unfilled positions being the space's empty choice. The
accuracy ``f(S)`` is close to monotone submodular, so a greedy search that adds the element
with the best marginal gain per unit of cost finds strong networks with few evaluations:

* cost rules (Algorithm 3): ``uc`` — constant cost, plain marginal gain (eq. 4); ``apr`` —
  gain per added parameter; ``amr`` — gain per added multiply-add (eq. 9). ``RCAS`` runs
  all three and the search keeps the best set any of them found (Theorem 1's
  ½(1 − 1/e) guarantee rests on taking the best of the cost-effective and the plain run);
* lazy evaluation (Algorithm 2): a first pass evaluates every single element that fits the
  budgets and fills a max-priority queue of gain ratios; then the top element is popped and
  re-evaluated against the current ``S``: it is taken if its fresh ratio still beats the
  next entry's (stale, by submodularity an upper bound), else pushed back with the fresh
  value. A rule stops when no remaining element fits the budgets or none improves ``f``;
* a cache keyed by the set means no set is evaluated twice (across rules too: the first
  pass is shared);
* a budget (``max_trials``): when every rule has stopped with budget left, the search
  continues with best-improvement local search (:class:`LocalSearch`) from the best set
  found, restarting from random feasible points at local optima, until the budget is spent.

Works on any space with an ``empty_choice`` (``BlockSetSpace``, ``CategoricalSpace(...,
empty_choice=0)``), through the categorical view. Scores are the trials' (higher is
better); costs come from the search's cost function (analytic, or a table's). Pure Python.
"""

from __future__ import annotations

import heapq
import math
from typing import Any, Mapping, Sequence

from keras_cnas.errors import InfeasibleConstraintsError, InvalidSpecError
from keras_cnas.spaces.base import Spec, spec_from_dict
from keras_cnas.strategies._common import check_count, check_fidelity, probe_costs
from keras_cnas.strategies.flags import StrategyFlag
from keras_cnas.strategies.base import STRATEGIES, SearchContext, Strategy
from keras_cnas.strategies.local_search import LocalSearch
from keras_cnas.trial import Candidate, Trial

#: Cost rule -> the cost whose increase divides the gain (None: constant cost).
COST_RULES: dict[str, tuple[str, ...] | None] = {
    "uc": None,
    "apr": ("params",),
    "amr": ("madds", "flops"),  # tables (NAS-Bench-Macro) call multiply-adds "flops"
}


def rule_cost(rule: str, available: Mapping[str, Any], bounded: Sequence[str]) -> str | None:
    """The cost whose increase a rule divides the gain by: the rule's own (params for APR,
    multiply-adds for AMR) when it is bounded or nothing is, else the first bounded cost
    the search reports (a latency-only budget prices by latency).

    Example:
        >>> rule_cost("apr", {"params": 1, "latency_ms": 2}, ["latency_ms"])
        'latency_ms'
        >>> rule_cost("amr", {"params": 1, "flops": 2}, [])
        'flops'
    """
    names = COST_RULES[rule]
    if names is None:
        return None
    own = [n for n in names if available.get(n) is not None]
    if own and (not bounded or own[0] in bounded):
        return own[0]
    usable = [n for n in bounded if available.get(n) is not None]
    if usable:
        return usable[0]
    if own:
        return own[0]
    raise ValueError(f"cost rule {rule!r} needs one of the costs {names} or a bounded cost; "
                     f"the search reports {sorted(available)} and bounds {list(bounded)}")


#: Ratio of a gain that costs nothing (finite, so that the state stays standard JSON).
FREE_GAIN = 1e300


@STRATEGIES.register("lazy_greedy")
class LazyGreedy(Strategy):
    """Lazy cost-effective greedy search (RCAS Algorithms 2-3) with one or more cost rules.

    Args:
        cost_rules: the rules to run one after the other (``"uc"``, ``"apr"``, ``"amr"``).
        lazy: False re-evaluates every remaining element each round (eager greedy, for
            comparison); True is Algorithm 2.
        fidelity: fidelity of every evaluation (RCAS §4.1 uses early-stopped training:
            configure the evaluator's full-fidelity epochs accordingly).
        num_trials: the budget; None (the default, unless ``max_trials`` sets it) stops
            when the greedy passes do, as in the paper. With budget left after them, the
            search continues with local search from the best set.
        max_rejections: see :class:`Strategy` (only the empty set is checked this way).

    Example:
        >>> from keras_cnas.costs import Constraints
        >>> from keras_cnas.spaces import CategoricalSpace
        >>> from keras_cnas.trial import TrialStatus
        >>> space = CategoricalSpace([2] * 4, empty_choice=0)
        >>> weights = [0.4, 0.3, 0.2, 0.1]
        >>> from keras_cnas.costs.pricer import Pricer
        >>> greedy = LazyGreedy(cost_rules=("uc",))
        >>> greedy.setup(SearchContext(space, Constraints(), Pricer(space=space)))
        >>> for trial_id in range(20):
        ...     c = greedy.ask()
        ...     if c is None:
        ...         break
        ...     score = sum(w for w, d in zip(weights, c.spec.decisions) if d)
        ...     greedy.tell(Trial(trial_id, c.spec, c.fidelity, c.phase, TrialStatus.COMPLETED,
        ...                       score=score, info=dict(c.info)))
        >>> greedy.report()["rules"]["uc"]["final"]["decisions"]
        [1, 1, 1, 1]
    """

    name = "lazy_greedy"
    flags = (StrategyFlag("cost_rule", "apr", "Gain per nothing (uc), per parameter (apr) or per "
                          "multiply-add (amr); rcas runs all three.", argument="cost_rules",
                          kind="enum", choices=("uc", "apr", "amr"), convert=lambda rule: (rule,)),)

    def __init__(self, cost_rules: Sequence[str] = ("apr",), *, lazy: bool = True,
                 fidelity: str = "full", num_trials: int | None = None,
                 max_rejections: int = 2000):
        super().__init__(max_rejections=max_rejections)
        self.num_trials = None if num_trials is None else check_count("num_trials", num_trials, 1)
        if isinstance(cost_rules, str):
            cost_rules = (cost_rules,)
        rules = tuple(cost_rules)
        unknown = [r for r in rules if r not in COST_RULES]
        if not rules or unknown:
            raise ValueError(f"cost_rules: expected some of {sorted(COST_RULES)}, got {list(rules)}")
        if not isinstance(lazy, bool):
            raise ValueError(f"lazy: expected True or False, got {lazy!r}")
        self.cost_rules = rules
        self.lazy = lazy
        self.fidelity = check_fidelity("fidelity", fidelity)
        self._reset()

    def _reset(self) -> None:
        self.cache: dict[str, float | None] = {}  # set key -> score (None: failed)
        self.pending: set[str] = set()            # asked, not told
        self.evaluations = 0
        self.rule_index = 0
        self.chosen: dict[int, int] = {}          # S: position -> choice
        self.queue: list[list] = []               # heap of [-ratio, position, choice]
        self.first_pass_done = False
        self.waiting: list[int] | None = None     # element re-evaluated, awaiting its tell
        self.paths: dict[str, list[dict[str, Any]]] = {r: [] for r in self.cost_rules}
        self.done_rules: dict[str, str] = {}      # rule -> why it stopped
        self.continuation: LocalSearch | None = None  # after the greedy passes, with budget left

    def setup(self, context: SearchContext, seed: int = 0) -> None:
        super().setup(context, seed)
        empty = context.space.empty_choice
        if empty is None:
            raise ValueError(
                f"space: lazy greedy needs a space with an empty choice (BlockSetSpace, or "
                f"CategoricalSpace(..., empty_choice=0)); {type(context.space).__name__} has none")
        self._empty = empty
        self._sizes = context.space.decision_sizes()
        probe = probe_costs(context) if any(COST_RULES[r] for r in self.cost_rules) else {}
        self._rule_costs = {rule: rule_cost(rule, probe, list(context.constraints.bounds))
                            for rule in self.cost_rules}
        self._seed = seed

    #: None: as many as the greedy passes take; max_trials sets it.
    budget_field = "num_trials"

    # --- sets and their specs ------------------------------------------------------------

    def _spec(self, chosen: Mapping[int, int]) -> Spec | None:
        decisions = [chosen.get(i, self._empty) for i in range(len(self._sizes))]
        try:
            return self.context.space.from_decisions(decisions)
        except InvalidSpecError:
            return None  # e.g. a grouped block whose groups do not divide the channels

    def _fits(self, spec: Spec) -> bool:
        constraints = self.context.constraints
        return not constraints or constraints.satisfied(self.context.pricer.costs(spec))

    def _cost(self, spec: Spec, rule: str) -> float:
        name = self._rule_costs[rule]
        if name is None:
            return 0.0
        return float(self.context.pricer.costs(spec).as_dict()[name])

    def _ratio(self, rule: str, base: Spec, base_score: float, new: Spec, new_score: float | None) -> float:
        if new_score is None:
            return -math.inf
        gain = new_score - base_score
        if COST_RULES[rule] is None:
            return gain
        delta = self._cost(new, rule) - self._cost(base, rule)
        if delta <= 0:  # free (or cheaper): any gain is worth it
            return FREE_GAIN if gain > 0 else gain
        return gain / delta

    @property
    def rule(self) -> str:
        return self.cost_rules[self.rule_index]

    def _elements(self) -> list[tuple[int, int]]:
        return [(p, c) for p, size in enumerate(self._sizes) for c in range(size)
                if c != self._empty and p not in self.chosen]

    # --- ask / tell --------------------------------------------------------------------------

    def _request(self, spec: Spec, info: dict[str, Any]) -> Candidate | None:
        key = spec.key()
        if key in self.cache or key in self.pending:
            return None
        self.pending.add(key)
        self.evaluations += 1
        return Candidate(spec, self.fidelity, self.rule, info)

    def ask(self) -> Candidate | None:
        """The next set to evaluate, or None (wait for pending trials, or finished)."""
        if self.num_trials is not None and self.evaluations >= self.num_trials:
            return None
        candidate = self._greedy_ask()
        if candidate is None and self.rule_index >= len(self.cost_rules) and not self.pending:
            candidate = self._continue()
        return candidate

    def _continue(self) -> Candidate | None:
        """Local search from the best set once every rule has stopped, while budget is left."""
        if self.num_trials is None:
            self.stop_reason = ("every cost rule stopped (" + "; ".join(
                f"{r}: {why}" for r, why in self.done_rules.items()) + "); pass max_trials to "
                "continue with local search from the best set")
            return None
        if self.continuation is None:
            best = self.report()["best"]
            self.continuation = LocalSearch(self.num_trials, fidelity=self.fidelity,
                                            max_rejections=self.max_rejections)
            self.continuation.setup(self.context, seed=self._seed + 1)
            spec = None if best is None else self.context.space.from_decisions(best["decisions"])
            self.continuation.start_from(spec, self.cache)
        self.continuation.set_budget(self.num_trials - self.evaluations + self.continuation.asked)
        candidate = self.continuation.ask()
        if candidate is None:
            self.stop_reason = self.continuation.stop_reason
            return None
        self.evaluations += 1
        self.pending.add(candidate.spec.key())
        return Candidate(candidate.spec, self.fidelity, "local_search", dict(candidate.info))

    def _greedy_ask(self) -> Candidate | None:
        while self.rule_index < len(self.cost_rules):
            empty = self._spec({})
            assert empty is not None
            empty_key = empty.key()
            if empty_key not in self.cache:
                if empty_key in self.pending:
                    return None
                if not self.feasible(empty):
                    raise InfeasibleConstraintsError(
                        f"the empty network (every position {self._empty}) already breaks the "
                        f"hard constraints {self.context.constraints}; lazy greedy only adds "
                        "elements, so nothing can be feasible: relax the bounds")
                return self._request(empty, {"step": "empty_set"})
            if not self.first_pass_done:
                for p, c in self._elements():
                    spec = self._spec({p: c})
                    if spec is None or not self._fits(spec):
                        continue
                    candidate = self._request(spec, {"step": "first_pass", "element": [p, c]})
                    if candidate is not None:
                        return candidate
                if self.pending:
                    return None
                self.first_pass_done = True
                self._start_rule()
                continue
            if self.waiting is not None:
                if self.waiting[0] == "eager":  # a round evaluates every element first
                    candidate = self._eager_request()
                    if candidate is not None:
                        return candidate
                if self.pending:
                    return None
                self._decide()
                continue
            if not self.lazy:
                self.waiting = ["eager", -1]
                candidate = self._eager_request()
                if candidate is not None:
                    return candidate
                continue  # everything is cached: decide on the next pass
            if not self.queue:
                self._finish_rule("no remaining element fits the budgets")
                continue
            candidate = self._next_lazy_step()
            if candidate is not None:
                return candidate
        return None

    def tell(self, trial: Trial) -> None:
        key = trial.spec.key()
        self.pending.discard(key)
        self.cache[key] = trial.score if trial.ok else None
        if self.continuation is not None:
            self.continuation.tell(trial)

    # --- the greedy ----------------------------------------------------------------------

    def _start_rule(self) -> None:
        """Fills the queue with every single element's ratio against the empty set."""
        self.chosen = {}
        self.waiting = None
        base = self._spec({})
        base_score = self.cache[base.key()]
        self.queue = []
        if base_score is None:
            self._finish_rule("the empty network failed to evaluate")
            return
        self.paths[self.rule].append(self._record(base, base_score, None))
        for p, c in self._elements():
            spec = self._spec({p: c})
            if spec is None or spec.key() not in self.cache:
                continue
            ratio = self._ratio(self.rule, base, base_score, spec, self.cache[spec.key()])
            if ratio > -math.inf:
                heapq.heappush(self.queue, [-ratio, p, c])

    def _next_lazy_step(self) -> Candidate | None:
        """Pops the top element and asks for S + {v} (or decides at once if cached)."""
        base = self._spec(self.chosen)
        while self.queue:
            _, p, c = self.queue[0]
            if p in self.chosen:
                heapq.heappop(self.queue)
                continue
            new_set = {**self.chosen, p: c}
            spec = self._spec(new_set)
            if spec is None or not self._fits(spec):
                heapq.heappop(self.queue)  # costs only grow with S: never fits again
                continue
            heapq.heappop(self.queue)
            self.waiting = [p, c]
            if spec.key() in self.cache:
                return None  # decided on the next ask, from the cache
            return self._request(spec, {"step": "lazy", "element": [p, c],
                                        "base": sorted(self.chosen.items())})
        return None

    def _eager_request(self) -> Candidate | None:
        """Eager greedy: every remaining feasible element is evaluated against S each round."""
        for p, c in self._elements():
            spec = self._spec({**self.chosen, p: c})
            if spec is None or not self._fits(spec):
                continue
            candidate = self._request(spec, {"step": "eager", "element": [p, c]})
            if candidate is not None:
                return candidate
        return None

    def _decide(self) -> None:
        base = self._spec(self.chosen)
        base_score = self.cache[base.key()]
        waiting, self.waiting = self.waiting, None
        if waiting[0] == "eager":
            best = None
            for p, c in self._elements():
                spec = self._spec({**self.chosen, p: c})
                if spec is None or spec.key() not in self.cache or not self._fits(spec):
                    continue
                ratio = self._ratio(self.rule, base, base_score, spec, self.cache[spec.key()])
                if best is None or ratio > best[0]:
                    best = (ratio, p, c)
            if best is None:
                self._finish_rule("no remaining element fits the budgets")
            elif self.cache[self._spec({**self.chosen, best[1]: best[2]}).key()] <= base_score:
                self._finish_rule("no remaining element improves the score")
            else:
                self._accept(best[1], best[2])
            return
        p, c = waiting
        spec = self._spec({**self.chosen, p: c})
        score = self.cache[spec.key()]
        ratio = self._ratio(self.rule, base, base_score, spec, score)
        next_bound = -self.queue[0][0] if self.queue else -math.inf
        if ratio >= next_bound:
            if score is None or score <= base_score:
                self._finish_rule("no remaining element improves the score")
            else:
                self._accept(p, c)
        elif ratio > -math.inf:
            heapq.heappush(self.queue, [-ratio, p, c])

    def _accept(self, position: int, choice: int) -> None:
        self.chosen[position] = choice
        spec = self._spec(self.chosen)
        self.paths[self.rule].append(self._record(spec, self.cache[spec.key()], [position, choice]))

    def _finish_rule(self, why: str) -> None:
        self.done_rules[self.rule] = why
        self.rule_index += 1
        self.queue, self.waiting = [], None
        if self.rule_index < len(self.cost_rules):
            self._start_rule()

    def _record(self, spec: Spec, score: float, element: list[int] | None) -> dict[str, Any]:
        costs = self.context.pricer.costs(spec).as_dict()
        return {"element": element, "decisions": self.context.space.to_decisions(spec),
                "score": score, "costs": costs, "evaluations": self.evaluations}

    # --- reporting and state ------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """The search path of each rule (each accepted set with its score and costs, as in
        the RCAS paper's Figures 3-4), its final set, and the number of evaluations."""
        rules = {}
        for rule in self.cost_rules:
            path = self.paths[rule]
            rules[rule] = {"path": path, "final": path[-1] if path else None,
                           "stopped": self.done_rules.get(rule)}
        finals = [r["final"] for r in rules.values() if r["final"] and r["final"]["score"] is not None]
        best = max(finals, key=lambda f: f["score"]) if finals else None
        report = {"rules": rules, "best": best, "evaluations": self.evaluations}
        if self.continuation is not None:
            done = {k: v for k, v in self.continuation.scores.items() if v is not None}
            top = max(done, key=done.get, default=None)
            report["local_search"] = {"trials": self.continuation.asked,
                                      "restarts": self.continuation.restarts,
                                      "best": None if top is None else {"key": top, "score": done[top]}}
        return report

    def get_config(self) -> dict[str, Any]:
        return {"cost_rules": list(self.cost_rules), "lazy": self.lazy, "fidelity": self.fidelity,
                "num_trials": self.num_trials, "max_rejections": self.max_rejections}

    def _state(self) -> dict[str, Any]:
        return {"cache": self.cache, "pending": sorted(self.pending), "evaluations": self.evaluations,
                "rule_index": self.rule_index, "chosen": [[p, c] for p, c in self.chosen.items()],
                "queue": self.queue, "first_pass_done": self.first_pass_done,
                "waiting": self.waiting, "paths": self.paths, "done_rules": self.done_rules,
                "continuation": (None if self.continuation is None
                                 else self.continuation.state_dict())}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self.cache = dict(state["cache"])
        self.pending = set(state["pending"])
        self.evaluations = int(state["evaluations"])
        self.rule_index = int(state["rule_index"])
        self.chosen = {int(p): int(c) for p, c in state["chosen"]}
        self.queue = [list(e) for e in state["queue"]]
        heapq.heapify(self.queue)
        self.first_pass_done = bool(state["first_pass_done"])
        self.waiting = state["waiting"]
        self.paths = {r: list(v) for r, v in state["paths"].items()}
        self.done_rules = dict(state["done_rules"])
        self.continuation = None
        if state.get("continuation") is not None:
            self.continuation = LocalSearch(fidelity=self.fidelity, max_rejections=self.max_rejections)
            self.continuation.setup(self.context, seed=self._seed + 1)
            self.continuation.load_state_dict(state["continuation"])


@STRATEGIES.register("rcas")
class RCAS(LazyGreedy):
    """RCAS: lazy greedy with each of the UC, APR and AMR cost rules; the best set wins.

    Example:
        >>> RCAS().cost_rules
        ('uc', 'apr', 'amr')
    """

    name = "rcas"
    flags = ()  # all three rules

    def __init__(self, *, lazy: bool = True, fidelity: str = "full", num_trials: int | None = None,
                 max_rejections: int = 2000):
        super().__init__(("uc", "apr", "amr"), lazy=lazy, fidelity=fidelity,
                         num_trials=num_trials, max_rejections=max_rejections)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["cost_rules"]
        return config
