"""Training and evaluation: evaluators (Keras, tabular), callbacks, the fit recipe.

``Evaluator``, the tabular evaluator and ``DataSource`` (defined in ``keras_cnas.data.cache``,
named here for the evaluator's users) are pure Python; everything that
trains a Keras model (``KerasEvaluator.evaluate``, the callbacks, ``Ensemble``) loads
TensorFlow on first use.
"""

from __future__ import annotations

from keras_cnas._lazy import lazy_attributes
from keras_cnas.data.cache import DataSource, load_npz, save_npz
from keras_cnas.training.base import DIRECTIONS, EVALUATORS, Evaluator

# Imported eagerly so that EVALUATORS knows "keras" and "tabular" when a worker rebuilds an
# evaluator from JSON; neither module imports TensorFlow (the Keras one does so when it trains).
from keras_cnas.training.evaluator import REGULARIZERS, KerasEvaluator
from keras_cnas.optimizer import RCAS_RECIPE, OptimizerRecipe
from keras_cnas.training.settings import Fidelity, Measurement
from keras_cnas.training.tabular import (
    TABULAR_BENCHMARKS,
    TabularBenchmark,
    TabularEvaluator,
    load_table,
    tabular_problem,
)

# name -> module; imported on first use because they import TensorFlow.
_LAZY = {
    "NanGuard": "keras_cnas.training.callbacks",
    "TractionCallback": "keras_cnas.training.callbacks",
    "TrialTimeLimit": "keras_cnas.training.callbacks",
    "RewardPenalty": "keras_cnas.training.reward",
    "SharedCellSupernet": "keras_cnas.training.supernet",
    "Ensemble": "keras_cnas.training.ensemble",
    "majority_vote": "keras_cnas.training.ensemble",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "DIRECTIONS", "EVALUATORS", "REGULARIZERS", "TABULAR_BENCHMARKS", "DataSource", "Ensemble",
    "Evaluator", "Fidelity", "KerasEvaluator", "Measurement", "NanGuard", "OptimizerRecipe", "RCAS_RECIPE", "RewardPenalty", "SharedCellSupernet", "TabularBenchmark", "TabularEvaluator",
    "TractionCallback", "TrialTimeLimit", "load_npz", "load_table",
    "majority_vote", "save_npz", "tabular_problem",
]
