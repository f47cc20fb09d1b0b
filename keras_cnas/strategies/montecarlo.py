"""Monte Carlo search with adaptive coordinate descent: Algorithm II of the MIT-LL paper.

Three phases, by ask count:

1. ``random`` — ``num_random`` constrained random samples at traction fidelity (Alg. I);
2. ``adaptive`` — ``num_adaptive`` local moves at traction fidelity;
3. ``full`` — ``num_full`` local moves at full fidelity. Its first candidate is the best
   traction architecture re-evaluated at full fidelity; until a full-fidelity trial has
   completed, the traction ranking stands in for the full one.

An adaptive step takes a base architecture (the best so far at the phase's fidelity, or
one of the ``n_best`` best, §3.5) and applies one move from
:mod:`keras_cnas.strategies.moves`: with probability ``meta_probability`` a meta move
(add or remove a layer), else a layer move (one coordinate scaled by 1.5 or 0.66); on
spaces other than the descriptor space, a ±1 step along one ordered decision or a jump to
another value of an unordered one (``space.ordered_decisions()``). Coordinate descent:
when a trial beats its parent and becomes the best (ranks within the ``n_best``), the
next ask repeats its move from it; otherwise a new random move is drawn. A move that is
a no-op, gives an invalid network or breaks the constraints makes the step try a
different coordinate (§4.2); one whose spec was already asked for at this fidelity
(pending or finished) is skipped, which is also what makes several asks from the same
base, before any tell, try different moves. Every loop is bounded: ``max_move_tries``
moves per ask, then a random sample.

Pure Python + NumPy.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

from keras_cnas.strategies._common import (
    Result,
    check_count,
    check_probability,
    exhausted_reason,
    sample_fullest,
    sample_unseen,
    split_budget,
)
from keras_cnas.strategies.flags import StrategyFlag
from keras_cnas.strategies.base import STRATEGIES, SearchContext, Strategy
from keras_cnas.strategies.moves import Move, MoveSet, moves_for
from keras_cnas.trial import FIDELITIES, Candidate, Trial

logger = logging.getLogger(__name__)

#: Phase names, as they appear in ``Candidate.phase``.
PHASES = ("random", "adaptive", "full")


@STRATEGIES.register("montecarlo")
class MonteCarlo(Strategy):
    """Random sampling, then adaptive coordinate descent (MIT-LL Algorithm II).

    Args:
        num_random: random samples at traction fidelity (paper: 50).
        num_adaptive: adaptive samples at traction fidelity (paper: 50).
        num_full: adaptive samples at full fidelity (paper: 20).
        n_best: the base of each new move is drawn uniformly from the ``n_best`` best
            trials so far (§3.5); 1 is plain coordinate descent from the best.
        meta_probability: probability that a new move adds or removes a layer rather
            than scaling a coordinate (descriptor space only).
        max_move_tries: moves tried per ask before falling back to a random sample.
        max_rejections: infeasible proposals in a row after which the search stops.
        draws: each random sample is, of ``draws`` feasible unseen draws, the one that uses
            most of the budget (the least ``cost / bound`` over the bounded costs, priced,
            not trained); 1 is the paper's plain constrained sample.

    ``Candidate.info`` records each step, e.g. ``{"move": "scale", "coordinate":
    "conv_layers[2].n_filters", "alpha": 1.5, "parent": 17}``, with ``"repeat": True``
    when coordinate descent repeats an improving move; ``{"move": "reevaluate",
    "parent": id}`` for the first full-fidelity candidate; ``{"move": "random", "reason":
    ...}`` when no move could be made.

    Example:
        >>> from keras_cnas.costs import Constraints, estimate
        >>> from keras_cnas.spaces import CategoricalSpace
        >>> from keras_cnas.trial import TrialStatus
        >>> mc = MonteCarlo(num_random=10, num_adaptive=30, num_full=0)
        >>> mc.setup(SearchContext(CategoricalSpace([10] * 3), Constraints(), estimate))
        >>> scores = {}
        >>> for trial_id in range(mc.planned_trials):
        ...     c = mc.ask()
        ...     score = -sum((d - 6) ** 2 for d in c.spec.decisions)   # optimum at (6, 6, 6)
        ...     scores[c.spec.decisions] = score
        ...     mc.tell(Trial(trial_id, c.spec, c.fidelity, c.phase, TrialStatus.COMPLETED,
        ...                   score=score, info=dict(c.info)))
        >>> max(scores, key=scores.get), mc.ask()
        ((6, 6, 6), None)
    """

    name = "montecarlo"
    flags = (
        StrategyFlag("num_random", 50, "Random samples (paper: 50).", low=0),
        StrategyFlag("num_adaptive", 50, "Adaptive samples at traction (paper: 50).", low=0),
        StrategyFlag("num_full", 20, "Adaptive samples trained fully (paper: 20).", low=0),
        StrategyFlag("n_best", 1, "Move from one of the N best (§3.5).", low=1),
        StrategyFlag("draws", 1, "Each random sample: of this many feasible draws, the one "
                     "using most of the budget (1: the paper's plain sample).", low=1),
    )

    def __init__(self, num_random: int = 50, num_adaptive: int = 50, num_full: int = 20, *,
                 n_best: int = 1, meta_probability: float = 0.2, max_move_tries: int = 100,
                 max_rejections: int = 2000, draws: int = 1):
        super().__init__(max_rejections=max_rejections)
        self.num_random = check_count("num_random", num_random, 0)
        self.num_adaptive = check_count("num_adaptive", num_adaptive, 0)
        self.num_full = check_count("num_full", num_full, 0)
        if self.num_random + self.num_adaptive + self.num_full == 0:
            raise ValueError(
                "num_random + num_adaptive + num_full: expected at least 1 trial, got 0; "
                "the paper uses num_random=50, num_adaptive=50, num_full=20")
        self.n_best = check_count("n_best", n_best, 1, "1 is plain coordinate descent")
        self.meta_probability = check_probability("meta_probability", meta_probability)
        self.max_move_tries = check_count("max_move_tries", max_move_tries, 1)
        self.draws = check_count("draws", draws, 1, "1 is the paper's plain random sample")
        self._moveset: MoveSet | None = None
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self.failed = 0  # FAILED / INFEASIBLE trials told
        self.results: list[Result] = []  # completed trials, in the order told
        self._by_id: dict[int, Result] = {}
        self._seen: dict[str, list[str]] = {f: [] for f in FIDELITIES}  # asked, per fidelity
        self._seen_sets: dict[str, set[str]] = {f: set() for f in FIDELITIES}
        # The trial whose move to repeat on the next ask (coordinate descent).
        self._streak: dict[str, Any] | None = None

    def setup(self, context: SearchContext, seed: int = 0) -> None:
        super().setup(context, seed)
        self._moveset = moves_for(context.space)

    @property
    def planned_trials(self) -> int:
        return self.num_random + self.num_adaptive + self.num_full

    def set_budget(self, max_trials: int) -> None:
        """Scales the random / adaptive / full split (paper: 50 / 50 / 20) to ``max_trials``;
        a phase the plan has keeps at least one trial (``max_trials=3``: 1 / 1 / 1), so
        the search still ends at full fidelity."""
        check_count("max_trials", max_trials, 1)
        self.num_random, self.num_adaptive, self.num_full = split_budget(
            max_trials, [self.num_random, self.num_adaptive, self.num_full])

    def phase(self, index: int) -> tuple[str, str] | None:
        """(phase, fidelity) of the ``index``-th ask (0-based), None past the last one."""
        if index < self.num_random:
            return "random", "traction"
        if index < self.num_random + self.num_adaptive:
            return "adaptive", "traction"
        if index < self.planned_trials:
            return "full", "full"
        return None

    def ranking(self, fidelity: str) -> list[Result]:
        """Completed trials at ``fidelity``, best first (ties: the earlier trial first)."""
        return sorted((r for r in self.results if r.fidelity == fidelity),
                      key=lambda r: (-r.score, r.id))

    # --- ask ----------------------------------------------------------------------------

    def ask(self) -> Candidate | None:
        where = self.phase(self.asked)
        if where is None:
            return None
        phase, fidelity = where
        if phase == "random":
            candidate = self._random_candidate(phase, fidelity, {})
        else:
            candidate = None
            if phase == "full" and self.asked == self.num_random + self.num_adaptive:
                candidate = self._reevaluate()
            if candidate is None:
                candidate = self._adaptive_step(phase, fidelity)
        if candidate is None:
            self.stop_reason = f"{exhausted_reason(self.asked)} (at {fidelity} fidelity)"
            logger.info("montecarlo: %s", self.stop_reason)
            return None
        self.asked += 1
        key = candidate.spec.key()
        self._seen[fidelity].append(key)
        self._seen_sets[fidelity].add(key)
        return candidate

    def _random_candidate(self, phase: str, fidelity: str,
                          info: Mapping[str, Any]) -> Candidate | None:
        # Pricing is free next to training: with draws > 1, train the draw that uses most
        # of the budget (random samples of a residual space mostly use a few % of it).
        spec = (sample_unseen(self, self._seen_sets[fidelity]) if self.draws == 1
                else sample_fullest(self, self._seen_sets[fidelity], self.draws))
        return None if spec is None else Candidate(spec, fidelity, phase, dict(info))

    def _reevaluate(self) -> Candidate | None:
        """The best traction architecture at full fidelity (the full phase's first ask)."""
        ranking = self.ranking("traction")
        if not ranking or ranking[0].spec.key() in self._seen_sets["full"]:
            return None
        best = ranking[0]
        return Candidate(best.spec, "full", "full", {"move": "reevaluate", "parent": best.id})

    def _adaptive_step(self, phase: str, fidelity: str) -> Candidate | None:
        ranking = self.ranking(fidelity)
        if not ranking and fidelity == "full":
            # No full-fidelity result yet (the re-evaluation may still be running): step
            # from the traction ranking rather than sample blindly.
            ranking = self.ranking("traction")
        streak, self._streak = self._streak, None
        if not ranking:
            return self._random_candidate(
                phase, fidelity, {"move": "random", "reason": "no completed trial to step from"})
        top = ranking[:self.n_best]
        repeat: list[Move] = []
        base = self._streak_base(streak, fidelity, top)
        if base is not None:
            move = Move.from_info(base.info)
            assert move is not None  # only trials with a move start a streak
            repeat = [move]
        else:
            base = top[int(self.rng.integers(len(top)))]
        # If every move of the base is used up, step from the next best ones.
        bases = [base] + [r for r in ranking if r.id != base.id]
        budget = self.max_move_tries
        candidate = None
        for i, b in enumerate(bases):
            candidate, budget = self._step_from(b, repeat if i == 0 else [], phase, fidelity, budget)
            if candidate is not None or budget <= 0:
                break
        if candidate is None:
            candidate = self._random_candidate(
                phase, fidelity, {"move": "random", "reason":
                                  f"no new feasible move found in {self.max_move_tries} tries"})
        return candidate

    def _streak_base(self, streak: Mapping[str, Any] | None, fidelity: str,
                     top: Sequence[Result]) -> Result | None:
        """The trial whose improving move to repeat, if it is still among the best."""
        if streak is None or streak["fidelity"] != fidelity:
            return None
        return next((r for r in top if r.id == streak["trial"]), None)

    def _step_from(self, base: Result, repeat: list[Move], phase: str, fidelity: str,
                   budget: int) -> tuple[Candidate | None, int]:
        """One move from ``base``: ``repeat`` first, then random ones; (candidate, budget left)."""
        assert self._moveset is not None
        moves = self._moveset.moves(base.spec)
        meta = [m for m in moves if m.is_meta]
        layer = [m for m in moves if not m.is_meta]
        use_meta = bool(meta) and (not layer or self.rng.random() < self.meta_probability)
        first, second = (meta, layer) if use_meta else (layer, meta)
        order = (repeat + [first[i] for i in self.rng.permutation(len(first)).tolist()]
                 + [second[i] for i in self.rng.permutation(len(second)).tolist()])
        seen = self._seen_sets[fidelity]
        # After a rejected or no-op move the next moves go to other coordinates (§4.2).
        # The rejected coordinate's other moves (typically the other direction: at the
        # params bound widening fails but narrowing is fine) wait for a second pass, after
        # every other coordinate has had its turn, so a base with a valid move yields one.
        rejected: set[str] = set()
        deferred: list[Move] = []
        tried: set[Move] = set()
        for first_pass, queue in ((True, order), (False, deferred)):
            for k, move in enumerate(queue):
                if budget <= 0:
                    return None, budget
                if move in tried:
                    continue
                if first_pass and move.coordinate in rejected:
                    deferred.append(move)
                    continue
                budget -= 1
                tried.add(move)
                spec = self._moveset.apply(base.spec, move, self.rng)
                if spec is None:
                    rejected.add(move.coordinate)
                    continue
                if spec.key() in seen:  # asked already (pending or finished): another move
                    continue
                if not self.feasible(spec):
                    rejected.add(move.coordinate)
                    continue
                info: dict[str, Any] = {**move.to_info(), "parent": base.id}
                if first_pass and k < len(repeat):
                    info["repeat"] = True
                return Candidate(spec, fidelity, phase, info), budget
        return None, budget

    # --- tell ---------------------------------------------------------------------------

    def tell(self, trial: Trial) -> None:
        if not trial.ok:
            self.failed += 1
            return
        move = Move.from_info(trial.info)
        info: dict[str, Any] = move.to_info() if move is not None else {}
        if isinstance(trial.info.get("parent"), int):
            info["parent"] = trial.info["parent"]
        result = Result.from_trial(trial, info=info)
        ahead = sum(1 for r in self.results if r.fidelity == result.fidelity and r.score >= result.score)
        self.results.append(result)
        self._by_id[result.id] = result
        if move is None:
            return
        parent = self._by_id.get(info.get("parent", -1))
        beats_parent = (parent is None or parent.fidelity != result.fidelity
                        or result.score > parent.score)
        if beats_parent and ahead < self.n_best:
            # An improving step: keep going in the same direction from here.
            self._streak = {"trial": result.id, "fidelity": result.fidelity}

    # --- config and state -----------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        return {"num_random": self.num_random, "num_adaptive": self.num_adaptive,
                "num_full": self.num_full, "n_best": self.n_best,
                "meta_probability": self.meta_probability, "max_move_tries": self.max_move_tries,
                "max_rejections": self.max_rejections, "draws": self.draws}

    def _state(self) -> dict[str, Any]:
        return {"asked": self.asked, "failed": self.failed,
                "results": [r.to_dict() for r in self.results],
                "seen": {f: list(keys) for f, keys in self._seen.items()},
                "streak": None if self._streak is None else dict(self._streak)}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self.asked = int(state["asked"])
        self.failed = int(state["failed"])
        self.results = [Result.from_dict(r) for r in state["results"]]
        self._by_id = {r.id: r for r in self.results}
        self._seen = {f: [str(k) for k in state["seen"].get(f, [])] for f in FIDELITIES}
        self._seen_sets = {f: set(keys) for f, keys in self._seen.items()}
        streak = state.get("streak")
        self._streak = None if streak is None else {"trial": int(streak["trial"]),
                                                    "fidelity": str(streak["fidelity"])}
