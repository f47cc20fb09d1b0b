"""``FixedSpecs``: evaluate a given list of architectures through the search engine.

For a baseline, a hand-picked shortlist, or a cell another method already chose (B-ENAS
trains its selected cell's final network this way), so that the result gets what every
search gets: the trial store, resume, ``summary.json``, the retrained ``best/`` model and
its export.

Not registered in ``STRATEGIES``: it needs its specs, which a command-line flag does not
carry. Pure Python.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from keras_cnas.spaces.base import Spec, spec_from_dict
from keras_cnas.strategies._common import check_fidelity
from keras_cnas.strategies.base import Strategy
from keras_cnas.trial import Candidate, Trial

__all__ = ["FixedSpecs"]


class FixedSpecs(Strategy):
    """Asks for each of ``specs`` once, in order; infeasible ones are skipped (and counted).

    Args:
        specs: the architectures to evaluate.
        fidelity: of every candidate.
        phase: the phase name the trials carry (e.g. ``"final"``).

    Example:
        >>> from keras_cnas.costs import Constraints, estimate
        >>> from keras_cnas.spaces import reference
        >>> from keras_cnas.strategies import SearchContext
        >>> spec = reference.vgg19((32, 32, 3), 10)
        >>> fixed = FixedSpecs([spec])
        >>> fixed.setup(SearchContext(None, Constraints(), estimate))
        >>> fixed.ask().spec == spec, fixed.ask()
        (True, None)
    """

    name = "fixed"

    def __init__(self, specs: Sequence[Spec], *, fidelity: str = "full", phase: str = "fixed"):
        super().__init__(max_rejections=max(1, len(specs) + 1) if specs else 1)
        if isinstance(specs, Spec) or not isinstance(specs, Sequence) or not specs \
                or not all(isinstance(s, Spec) for s in specs):
            raise ValueError(f"specs: expected a non-empty list of specs, got {specs!r:.120}")
        self.specs = list(specs)
        self.fidelity = check_fidelity("fidelity", fidelity)
        if not isinstance(phase, str) or not phase:
            raise ValueError(f"phase: expected a non-empty name such as 'final', got {phase!r}")
        self.phase = phase
        self.next = 0

    @property
    def planned_trials(self) -> int:
        return len(self.specs)

    def ask(self) -> Candidate | None:
        while self.next < len(self.specs):
            spec = self.specs[self.next]
            self.next += 1
            if self.feasible(spec):
                return Candidate(spec, self.fidelity, self.phase, {"index": self.next - 1})
        return None

    def tell(self, trial: Trial) -> None:
        pass  # nothing to learn: the list is fixed

    def get_config(self) -> dict[str, Any]:
        return {"specs": [s.to_dict() for s in self.specs], "fidelity": self.fidelity,
                "phase": self.phase}

    def _state(self) -> dict[str, Any]:
        return {"next": self.next}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self.next = int(state["next"])

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "FixedSpecs":
        return cls([spec_from_dict(s) for s in config["specs"]], fidelity=config["fidelity"],
                   phase=config["phase"])
