"""Registers what a lower layer dispatches to by name, so that no import points up.

``costs`` prices a spec through ``costs.ESTIMATORS`` keyed by the space tag, and
``Constraints.for_device`` looks a preset up by name; the hyper space's estimator (which builds
the model, in ``builders``) and the presets (``devices``) sit above ``costs``. The package's
``__init__`` imports this module, so both are registered before anything can use them.
Importing it does not import TensorFlow: the builders load on the first hyper estimate.
"""

from __future__ import annotations

from keras_cnas import devices
from keras_cnas.costs.constraints import Constraints, register_device_budgets
from keras_cnas.costs.estimate import ESTIMATORS
from keras_cnas.costs.report import CostReport
from keras_cnas.spaces.base import Spec


def _device_budget(name: str) -> Constraints:
    return devices.get_device(name).constraints()


def _estimate_hyper(spec: Spec, bytes_per_element: int = 4) -> CostReport:
    """A HyperSpec is priced by building its model (no training): this imports TensorFlow."""
    from keras_cnas.builders.hyper import hyper_costs  # lazy: the Keras side

    return hyper_costs(spec, bytes_per_element)


register_device_budgets(_device_budget)
ESTIMATORS.add("hyper", _estimate_hyper)
