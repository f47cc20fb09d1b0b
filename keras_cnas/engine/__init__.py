"""The search engine: trials, the SQLite trial store, runners, and the search loop.

The public entry point is the function ``keras_cnas.search`` (a subpackage named
``search`` would be shadowed by it, hence ``engine``).
"""

from keras_cnas.engine.runners import RUNNERS, InProcessRunner, ProcessPoolRunner, Runner
# Registers "ray" in RUNNERS; the module imports ray itself only when a search starts, so
# this import stays cheap and works without ray installed.
from keras_cnas.engine.ray_runner import RayRunner
from keras_cnas.engine.search import (FinalizeError, SearchDirError, SearchInterrupted,
                                      SearchResult, search)
from keras_cnas.engine.store import TrialStore
from keras_cnas.trial import Candidate, EvaluationResult, Trial, TrialStatus

__all__ = [
    "RUNNERS", "Candidate", "EvaluationResult", "FinalizeError", "InProcessRunner", "ProcessPoolRunner", "RayRunner",
    "Runner", "SearchDirError", "SearchInterrupted", "SearchResult", "Trial", "TrialStatus", "TrialStore", "search",
]
