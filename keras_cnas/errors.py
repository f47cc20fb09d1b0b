"""Exception types shared across keras_cnas.

Two kinds matter to a search (as in KerasTuner): errors that make one *trial* fail or be
infeasible, and errors that stop the whole search. Every message names the argument,
shows what was received and says how to fix it.
"""


class KerasCnasError(Exception):
    """Base class of every keras_cnas error."""


class InvalidSpecError(KerasCnasError, ValueError):
    """An architecture spec (or its JSON) is malformed or describes an invalid network.

    Example message: ``conv_layers[3].pool_x: 2 exceeds the spatial width 1 reached
    after layer 2; use pool_x <= 1 or fewer subsampling layers``.
    """


class InfeasibleConstraintsError(KerasCnasError, RuntimeError):
    """No architecture satisfying the hard constraints could be found; stops a search."""


class NoBestTrialError(KerasCnasError, LookupError):
    """A finished search has no best trial (every trial broke a bound or failed); the
    message says which bound and names the closest trial."""


class UnknownCostError(KerasCnasError, KeyError):
    """A constraint bounds a cost that nothing in the search reports."""

    def __str__(self) -> str:  # KeyError would repr() the message; show it plainly.
        return str(self.args[0]) if self.args else ""


class DataError(KerasCnasError, ValueError):
    """A dataset is missing, malformed or inconsistent."""
