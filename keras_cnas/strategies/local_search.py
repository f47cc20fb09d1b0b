"""Local search: best-improvement hill climbing over one-decision neighbours, with
random restarts (White et al. 2020, "Local search is state of the art for NAS
benchmarks").

Pure Python + NumPy.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from keras_cnas.errors import InvalidSpecError
from keras_cnas.spaces.base import Spec, spec_from_dict
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

#: An ordered decision with more choices than this moves by at most ``ORDERED_RADIUS``
#: per step (a descriptor's filter count has hundreds); smaller ones try every value.
SMALL_DECISION = 5
ORDERED_RADIUS = 2


def neighbours(space: Any, spec: Spec) -> list[Spec]:
    """Every valid spec that differs from ``spec`` in one decision of the categorical view:
    any other value of an unordered or small decision, within ±``ORDERED_RADIUS`` on a
    large ordered one.

    Example:
        >>> from keras_cnas.spaces import CategoricalSpace
        >>> space = CategoricalSpace([3, 2])
        >>> [s.key() for s in neighbours(space, space.spec([0, 1]))]
        ['11', '21', '00']
    """
    decisions = space.to_decisions(spec)
    out, keys = [], {spec.key()}
    for i, (size, ordered) in enumerate(zip(space.decision_sizes(), space.ordered_decisions())):
        values = range(size)
        if ordered and size > SMALL_DECISION:
            values = range(max(0, decisions[i] - ORDERED_RADIUS),
                           min(size, decisions[i] + ORDERED_RADIUS + 1))
        for value in values:
            if value == decisions[i]:
                continue
            changed = list(decisions)
            changed[i] = value
            try:
                new = space.from_decisions(changed)
            except InvalidSpecError:  # e.g. a grouped block that does not fit there
                continue
            if new.key() not in keys:  # an inactive decision changes nothing
                keys.add(new.key())
                out.append(new)
    return out


@STRATEGIES.register("local_search")
class LocalSearch(TrialBudget, Strategy):
    """Best-improvement local search with random restarts.

    From a random feasible incumbent (or ``start``, first), every feasible one-decision neighbour
    (:func:`neighbours`) is evaluated, in random order; when all have finished, the best
    of them becomes the incumbent if it beats it, else the incumbent is a local optimum
    and the search restarts from a new random feasible point. Neighbours evaluated before
    (from an earlier incumbent) are not asked for again: their score is reused. Several
    asks before a tell (a parallel runner) take different neighbours; once all of an
    incumbent's neighbours are asked for, ``ask`` returns None until they are told.

    Args:
        num_trials: candidates to propose (its ``planned_trials``; ``max_trials`` sets it).
        fidelity: ``"full"`` or ``"traction"``, for every candidate.
        max_rejections: infeasible proposals in a row after which the search stops.
        start: the first incumbent (a spec of the space or its ``to_dict()``), e.g. a
            hand-designed reference to climb from; later restarts are random. None: random.
            Refused by ``setup`` if the space cannot express it or the constraints reject it.

    ``Candidate.info``: ``{"move": "restart"}`` (``"start"`` for ``start``) or ``{"move":
    "neighbour", "parent": id, "parent_key": key}``: the incumbent's trial id, so that with
    ``KerasEvaluator(inherit_weights=True)`` a neighbour starts from the incumbent's weights
    (:mod:`keras_cnas.training.inherit`); ``"parent"`` is left out for an incumbent that
    was not a trial of this search (lazy greedy's hand-over knows only scores).

    Example:
        >>> from keras_cnas.costs import Constraints, estimate
        >>> from keras_cnas.spaces import CategoricalSpace
        >>> from keras_cnas.trial import TrialStatus
        >>> local = LocalSearch(num_trials=40)
        >>> local.setup(SearchContext(CategoricalSpace([4] * 3), Constraints(), estimate))
        >>> scores = {}
        >>> for trial_id in range(40):
        ...     c = local.ask()
        ...     scores[c.spec.decisions] = score = -float(sum(abs(d - 2) for d in c.spec.decisions))
        ...     local.tell(Trial(trial_id, c.spec, c.fidelity, c.phase, TrialStatus.COMPLETED,
        ...                      score=score, info=dict(c.info)))
        >>> max(scores, key=scores.get), local.restarts >= 1
        ((2, 2, 2), True)
    """

    name = "local_search"

    def __init__(self, num_trials: int = 100, *, fidelity: str = "full",
                 max_rejections: int = 2000, start: Spec | Mapping[str, Any] | None = None):
        super().__init__(max_rejections=max_rejections)
        self.num_trials = check_count("num_trials", num_trials, 1)
        self.fidelity = check_fidelity("fidelity", fidelity)
        if start is not None and not isinstance(start, (Spec, Mapping)):
            raise ValueError(f"start: expected a spec (or its to_dict()) or None, got {start!r:.60}")
        self.start = None if start is None else spec_from_dict(
            start.to_dict() if isinstance(start, Spec) else dict(start))
        self._reset()

    def _reset(self) -> None:
        self.asked = 0
        self.restarts = 0
        self.scores: dict[str, float | None] = {}  # key -> score (None: failed)
        self.trial_ids: dict[str, int] = {}  # key -> id of the trial that scored it
        self.started = self.start is None  # ``start`` proposed (or none given)
        self._seen: list[str] = []
        self._seen_set: set[str] = set()
        self.incumbent: dict[str, Any] | None = None  # {"spec": ..., "key": ...}
        self.queue: list[dict[str, Any]] = []         # neighbours still to ask for (spec dicts)
        self.neighbourhood: list[str] = []            # keys of the incumbent's neighbours

    def setup(self, context: SearchContext, seed: int = 0) -> None:
        super().setup(context, seed)
        self._reset()
        if self.start is not None:
            try:
                context.space.to_decisions(self.start)
            except (InvalidSpecError, ValueError, TypeError) as e:
                raise InvalidSpecError(f"start: {self.start.key():.60} is not in the space "
                                       f"({e}); widen the space's bounds or drop start") from None
            if context.constraints and not context.pricer.check(self.start):
                raise InvalidSpecError(f"start: {self.start.key():.60} violates the "
                                       "constraints; relax them or drop start")

    def start_from(self, spec: Spec | None, known: Mapping[str, float | None]) -> None:
        """Continues from ``spec`` (evaluated: its score is in ``known``), never asking for
        the specs whose scores ``known`` holds; how lazy greedy hands over its best set once
        its greedy passes end. None: from a random restart."""
        self.scores.update(known)
        for key in known:
            if key not in self._seen_set:
                self._seen.append(key)
                self._seen_set.add(key)
        if spec is not None:
            self._become_incumbent(spec)

    # --- ask / tell ----------------------------------------------------------------------

    def ask(self) -> Candidate | None:
        if self.asked >= self.num_trials:
            return None
        while True:
            if self.incumbent is None:
                return self._restart()
            while self.queue:
                spec = spec_from_dict(self.queue.pop(0))
                if spec.key() in self._seen_set:
                    continue  # asked for since (a restart point elsewhere): its score comes
                if self.feasible(spec):
                    return self._propose(spec, "neighbour", self._parent_info())
                self.neighbourhood.remove(spec.key())
            if any(self.scores.get(k, "pending") == "pending" for k in self.neighbourhood):
                return None  # wait for the neighbours still running
            self._step()

    def _parent_info(self) -> dict[str, Any]:
        """The incumbent as a neighbour's parent: its trial id (for weight inheritance) when
        it was a trial of this search, and its key."""
        assert self.incumbent is not None
        key = self.incumbent["key"]
        return {"parent": self.trial_ids[key], "parent_key": key} if key in self.trial_ids \
            else {"parent_key": key}

    def _restart(self) -> Candidate | None:
        move = "restart"
        if not self.started:
            spec, move, self.started = self.start, "start", True
        else:
            spec = sample_unseen(self, self._seen_set)
        if spec is None:
            self.stop_reason = exhausted_reason(self.asked)
            logger.info("local search: %s", self.stop_reason)
            return None
        self.restarts += 1
        self.incumbent = {"spec": spec.to_dict(), "key": spec.key()}
        self.queue, self.neighbourhood = [], [spec.key()]  # wait for its own score first
        return self._propose(spec, move, {})

    def _propose(self, spec: Spec, move: str, info: dict[str, Any]) -> Candidate:
        self.asked += 1
        self._seen.append(spec.key())
        self._seen_set.add(spec.key())
        return Candidate(spec, self.fidelity, move, {"move": move, **info})

    def _become_incumbent(self, spec: Spec) -> None:
        self.incumbent = {"spec": spec.to_dict(), "key": spec.key()}
        near = neighbours(self.context.space, spec)
        order = self.rng.permutation(len(near)).tolist()
        near = [near[i] for i in order]
        constraints = self.context.constraints
        # Infeasible neighbours are skipped here (not counted as rejected proposals: an
        # incumbent at the bound has many), seen ones keep their score.
        self.neighbourhood = [s.key() for s in near
                              if not constraints or self.context.pricer.check(s)]
        wanted = set(self.neighbourhood)
        self.queue = [s.to_dict() for s in near if s.key() in wanted and s.key() not in self._seen_set]

    def _step(self) -> None:
        """Every neighbour has its score: move to the best one, or restart."""
        assert self.incumbent is not None
        here = self.scores.get(self.incumbent["key"])
        scored = [(self.scores[k], k) for k in self.neighbourhood
                  if k != self.incumbent["key"] and self.scores.get(k) is not None]
        best = max(scored, key=lambda sk: sk[0], default=None)
        if here is None and self.neighbourhood == [self.incumbent["key"]]:
            self.incumbent = None  # the restart point failed: restart again
            return
        if self.neighbourhood == [self.incumbent["key"]]:  # the restart point is scored
            self._become_incumbent(spec_from_dict(self.incumbent["spec"]))
            return
        if best is not None and (here is None or best[0] > here):
            self._become_incumbent(self._spec_of(best[1]))
        else:
            self.incumbent = None  # a local optimum: restart

    def _spec_of(self, key: str) -> Spec:
        incumbent = spec_from_dict(self.incumbent["spec"])  # type: ignore[index]
        return next(s for s in neighbours(self.context.space, incumbent) if s.key() == key)

    def tell(self, trial: Trial) -> None:
        self.scores[trial.spec.key()] = trial.score if trial.ok else None
        self.trial_ids[trial.spec.key()] = trial.id

    # --- config and state --------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        config = {"num_trials": self.num_trials, "fidelity": self.fidelity,
                  "max_rejections": self.max_rejections}
        if self.start is not None:  # absent otherwise: older searches' configs still match
            config["start"] = self.start.to_dict()
        return config

    def _state(self) -> dict[str, Any]:
        return {"asked": self.asked, "restarts": self.restarts, "scores": dict(self.scores),
                "trial_ids": dict(self.trial_ids), "started": self.started,
                "seen": list(self._seen), "incumbent": self.incumbent, "queue": list(self.queue),
                "neighbourhood": list(self.neighbourhood)}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self.asked = int(state["asked"])
        self.restarts = int(state["restarts"])
        self.scores = {str(k): (None if v is None else float(v)) for k, v in state["scores"].items()}
        # Absent from states saved before neighbours named their parent's trial id.
        self.trial_ids = {str(k): int(v) for k, v in state.get("trial_ids", {}).items()}
        self.started = bool(state.get("started", True))
        self._seen = [str(k) for k in state["seen"]]
        self._seen_set = set(self._seen)
        self.incumbent = None if state["incumbent"] is None else dict(state["incumbent"])
        self.queue = [dict(s) for s in state["queue"]]
        self.neighbourhood = [str(k) for k in state["neighbourhood"]]
