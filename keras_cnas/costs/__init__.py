"""Analytic costs (params, MAdds, FLOPs, memory eq. 6, peak activation), deployment costs
(TFLite Micro ``arena_bytes``, ``tflite_bytes``) priced from the spec, the Pricer and
Constraints.

Pure Python: importing this package never imports TensorFlow.
"""

from keras_cnas.costs.constraints import Constraints, Violation
from keras_cnas.costs.deployment import DEPLOYMENT_COSTS, ExportTarget, deployment_costs
from keras_cnas.costs.estimate import ESTIMATORS, estimate
from keras_cnas.costs.penalty import CostPenalty, penalty
from keras_cnas.costs.pricer import Pricer, Verdict
from keras_cnas.costs.report import ANALYTIC_COSTS, CostReport

__all__ = ["ANALYTIC_COSTS", "DEPLOYMENT_COSTS", "Constraints", "CostPenalty", "CostReport",
           "ESTIMATORS", "ExportTarget", "Pricer", "Verdict", "Violation", "deployment_costs",
           "estimate", "penalty"]
