"""Registers what a lower layer dispatches to by name, so that no import points up.

``costs`` prices a spec through ``costs.ESTIMATORS`` keyed by the space tag, and
``Constraints.for_device`` looks a preset up by name; the hyper space's estimator (which builds
the model, in ``builders``) and the presets (``devices``) sit above ``costs``;
``DescriptorSpace.for_budget`` / ``BlockSetSpace.for_budget`` dispatch through
``spaces.base.SIZERS`` to ``costs.sizing`` (which prices specs, above ``spaces``). The
package's ``__init__`` imports this module, so all are registered before anything can use them.
Importing it does not import TensorFlow: the builders load on the first hyper estimate.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from keras_cnas import devices
from keras_cnas.costs.constraints import Constraints, register_device_budgets
from keras_cnas.costs.estimate import ESTIMATORS
from keras_cnas.costs.report import CostReport
from keras_cnas.costs.sizing import (
    SizedSpace,
    blockset_space_for_budget,
    descriptor_space_for_budget,
)
from keras_cnas.spaces.base import SIZERS, Space, Spec


def _device_budget(name: str) -> Constraints:
    return devices.get_device(name).constraints()


def _estimate_hyper(spec: Spec, bytes_per_element: int = 4) -> CostReport:
    """A HyperSpec is priced by building its model (no training): this imports TensorFlow."""
    from keras_cnas.builders.hyper import hyper_costs  # lazy: the Keras side

    return hyper_costs(spec, bytes_per_element)


def _sizer(size: Callable[..., SizedSpace]) -> Callable[..., Space]:
    """``Space.for_budget``: the sized space of a :mod:`keras_cnas.costs.sizing` function."""

    def for_budget(constraints: Constraints, input_shape: Sequence[int], num_classes: int,
                   **options: Any) -> Space:
        return size(constraints, input_shape, num_classes, **options).space

    return for_budget


register_device_budgets(_device_budget)
ESTIMATORS.add("hyper", _estimate_hyper)
SIZERS.add("descriptor", _sizer(descriptor_space_for_budget))
SIZERS.add("blockset", _sizer(blockset_space_for_budget))
