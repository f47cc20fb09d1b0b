"""Strategies on toy problems with a known optimum: constraints, async asks, resume.

A strategy sees only specs and trials, so each test drives it with a small loop that
turns every asked candidate into a finished trial scored by a synthetic objective.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Callable, Iterable

import numpy as np
import pytest

from keras_cnas.costs import Constraints, CostReport, estimate
from keras_cnas.errors import InfeasibleConstraintsError
from keras_cnas.spaces import (
    BlockSetSpace,
    BlockType,
    CategoricalSpace,
    CategoricalSpec,
    Descriptor,
    DescriptorSpace,
    Skeleton,
    Spec,
)
from keras_cnas.strategies import (
    STRATEGIES,
    LocalSearch,
    MonteCarlo,
    RandomSearch,
    RegularizedEvolution,
    SearchContext,
    Strategy,
)
from keras_cnas.trial import Trial, TrialStatus

# --- toy problems --------------------------------------------------------------------

#: The optimum of the categorical toy: a unimodal, separable objective.
TARGET = (5, 2, 6, 1, 4, 3)


def categorical_space() -> CategoricalSpace:
    return CategoricalSpace([8] * len(TARGET), ordered=True)


def categorical_objective(spec: Spec) -> float:
    assert isinstance(spec, CategoricalSpec)
    return -float(sum((d - t) ** 2 for d, t in zip(spec.decisions, TARGET)))


def categorical_estimate(spec: Spec) -> CostReport:
    """A synthetic cost for the table-like space (the analytic model has none)."""
    assert isinstance(spec, CategoricalSpec)
    return CostReport(params=100 + 10 * sum(spec.decisions))


def descriptor_space() -> DescriptorSpace:
    return DescriptorSpace((8, 8, 1), 4, max_conv_layers=3, max_filters=32, max_kernel=3,
                           max_fc_layers=1, max_hidden=64)


def residual_space() -> DescriptorSpace:
    """Strided convs, skips and global pooling: the skip moves and decisions."""
    return DescriptorSpace((8, 8, 1), 4, max_conv_layers=3, max_filters=32, max_kernel=3,
                           max_fc_layers=1, max_hidden=64, max_stride=2, max_skip_span=2,
                           global_pool=True)


def descriptor_objective(spec: Spec) -> float:
    """Smooth in the widths, best with 2 conv layers of 12 filters and one fc layer of 24."""
    assert isinstance(spec, Descriptor)
    score = -float(len(spec.conv_layers) - 2) ** 2 - float(len(spec.fc_layers) - 1) ** 2
    score -= sum(math.log2(layer.n_filters / 12) ** 2 for layer in spec.conv_layers)
    score -= sum(math.log2(layer.n_hidden / 24) ** 2 for layer in spec.fc_layers)
    return score


PROBLEMS = {
    # name: (space, objective, estimate, feasible bound on params, impossible bound)
    "categorical": (categorical_space, categorical_objective, categorical_estimate, 280, 50),
    "descriptor": (descriptor_space, descriptor_objective, estimate, 6000, 10),
    "residual": (residual_space, descriptor_objective, estimate, 3000, 10),
}

#: Small budgets per registered strategy, so every test runs in milliseconds.
SMALL = {
    "random": {"num_samples": 30},
    "montecarlo": {"num_random": 10, "num_adaptive": 16, "num_full": 6},
    "evolution": {"population_size": 8, "sample_size": 3, "num_trials": 30},
    "local_search": {"num_trials": 30},
    "bayesopt": {"num_trials": 16, "num_initial": 5, "num_proposals": 40},
    "tpe": {"num_trials": 25, "n_startup_trials": 5},
    # The trials here carry a score and no accuracy: reward the score.
    "reinforce": {"num_trials": 10, "reward_metric": None, "lstm_size": 8},
}
#: Strategies over sets of elements (they need a space with an empty choice, ignore seeds
#: and plan no fixed budget): tested in tests/test_lazy_greedy.py.
SET_STRATEGIES = ("lazy_greedy", "rcas")
#: Strategies the engine hands to their own driver (weight sharing): tests/test_benas.py.
DRIVEN_STRATEGIES = ("benas",)


def make(name: str, **overrides) -> Strategy:
    return STRATEGIES.get(name)(**{**SMALL[name], **overrides})


def context(problem: str, max_params: float | None = None) -> SearchContext:
    space, _, estimate_fn, _, _ = PROBLEMS[problem]
    return SearchContext(space(), Constraints(max_params=max_params), estimate_fn)


def score_of(problem: str, spec: Spec, fidelity: str) -> float:
    """Traction scores are a rank-preserving view of the full ones, as an early score is."""
    value = PROBLEMS[problem][1](spec)
    return value if fidelity == "full" else 0.5 * value - 1.0


class Loop:
    """Evaluates a strategy's candidates the way the engine would, with a toy objective.

    Each round asks up to ``batch`` candidates, then tells them in reverse order (the
    later asks finish first, as they do with parallel workers). ``fail`` picks trial ids
    that FAIL or turn out INFEASIBLE (a measured constraint broken).
    """

    def __init__(self, problem: str, batch: int = 1,
                 fail: Callable[[int], TrialStatus | None] = lambda trial_id: None):
        self.problem, self.batch, self.fail = problem, batch, fail
        self.trials: list[Trial] = []  # in ask order
        self.pending: list[Trial] = []
        self.told: list[Trial] = []  # in tell order

    def ask_round(self, strategy: Strategy) -> int:
        asked = 0
        for _ in range(self.batch):
            candidate = strategy.ask()
            if candidate is None:
                break
            trial = Trial.from_candidate(len(self.trials), candidate)
            self.trials.append(trial)
            self.pending.append(trial)
            asked += 1
        return asked

    def tell_round(self, strategy: Strategy) -> None:
        for trial in reversed(self.pending):
            status = self.fail(trial.id)
            if status is None:
                trial.status = TrialStatus.COMPLETED
                trial.score = score_of(self.problem, trial.spec, trial.fidelity)
            else:
                trial.status, trial.error = status, "synthetic"
            strategy.tell(trial)
            self.told.append(trial)
        self.pending = []

    def run(self, strategy: Strategy, max_rounds: int = 10_000) -> list[Trial]:
        for _ in range(max_rounds):
            asked = self.ask_round(strategy)
            self.tell_round(strategy)
            if not asked:
                return self.trials
        raise AssertionError(f"the strategy was still asking after {max_rounds} rounds")


def setup(strategy: Strategy, problem: str, max_params: float | None = None,
          seed: int = 0) -> Strategy:
    strategy.setup(context(problem, max_params), seed=seed)
    return strategy


def true_best(problem: str, trials: Iterable[Trial]) -> float:
    return max(PROBLEMS[problem][1](t.spec) for t in trials)


def asks(trials: Iterable[Trial]) -> list[tuple]:
    return [(t.spec.key(), t.fidelity, t.phase, json.dumps(t.info, sort_keys=True)) for t in trials]


def sometimes_fails(trial_id: int) -> TrialStatus | None:
    """Two trials in seven do not complete: one FAILED, one INFEASIBLE."""
    return {3: TrialStatus.FAILED, 5: TrialStatus.INFEASIBLE}.get(trial_id % 7)


# --- the package and the registry ---------------------------------------------------------


def test_importing_strategies_does_not_import_tensorflow():
    code = "import sys, keras_cnas.strategies; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_registered_strategy_has_a_small_budget_here():
    assert sorted([*SMALL, *SET_STRATEGIES, *DRIVEN_STRATEGIES]) == STRATEGIES.names()


@pytest.fixture(params=sorted(SMALL))
def name(request) -> str:
    return request.param


def test_defaults_are_the_papers_budgets():
    assert RandomSearch().planned_trials == 50
    assert MonteCarlo().planned_trials == 50 + 50 + 20
    assert RegularizedEvolution().planned_trials == 100


def test_defaults_work_and_config_round_trips_through_json(name):
    cls = STRATEGIES.get(name)
    assert cls.name == name
    setup(cls(), "categorical")
    config = json.loads(json.dumps(make(name).get_config()))
    assert cls(**config).get_config() == config
    assert repr(make(name)).startswith(cls.__name__ + "(")


def test_ask_before_setup_says_to_call_setup(name):
    with pytest.raises(RuntimeError, match=r"setup\(context\)"):
        make(name).ask()


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_runs_to_completion_and_every_ask_meets_the_constraints(name, problem):
    bound = PROBLEMS[problem][3]
    strategy = setup(make(name), problem, max_params=bound, seed=1)
    trials = Loop(problem).run(strategy)
    assert len(trials) == strategy.planned_trials
    assert strategy.ask() is None and strategy.ask() is None
    space, estimate_fn = strategy.context.space, strategy.context.pricer.costs
    for trial in trials:
        space.validate(trial.spec)
        assert estimate_fn(trial.spec).params <= bound, trial.spec
    keys = [(t.spec.key(), t.fidelity) for t in trials]
    assert len(set(keys)) == len(keys), "a spec was asked for twice at the same fidelity"


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_async_asks_with_failed_and_infeasible_trials_run_to_completion(name, problem):
    strategy = setup(make(name), problem, seed=2)
    loop = Loop(problem, batch=4, fail=sometimes_fails)
    trials = loop.run(strategy)
    assert len(trials) == strategy.planned_trials
    assert {t.status for t in trials} == {TrialStatus.COMPLETED, TrialStatus.FAILED,
                                          TrialStatus.INFEASIBLE}
    keys = [(t.spec.key(), t.fidelity) for t in trials]
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_impossible_constraints_stop_with_the_bound_and_the_cheapest_cost(name, problem):
    impossible = PROBLEMS[problem][4]
    strategy = setup(make(name, max_rejections=50), problem, max_params=impossible)
    with pytest.raises(InfeasibleConstraintsError,
                       match=rf"cheapest costs seen: params [\d,]+ vs max_params={impossible}"):
        Loop(problem).run(strategy)
    assert strategy.rejections == 50


def resumed(strategy: Strategy, problem: str) -> Strategy:
    """A new instance continuing from ``strategy``'s JSON state, as after a kill."""
    state = json.loads(json.dumps(strategy.state_dict()))
    fresh = STRATEGIES.get(strategy.name)(**json.loads(json.dumps(strategy.get_config())))
    fresh.setup(context(problem), seed=123)  # the saved RNG state wins over the seed
    fresh.load_state_dict(state)
    return fresh


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_resume_from_a_json_state_dict_continues_with_the_same_asks(name, problem):
    reference = Loop(problem, batch=3, fail=sometimes_fails)
    reference.run(setup(make(name), problem, seed=5))

    loop = Loop(problem, batch=3, fail=sometimes_fails)
    strategy = setup(make(name), problem, seed=5)
    for round_ in range(1000):
        asked = loop.ask_round(strategy)
        if round_ % 2:
            # Snapshot with trials still running (the engine saves after every ask); the
            # running trials are then told to the resumed instance.
            strategy = resumed(strategy, problem)
        loop.tell_round(strategy)
        if round_ % 3 == 0:
            strategy = resumed(strategy, problem)  # and after every tell
        if not asked:
            break
    assert asks(loop.trials) == asks(reference.trials)


@pytest.mark.parametrize("strategy_name", ["bayesopt", "tpe"])
def test_caches_kept_between_asks_do_not_change_the_search(strategy_name):
    """BayesOpt keeps every spec's encoding and TPE Optuna's intersection search space from
    one ask to the next (for speed); an instance rebuilt from the JSON state before every
    ask, which has neither, asks for the same trials as one that keeps them."""
    reference = Loop("categorical").run(
        setup(make(strategy_name, num_trials=40), "categorical", seed=2))
    loop = Loop("categorical")
    strategy = setup(make(strategy_name, num_trials=40), "categorical", seed=2)
    while True:
        strategy = resumed(strategy, "categorical")
        asked = loop.ask_round(strategy)
        loop.tell_round(strategy)
        if not asked:
            break
    assert len(loop.trials) == 40
    assert asks(loop.trials) == asks(reference)


def test_bayesopts_fixed_kernel_posterior_is_scikit_learns_to_the_bit():
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    from keras_cnas.strategies.bayesopt import gp_posterior

    rng = np.random.default_rng(0)
    x_seen = np.concatenate([rng.integers(0, 2, (60, 12)), rng.normal(size=(60, 2))], axis=1)
    x_new = np.concatenate([rng.integers(0, 2, (150, 12)), rng.normal(size=(150, 2))], axis=1)
    y = x_seen[:, :3].sum(axis=1) + rng.normal(scale=0.3, size=60)
    for theta in ([0.3, 0.8, -3.0], [-1.0, 2.0, -9.0], [2.0, -0.5, -0.1]):
        kernel = (ConstantKernel(1.0, (1e-3, 1e3)) * RBF(1.0, (0.05, 50.0))
                  + WhiteKernel(1e-2, (1e-6, 1.0))).clone_with_theta(np.array(theta))
        model = GaussianProcessRegressor(kernel, normalize_y=True, optimizer=None)
        mu, sd = model.fit(x_seen, y).predict(x_new, return_std=True)
        ours = gp_posterior(theta, x_seen, y, x_new)
        assert ours[0].tobytes() == mu.tobytes() and ours[1].tobytes() == sd.tobytes()


@pytest.mark.parametrize("budget", [3, 41])
def test_set_budget_makes_the_strategy_spend_exactly_that_many_trials(name, budget):
    strategy = make(name)
    strategy.set_budget(budget)
    assert strategy.planned_trials == budget
    trials = Loop("categorical").run(setup(strategy, "categorical", seed=3))
    assert len(trials) == budget and strategy.stop_reason is None


def test_seeds_give_different_searches(name):
    a = Loop("categorical").run(setup(make(name), "categorical", seed=0))
    b = Loop("categorical").run(setup(make(name), "categorical", seed=1))
    assert asks(a) != asks(b)


def test_a_tiny_space_is_exhausted_without_repeats_or_endless_loops(name):
    space = CategoricalSpace([2, 2])  # 4 specs, fewer than any budget
    strategy = make(name)
    strategy.setup(SearchContext(space, Constraints(), categorical_estimate))
    trials = []
    for trial_id in range(100):
        candidate = strategy.ask()
        if candidate is None:
            break
        trial = Trial.from_candidate(trial_id, candidate)
        trial.status, trial.score = TrialStatus.COMPLETED, float(sum(candidate.spec.decisions))
        strategy.tell(trial)
        trials.append(trial)
    keys = [(t.spec.key(), t.fidelity) for t in trials]
    assert len(set(keys)) == len(keys) and {k for k, _ in keys} <= {"00", "01", "10", "11"}
    assert strategy.ask() is None
    if len(trials) < strategy.planned_trials:  # ended early: it says why
        assert "exhausted" in strategy.stop_reason or "converged" in strategy.stop_reason


BAD_ARGUMENTS = [
    (RandomSearch, {"num_samples": 0}, "num_samples"),
    (RandomSearch, {"num_samples": 2.5}, "num_samples"),
    (RandomSearch, {"fidelity": "medium"}, "fidelity"),
    (RandomSearch, {"max_rejections": 0}, "max_rejections"),
    (MonteCarlo, {"num_random": -1}, "num_random"),
    (MonteCarlo, {"num_adaptive": "50"}, "num_adaptive"),
    (MonteCarlo, {"num_full": True}, "num_full"),
    (MonteCarlo, {"num_random": 0, "num_adaptive": 0, "num_full": 0}, "num_random \\+ num_adaptive"),
    (MonteCarlo, {"n_best": 0}, "n_best"),
    (MonteCarlo, {"meta_probability": 1.5}, "meta_probability"),
    (MonteCarlo, {"max_move_tries": 0}, "max_move_tries"),
    (RegularizedEvolution, {"population_size": 0}, "population_size"),
    (RegularizedEvolution, {"sample_size": 30}, "sample_size: 30 exceeds population_size=20"),
    (RegularizedEvolution, {"num_trials": 0}, "num_trials"),
    (RegularizedEvolution, {"fidelity": None}, "fidelity"),
]


@pytest.mark.parametrize("cls, kwargs, match", BAD_ARGUMENTS,
                         ids=[f"{c.__name__}-{next(iter(k))}" for c, k, _ in BAD_ARGUMENTS])
def test_bad_constructor_arguments_raise_value_error_naming_the_argument(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


# --- Monte Carlo ------------------------------------------------------------------------------


def test_montecarlo_phases_fidelities_and_the_reevaluated_best():
    strategy = setup(MonteCarlo(num_random=5, num_adaptive=7, num_full=4), "categorical")
    trials = Loop("categorical").run(strategy)
    assert [t.phase for t in trials] == ["random"] * 5 + ["adaptive"] * 7 + ["full"] * 4
    assert [t.fidelity for t in trials] == ["traction"] * 12 + ["full"] * 4
    best_traction = max(trials[:12], key=lambda t: (t.score, -t.id))
    first_full = trials[12]
    assert first_full.info == {"move": "reevaluate", "parent": best_traction.id}
    assert first_full.spec == best_traction.spec
    # The rest of the full phase steps from full-fidelity results.
    assert all(t.info["parent"] >= 12 for t in trials[13:])


def test_montecarlo_finds_the_optimum_of_a_separable_toy_problem():
    for seed in range(4):
        trials = Loop("categorical").run(setup(MonteCarlo(), "categorical", seed=seed))
        assert len(trials) == 120
        assert true_best("categorical", trials) == 0.0, f"seed {seed}"
        assert max(trials, key=lambda t: (t.fidelity == "full", t.score)).spec.decisions == TARGET


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_montecarlo_beats_or_matches_random_search_on_average(problem):
    seeds = range(6)
    mc = [true_best(problem, Loop(problem).run(setup(MonteCarlo(), problem, seed=s)))
          for s in seeds]
    rs = [true_best(problem, Loop(problem).run(setup(RandomSearch(num_samples=120), problem, seed=s)))
          for s in seeds]
    assert np.mean(mc) >= np.mean(rs), (mc, rs)


@pytest.mark.parametrize("types, kind", [(None, "jump"), ("chain", "step")])
def test_montecarlo_works_on_a_blockset_space_through_decision_moves(types, kind):
    # The default block table has no order (grouped and plain types): jumps. A chain
    # (empty < ir_t1 < ir_t6, as NAS-Bench-Macro's) is ordered: ±1 steps.
    chain = [BlockType("ir_t1", 1), BlockType("ir_t6", 6)] if types == "chain" else None
    space = BlockSetSpace((16, 16, 3), 10, skeleton=Skeleton(
        stem_filters=8, stem_stride=2, stages=((8, 1, 2), (16, 2, 2)), head_filters=0),
        block_types=chain)
    assert space.ordered_decisions() == [kind == "step"] * 4
    strategy = MonteCarlo(num_random=5, num_adaptive=10, num_full=3)
    strategy.setup(SearchContext(space, Constraints(max_params=20_000), estimate), seed=0)
    trials = []
    for trial_id in range(100):
        candidate = strategy.ask()
        if candidate is None:
            break
        trial = Trial.from_candidate(trial_id, candidate)
        trial.status, trial.score = TrialStatus.COMPLETED, float(sum(candidate.spec.blocks))
        strategy.tell(trial)
        trials.append(trial)
    assert len(trials) == 18
    assert all(estimate(t.spec).params <= 20_000 for t in trials)
    moves = {t.info.get("move") for t in trials if t.phase == "adaptive"}
    assert moves - {"random"} == {kind}


def test_unordered_decisions_jump_and_ordered_ones_step():
    from keras_cnas.strategies.moves import DecisionMoves

    space = CategoricalSpace([4, 4], ordered=[True, False])
    spec = space.spec([1, 1])
    moves = DecisionMoves(space).moves(spec)
    assert [(m.kind, m.delta, m.value) for m in moves] == [
        ("step", 1, None), ("step", -1, None), ("jump", None, 0), ("jump", None, 2),
        ("jump", None, 3)]
    assert [DecisionMoves(space).apply(spec, m, None).decisions for m in moves] == [
        (2, 1), (0, 1), (1, 0), (1, 2), (1, 3)]
    # Mutations (evolution) follow the same rule.
    assert sorted(m.spec.decisions for m in space.mutations(spec, None)) == [
        (0, 1), (1, 0), (1, 2), (1, 3), (2, 1)]
    assert len(CategoricalSpace([4, 4]).mutations(spec, None)) == 6


def _improved(trial: Trial, earlier: list[Trial]) -> bool:
    peers = [t.score for t in earlier if t.ok and t.fidelity == trial.fidelity]
    return trial.ok and (not peers or trial.score > max(peers))


def test_coordinate_descent_repeats_an_improving_move():
    strategy = setup(MonteCarlo(num_random=6, num_adaptive=60, num_full=0), "categorical", seed=3)
    trials = Loop("categorical").run(strategy)
    repeats = 0
    for i in range(6, len(trials) - 1):
        trial, following = trials[i], trials[i + 1]
        if not _improved(trial, trials[:i]) or trial.info.get("move") != "step":
            assert not following.info.get("repeat")
            continue
        # The same step from the new best, unless it leaves the range or was asked before.
        index = int(trial.info["coordinate"][len("decisions["):-1])
        decisions = list(trial.spec.decisions)
        decisions[index] += trial.info["delta"]
        possible = 0 <= decisions[index] < 8 and all(
            t.spec.decisions != tuple(decisions) for t in trials[:i + 1])
        if possible:
            repeats += 1
            assert following.info == {**trial.info, "parent": trial.id, "repeat": True}
            assert following.spec.decisions == tuple(decisions)
        else:
            assert not following.info.get("repeat")
    assert repeats >= 3


def test_coordinate_descent_repeats_scale_moves_on_the_descriptor_space():
    strategy = setup(MonteCarlo(num_random=6, num_adaptive=60, num_full=0), "descriptor", seed=0)
    trials = Loop("descriptor").run(strategy)
    repeated = [t for t in trials if t.info.get("repeat")]
    assert repeated
    for t in repeated:
        parent = trials[t.info["parent"]]
        assert {k: t.info[k] for k in ("move", "coordinate") + (("alpha",) if "alpha" in t.info else ())} \
            == {k: parent.info[k] for k in ("move", "coordinate") + (("alpha",) if "alpha" in t.info else ())}


def _rejection_scenario(space: DescriptorSpace, base: Descriptor, seed: int):
    """A Monte Carlo search whose only result is ``base``, which sits at the params
    bound; returns the strategy's next candidate and the specs it checked on the way."""
    strategy = MonteCarlo(num_random=1, num_adaptive=1, num_full=0, meta_probability=0.0)
    bound = Constraints(max_params=estimate(base).params)
    strategy.setup(SearchContext(space, bound, estimate), seed=seed)
    assert strategy.ask() is not None
    strategy.tell(Trial(0, base, "traction", "random", TrialStatus.COMPLETED, score=1.0))
    checked: list[tuple[Spec, bool]] = []
    feasible = strategy.feasible

    def spy(spec: Spec) -> bool:
        ok = feasible(spec)
        checked.append((spec, ok))
        return ok

    strategy.feasible = spy  # type: ignore[method-assign]
    candidate = strategy.ask()
    assert candidate is not None and candidate.info["parent"] == 0, candidate
    return candidate, [(_changed_field(base, spec), ok) for spec, ok in checked]


def test_after_a_constraint_rejection_montecarlo_tries_a_different_coordinate():
    # Every coordinate of the base can move both ways, and exactly one way keeps it
    # within the bound: narrowing a filter, a larger pool or stride.
    space = DescriptorSpace((8, 8, 1), 4, min_conv_layers=1, max_conv_layers=1, max_filters=64,
                            max_kernel=5, max_pool=3, max_subsample=3, max_fc_layers=0)
    base = Descriptor((8, 8, 1), 4, conv_layers=((20, 3, 3, 2, 2, 2, 2),))
    rejections = 0
    for seed in range(20):
        candidate, checked = _rejection_scenario(space, base, seed)
        fields = [field for field, _ in checked]
        assert len(set(fields)) == len(fields), f"retried a coordinate that broke the bound: {checked}"
        assert all(not ok for _, ok in checked[:-1]) and checked[-1][1]
        assert candidate.info["coordinate"] == f"conv_layers[0].{fields[-1]}"
        rejections += len(checked) - 1
    assert rejections >= 10


def test_a_coordinate_rejected_one_way_is_tried_the_other_way_before_giving_up():
    # At the bound with pools and strides at their maximum, most coordinates fail one way
    # (infeasible or clipped); every seed must still find a move rather than sample.
    space = DescriptorSpace((8, 8, 1), 4, min_conv_layers=1, max_conv_layers=1, max_filters=64,
                            max_fc_layers=0)
    base = Descriptor((8, 8, 1), 4, conv_layers=((20, 3, 3, 2, 2, 2, 2),))
    for seed in range(20):
        candidate, checked = _rejection_scenario(space, base, seed)
        assert candidate.info["move"] == "scale" and checked[-1][1]


def _changed_field(base: Descriptor, spec: Spec) -> str:
    assert isinstance(spec, Descriptor)
    (a,), (b,) = base.conv_layers, spec.conv_layers
    changed = [f for f in a._fields if getattr(a, f) != getattr(b, f)]
    assert len(changed) == 1, (base, spec)
    return changed[0]


def _neighbours(decisions: tuple[int, ...]) -> set[tuple[int, ...]]:
    return {decisions[:i] + (d + delta,) + decisions[i + 1:]
            for i, d in enumerate(decisions) for delta in (1, -1) if 0 <= d + delta < 8}


@pytest.mark.parametrize("n_best", [1, 3])
def test_bases_are_drawn_from_the_n_best_so_far(n_best):
    strategy = setup(MonteCarlo(num_random=10, num_adaptive=60, num_full=0, n_best=n_best),
                     "categorical", seed=4)
    loop = Loop("categorical")
    ranks = []
    while loop.ask_round(strategy):
        trial = loop.trials[-1]
        if trial.phase == "adaptive":
            ranking = sorted((t for t in loop.told if t.ok), key=lambda t: (-t.score, t.id))
            rank = [t.id for t in ranking].index(trial.info["parent"])
            if rank >= n_best:
                # Only once every neighbour of the N best has been asked for does a step
                # start from further down the ranking.
                asked = {t.spec.decisions for t in loop.trials[:-1]}
                assert all(_neighbours(t.spec.decisions) <= asked for t in ranking[:n_best])
            ranks.append(rank)
        loop.tell_round(strategy)
    assert len(ranks) == 60
    assert set(range(n_best)) <= set(ranks), "the N-best variant never stepped from a runner-up"


def test_async_asks_from_the_same_base_try_different_moves():
    strategy = setup(MonteCarlo(num_random=8, num_adaptive=20, num_full=0), "descriptor", seed=6)
    loop = Loop("descriptor", batch=8)
    loop.ask_round(strategy)
    loop.tell_round(strategy)
    batch = [strategy.ask() for _ in range(12)]  # twelve workers, no tell in between
    assert all(c is not None and c.phase == "adaptive" for c in batch)
    assert len({c.spec.key() for c in batch}) == 12
    assert all(c.spec.key() not in {t.spec.key() for t in loop.trials} for c in batch)
    best = max(loop.trials, key=lambda t: t.score)
    from_best = [c for c in batch if c.info["parent"] == best.id]
    assert len(from_best) == 12  # n_best=1: every step starts from the best
    moves = [json.dumps({k: v for k, v in c.info.items() if k != "parent"}, sort_keys=True)
             for c in from_best if c.info["move"] != "add_layer"]
    assert len(set(moves)) == len(moves)


def test_montecarlo_adaptive_phase_without_any_completed_trial_falls_back_to_sampling():
    strategy = setup(MonteCarlo(num_random=2, num_adaptive=3, num_full=0), "categorical")
    batch = [strategy.ask() for _ in range(5)]
    assert [c.info for c in batch[2:]] == [
        {"move": "random", "reason": "no completed trial to step from"}] * 3


# --- local search ------------------------------------------------------------------------------


def test_local_search_neighbours_name_their_incumbents_trial_as_parent():
    """The parent is a trial id (what weight inheritance reads), of the incumbent: the
    neighbour differs from it in one decision."""
    from keras_cnas.strategies.local_search import neighbours

    strategy = setup(LocalSearch(num_trials=60), "categorical", seed=1)
    trials = Loop("categorical", fail=sometimes_fails).run(strategy)
    children = [t for t in trials if t.info["move"] == "neighbour"]
    assert len(children) > 20 and strategy.restarts >= 1
    space = categorical_space()
    for child in children:
        parent = trials[child.info["parent"]]
        assert parent.id < child.id and parent.ok
        assert child.info["parent_key"] == parent.spec.key()
        assert child.spec.key() in {s.key() for s in neighbours(space, parent.spec)}


def test_local_search_climbs_from_the_start_it_is_given():
    start = categorical_space().spec([0, 0, 0, 0, 0, 0])
    config = LocalSearch(num_trials=30, start=start).get_config()
    strategy = setup(STRATEGIES.get("local_search")(**json.loads(json.dumps(config))), "categorical")
    trials = Loop("categorical").run(strategy)
    assert trials[0].spec.key() == start.key() and trials[0].info == {"move": "start"}
    assert all(t.info["parent"] == 0 for t in trials[1:7])  # its six one-decision neighbours
    assert "start" not in LocalSearch().get_config()  # older searches' configs still match


def test_local_search_refuses_a_start_outside_the_space_or_the_constraints():
    from keras_cnas.errors import InvalidSpecError

    with pytest.raises(InvalidSpecError, match="start: .* is not in the space"):
        setup(LocalSearch(start=CategoricalSpace([9, 8]).spec([8, 0])), "categorical")
    with pytest.raises(InvalidSpecError, match="start: .* violates the constraints"):
        setup(LocalSearch(start=categorical_space().spec([7] * 6)), "categorical", max_params=280)
    with pytest.raises(ValueError, match="start: expected a spec"):
        LocalSearch(start=3)


# --- regularized evolution ---------------------------------------------------------------------


def test_evolution_ages_out_the_oldest_and_keeps_failures_out():
    strategy = setup(RegularizedEvolution(population_size=6, sample_size=3, num_trials=40),
                     "categorical", seed=0)
    loop = Loop("categorical", fail=sometimes_fails)
    while loop.ask_round(strategy):
        loop.tell_round(strategy)
        completed = [t.id for t in loop.told if t.ok]
        assert [m.id for m in strategy.population] == completed[-6:]
    assert any(t.phase == "mutation" for t in loop.trials)
    # The best of the initial population aged out even though it was the best.
    initial_best = max((t for t in loop.trials[:6] if t.ok), key=lambda t: t.score)
    assert initial_best.id not in {m.id for m in strategy.population}


def test_evolution_mutates_tournament_winners_and_beats_its_initial_population():
    for seed in range(3):
        strategy = setup(RegularizedEvolution(population_size=10, sample_size=4, num_trials=80),
                         "categorical", seed=seed)
        trials = Loop("categorical").run(strategy)
        children = [t for t in trials if t.phase == "mutation"]
        assert len(children) == 70 and all(t.info["move"] == "set" for t in children)
        for child in children:
            parent = trials[child.info["parent"]]
            assert sum(a != b for a, b in zip(parent.spec.decisions, child.spec.decisions)) == 1
        assert true_best("categorical", trials[10:]) > true_best("categorical", trials[:10])


def test_evolution_samples_at_random_while_the_population_is_still_running():
    strategy = setup(RegularizedEvolution(population_size=3, sample_size=2, num_trials=10),
                     "categorical")
    batch = [strategy.ask() for _ in range(5)]  # five workers, nothing told yet
    assert [c.phase for c in batch] == ["random"] * 5
    assert [c.info for c in batch[3:]] == [
        {"move": "random", "reason": "no completed trial in the population yet"}] * 2


def test_montecarlo_draws_trains_the_random_draw_that_uses_most_of_the_budget():
    from keras_cnas.strategies._common import budget_use

    space = DescriptorSpace((32, 32, 3), 10, max_conv_layers=8, max_filters=64, max_stride=2,
                            max_skip_span=2, global_pool=True, max_pool=1, max_subsample=1)
    budget = Constraints(max_params=80_000, max_madds=12_500_000)

    def uses(draws: int) -> list[float]:
        strategy = MonteCarlo(num_random=12, num_adaptive=0, num_full=0, draws=draws)
        strategy.setup(SearchContext(space, budget, estimate), seed=3)
        specs = [strategy.ask().spec for _ in range(12)]
        assert len({s.key() for s in specs}) == 12 and all(strategy.feasible(s) for s in specs)
        return [budget_use(estimate(s).as_dict(), budget) for s in specs]

    plain, fullest = uses(1), uses(16)
    assert np.mean(fullest) > 2 * np.mean(plain)
    assert MonteCarlo(draws=16).get_config()["draws"] == 16
    with pytest.raises(ValueError, match="draws: expected an integer >= 1, got 0"):
        MonteCarlo(draws=0)
