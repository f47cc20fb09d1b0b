"""Model-based search: a Gaussian-process surrogate ranks cheap feasible proposals by
expected improvement.

Every finished trial refits the surrogate (scikit-learn's ``GaussianProcessRegressor``)
on the architectures seen so far, encoded through the space's categorical view: an
unordered decision (operation type) as one-hot columns, an ordered one (width, depth) as
one number, plus the standardised log of each analytic cost. On one-hot columns the RBF
kernel is a Hamming kernel, so nothing assumes an order the choices do not have; the
costs are known for any proposal before it is trained and tell the model how big a
network is, which under a hard budget is most of what decides its accuracy. Proposals
are the one-decision mutations of the best architectures plus random samples, all
meeting the hard constraints; the one with the highest expected improvement over the
best score is asked for next.

Measured against Optuna's TPE sampler (ask/tell with ``constraints_func``) and a
random-forest ensemble on the same tables before choosing this one: see
``docs/results.md``.

Pure Python + NumPy; scikit-learn (and SciPy) are imported when the strategy is set up.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from keras_cnas._checks import is_real
from keras_cnas.errors import InvalidSpecError
from keras_cnas.spaces.base import Spec
from keras_cnas.strategies._common import (
    TrialBudget,
    Result,
    check_count,
    check_fidelity,
    exhausted_reason,
    probe_costs,
    sample_unseen,
)
from keras_cnas.strategies.base import STRATEGIES, SearchContext, Strategy
from keras_cnas.trial import Candidate, Trial

logger = logging.getLogger(__name__)

#: Analytic costs used as features when the search reports them (bounded ones always).
COST_FEATURES = ("params", "madds", "flops")


def gp_posterior(theta: Sequence[float], x_seen: np.ndarray, y: np.ndarray,
                 x_new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and standard deviation at ``x_new`` of the surrogate with its kernel's
    log hyper-parameters fixed at ``theta`` (constant, length scale, noise).

    The same operations, in the same order, as scikit-learn's
    ``GaussianProcessRegressor(ConstantKernel * RBF + WhiteKernel, normalize_y=True,
    optimizer=None)`` fit and ``predict(return_std=True)``, so the figures are the same to
    the bit (``tests/test_strategies.py`` checks it) -- without the per-fit input validation,
    kernel cloning and log-likelihood it does not need, most of a step's time.
    """
    from scipy.linalg import cho_solve, cholesky, solve_triangular
    from scipy.spatial.distance import cdist, pdist, squareform

    constant, length, noise = (np.exp(t) for t in theta)  # one by one, as the kernel sets them
    y_mean, y_std = np.mean(y, axis=0), np.std(y, axis=0)
    y_std = 1.0 if y_std == 0.0 else y_std
    y_train = (y - y_mean) / y_std
    rbf = squareform(np.exp(-0.5 * pdist(x_seen / length, metric="sqeuclidean")))
    np.fill_diagonal(rbf, 1)
    k = np.full(rbf.shape, constant) * rbf + noise * np.eye(len(x_seen))
    k[np.diag_indices_from(k)] += 1e-10  # the regressor's alpha
    lower = cholesky(k, lower=True, check_finite=False)
    alpha = cho_solve((lower, True), y_train, check_finite=False)
    k_trans = (np.full((len(x_new), len(x_seen)), constant)
               * np.exp(-0.5 * cdist(x_new / length, x_seen / length, metric="sqeuclidean"))
               + np.zeros((len(x_new), len(x_seen))))
    mu = y_std * (k_trans @ alpha) + y_mean
    v = solve_triangular(lower, k_trans.T, lower=True, check_finite=False)
    var = (np.full(len(x_new), constant) * np.ones(len(x_new)) + np.full(len(x_new), noise)).copy()
    var -= np.einsum("ij,ji->i", v.T, v)
    var[var < 0] = 0.0
    var = np.outer(var, y_std ** 2).reshape(*var.shape, -1)
    return mu, np.sqrt(np.squeeze(var, axis=1))


@STRATEGIES.register("bayesopt")
class BayesOpt(TrialBudget, Strategy):
    """Gaussian-process Bayesian optimisation over any space's categorical view.

    The first ``num_initial`` asks are feasible random samples; after that each finished
    trial refits the surrogate and ranks ``num_proposals`` random feasible specs plus every
    one-decision mutation of the ``num_parents`` best by expected improvement. Asks take
    the ranked proposals in order (several asks before a tell, on a parallel runner, get
    different ones); with none left, a random sample.

    Args:
        num_trials: candidates to propose (its ``planned_trials``; ``max_trials`` sets it).
        num_initial: random samples before the surrogate takes over.
        num_proposals: random feasible proposals ranked per step (mutations come on top).
        num_parents: the best trials whose mutations are proposals.
        refit_growth: the kernel's hyper-parameters are re-optimised at the first fit and
            whenever the results have grown by this factor since (1.5: at 10, 15, 23, 35,
            ... results); in between they are kept, which makes a fit one Cholesky solve.
        fidelity: ``"full"`` or ``"traction"``, for every candidate.
        max_rejections: infeasible proposals in a row after which the search stops.

    ``Candidate.info`` is ``{"move": "random"}`` for a sample or ``{"move": "model",
    "expected_improvement": ..., "predicted": ...}`` for a ranked proposal.

    Example:
        >>> from keras_cnas.costs import Constraints, estimate
        >>> from keras_cnas.spaces import CategoricalSpace
        >>> from keras_cnas.trial import TrialStatus
        >>> bo = BayesOpt(num_trials=20, num_initial=5)
        >>> bo.setup(SearchContext(CategoricalSpace([6] * 3), Constraints(), estimate))
        >>> best = -1e9
        >>> for trial_id in range(20):
        ...     c = bo.ask()
        ...     score = -float(sum((d - t) ** 2 for d, t in zip(c.spec.decisions, (4, 1, 3))))
        ...     best = max(best, score)
        ...     bo.tell(Trial(trial_id, c.spec, c.fidelity, c.phase, TrialStatus.COMPLETED,
        ...                   score=score, info=dict(c.info)))
        >>> best >= -1.0, bo.ask()
        (True, None)
    """

    name = "bayesopt"

    def __init__(self, num_trials: int = 100, *, num_initial: int = 10, num_proposals: int = 100,
                 num_parents: int = 5, refit_growth: float = 1.5, fidelity: str = "full",
                 max_rejections: int = 2000):
        super().__init__(max_rejections=max_rejections)
        self.num_trials = check_count("num_trials", num_trials, 1)
        self.num_initial = check_count("num_initial", num_initial, 2,
                                       "the surrogate needs two results to fit")
        self.num_proposals = check_count("num_proposals", num_proposals, 1)
        self.num_parents = check_count("num_parents", num_parents, 0)
        if not is_real(refit_growth) or not refit_growth > 1.0:
            raise ValueError(f"refit_growth: expected a number > 1 (1.5 re-optimises at 10, 15, "
                             f"23, ... results), got {refit_growth!r}")
        self.refit_growth = float(refit_growth)
        self.fidelity = check_fidelity("fidelity", fidelity)
        self._reset()

    def _reset(self) -> None:
        self.asked = 0
        self.failed = 0
        self.results: list[Result] = []  # completed trials, in the order told
        self._seen: list[str] = []       # spec keys asked for, in order
        self._seen_set: set[str] = set()
        self.ranked: list[dict[str, Any]] = []  # the last ranking: decisions, ei, mean
        self.theta: list[float] | None = None   # the kernel's log hyper-parameters
        self.fitted_at = 0                       # results when theta was last optimised

    def setup(self, context: SearchContext, seed: int = 0) -> None:
        super().setup(context, seed)
        self._reset()
        space = context.space
        self._sizes = space.decision_sizes()
        self._ordered = space.ordered_decisions()
        # Cost features: every analytic cost named in COST_FEATURES or bounded.
        probe = probe_costs(context)
        names = list(dict.fromkeys([*context.constraints.bounds, *COST_FEATURES]))
        self._cost_names = [n for n in names if probe.get(n) is not None]
        # key -> (feasible, log costs): estimates are pure, and a step ranks hundreds.
        self._costs: dict[str, tuple[bool, list[float]]] = {}
        self._blas: Any = None
        self._rows: dict[str, np.ndarray] = {}  # key -> its encoding (see _features)
        self._result_keys: list[str] = []        # keys of self.results, in order

    def _priced(self, spec: Spec, key: str | None = None) -> tuple[bool, list[float]]:
        """Whether ``spec`` meets the hard constraints, and its log costs (cached)."""
        key = spec.key() if key is None else key
        if key not in self._costs:
            constraints = self.context.constraints
            if not constraints and not self._cost_names:  # a space without costs
                return True, []
            # Estimates made in tell() are not proposals the engine logs as rejections.
            costs = self.context.pricer.costs(spec).as_dict()
            self._costs[key] = (not constraints or constraints.satisfied(costs),
                                [math.log1p(max(float(costs[n]), 0.0)) for n in self._cost_names])
        return self._costs[key]

    # --- ask / tell ----------------------------------------------------------------------

    def ask(self) -> Candidate | None:
        if self.asked >= self.num_trials:
            return None
        candidate = None
        while self.ranked and candidate is None:
            entry = self.ranked.pop(0)
            try:
                spec = self.context.space.from_decisions(entry["decisions"])
            except InvalidSpecError:  # pragma: no cover - proposals are valid specs
                continue
            if spec.key() not in self._seen_set and self.feasible(spec):
                candidate = Candidate(spec, self.fidelity, "model", {
                    "move": "model", "expected_improvement": entry["ei"],
                    "predicted": entry["mean"]})
        if candidate is None:
            spec = sample_unseen(self, self._seen_set)
            if spec is None:
                self.stop_reason = exhausted_reason(self.asked)
                logger.info("bayesopt: %s", self.stop_reason)
                return None
            candidate = Candidate(spec, self.fidelity, "random", {"move": "random"})
        self.asked += 1
        self._seen.append(candidate.spec.key())
        self._seen_set.add(candidate.spec.key())
        return candidate

    def tell(self, trial: Trial) -> None:
        if not trial.ok:
            self.failed += 1
            return
        self.results.append(Result.from_trial(trial, info={}))
        if len(self.results) >= self.num_initial and self.asked < self.num_trials:
            self.ranked = self._rank()

    # --- the surrogate ---------------------------------------------------------------------

    def _features(self, specs: Sequence[Spec], keys: Sequence[str]) -> np.ndarray:
        """The encoding of ``specs`` (one row each, log costs not yet standardised).

        A row depends on its spec alone, so it is computed once per key: a step encodes
        every result and a hundred proposals, most of them encoded at earlier steps.
        """
        missing = [(s, k) for s, k in zip(specs, keys) if k not in self._rows]
        if missing:
            space = self.context.space
            decisions = np.array([space.to_decisions(s) for s, _ in missing], dtype=float)
            columns = []
            for i, (size, ordered) in enumerate(zip(self._sizes, self._ordered)):
                if size < 2:
                    continue
                if ordered:  # a full-range change counts as much as a label change below
                    columns.append(decisions[:, i:i + 1] * (math.sqrt(2.0) / (size - 1)))
                else:
                    columns.append((decisions[:, i:i + 1] == np.arange(size)).astype(float))
            if self._cost_names:
                columns.append(np.array([self._priced(s, k)[1] for s, k in missing]))
            for (_, k), row in zip(missing, np.concatenate(columns, axis=1)):
                self._rows[k] = row
        return np.array([self._rows[k] for k in keys])

    def _proposals(self) -> tuple[list[Spec], list[str]]:
        """Feasible, unseen specs (and their keys): mutations of the best trials plus random
        samples."""
        space = self.context.space
        out: dict[str, Spec] = {}
        best = sorted(self.results, key=lambda r: (-r.score, r.id))[:self.num_parents]
        for parent in best:
            for mutation in space.mutations(parent.spec, self.rng):
                out.setdefault(mutation.spec.key(), mutation.spec)
        draws = 0
        randoms = 0
        while randoms < self.num_proposals and draws < 10 * self.num_proposals:
            draws += 1
            spec = space.sample(self.rng)
            key = spec.key()
            if key not in out:
                out[key] = spec
                randoms += 1
        kept = [(k, s) for k, s in out.items() if k not in self._seen_set and self._priced(s, k)[0]]
        return [s for _, s in kept], [k for k, _ in kept]

    def _rank(self) -> list[dict[str, Any]]:
        from scipy.stats import norm
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
        from threadpoolctl import ThreadpoolController

        proposals, keys = self._proposals()
        if not proposals:
            return []
        if len(self._result_keys) < len(self.results):  # results told since the last step
            self._result_keys += [r.spec.key() for r in self.results[len(self._result_keys):]]
        x_seen = self._features([r.spec for r in self.results], self._result_keys)
        x_new = self._features(proposals, keys)
        if self._cost_names:  # standardise the log costs on what has been seen
            k = len(self._cost_names)
            mean, std = x_seen[:, -k:].mean(axis=0), x_seen[:, -k:].std(axis=0)
            std = np.where(std > 1e-9, std, 1.0)
            x_seen[:, -k:] = (x_seen[:, -k:] - mean) / std
            x_new[:, -k:] = (x_new[:, -k:] - mean) / std
        y = np.array([r.score for r in self.results])
        optimise = self.theta is None or len(self.results) >= self.refit_growth * self.fitted_at
        # One BLAS thread: at these sizes (a few hundred points) threads only contend, and
        # on a busy machine a 200 x 200 Cholesky took 80 ms instead of 1.
        if self._blas is None:  # inspecting the loaded BLAS libraries takes a while: once
            self._blas = ThreadpoolController()
        with self._blas.limit(limits=1):
            if optimise:
                kernel = (ConstantKernel(1.0, (1e-3, 1e3)) * RBF(1.0, (0.05, 50.0))
                          + WhiteKernel(1e-2, (1e-6, 1.0)))
                model = GaussianProcessRegressor(kernel, normalize_y=True)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)  # a bound is fine here
                    model.fit(x_seen, y)
                mu, sd = model.predict(x_new, return_std=True)
                self.theta = [float(t) for t in model.kernel_.theta]
                self.fitted_at = len(self.results)
            else:
                mu, sd = gp_posterior(self.theta, x_seen, y, x_new)
        sd = np.maximum(sd, 1e-9)
        z = (mu - y.max()) / sd
        ei = (mu - y.max()) * norm.cdf(z) + sd * norm.pdf(z)
        order = np.argsort(-ei, kind="stable")[:16]  # enough for the asks before a tell
        space = self.context.space
        return [{"decisions": space.to_decisions(proposals[i]), "ei": float(ei[i]),
                 "mean": float(mu[i])} for i in order.tolist()]

    # --- config and state --------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        return {"num_trials": self.num_trials, "num_initial": self.num_initial,
                "num_proposals": self.num_proposals, "num_parents": self.num_parents,
                "refit_growth": self.refit_growth, "fidelity": self.fidelity,
                "max_rejections": self.max_rejections}

    def _state(self) -> dict[str, Any]:
        return {"asked": self.asked, "failed": self.failed, "seen": list(self._seen),
                "results": [r.to_dict() for r in self.results], "ranked": list(self.ranked),
                "theta": self.theta, "fitted_at": self.fitted_at}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self.asked = int(state["asked"])
        self.failed = int(state["failed"])
        self._seen = [str(k) for k in state["seen"]]
        self._seen_set = set(self._seen)
        self.results = [Result.from_dict(r) for r in state["results"]]
        self._result_keys = []
        self.ranked = [{"decisions": [int(d) for d in e["decisions"]], "ei": float(e["ei"]),
                        "mean": float(e["mean"])} for e in state["ranked"]]
        self.theta = None if state["theta"] is None else [float(t) for t in state["theta"]]
        self.fitted_at = int(state["fitted_at"])
