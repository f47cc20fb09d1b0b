"""The search engine: trials, the SQLite trial store, runners, and the search loop.

The public entry point is the function ``keras_cnas.search`` (``keras_cnas.api``), which
adds the default observers to :func:`run_search`.
"""

from keras_cnas.engine.callbacks import Progress, ProgressPrinter, SearchCallback, SearchInfo
from keras_cnas.engine.runners import RUNNERS, InProcessRunner, ProcessPoolRunner, Runner
# Registers "ray" in RUNNERS; the module imports ray itself only when a search starts, so
# this import stays cheap and works without ray installed.
from keras_cnas.engine.ray_runner import RayRunner
from keras_cnas.engine.search import (FinalizeError, SearchConfig, SearchDirError,
                                      SearchInterrupted, SearchResult, run_search)
from keras_cnas.engine.store import TrialStore
from keras_cnas.trial import Candidate, EvaluationResult, Trial, TrialStatus

__all__ = [
    "RUNNERS", "Candidate", "EvaluationResult", "FinalizeError", "InProcessRunner", "Progress",
    "ProgressPrinter", "ProcessPoolRunner", "RayRunner", "Runner", "SearchCallback", "SearchConfig",
    "SearchDirError", "SearchInfo", "SearchInterrupted", "SearchResult", "Trial", "TrialStatus",
    "TrialStore", "run_search",
]
