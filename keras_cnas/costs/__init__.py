"""Analytic costs (params, MAdds, FLOPs, memory eq. 6, peak activation) and Constraints.

Pure Python: importing this package never imports TensorFlow.
"""

from keras_cnas.costs.constraints import Constraints, Violation
from keras_cnas.costs.estimate import ESTIMATORS, estimate
from keras_cnas.costs.penalty import CostPenalty, penalty
from keras_cnas.costs.report import ANALYTIC_COSTS, CostReport

__all__ = ["ANALYTIC_COSTS", "Constraints", "CostPenalty", "CostReport", "ESTIMATORS", "Violation",
           "estimate", "penalty"]
