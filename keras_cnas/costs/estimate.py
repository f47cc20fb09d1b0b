"""``estimate(spec)``: the analytic costs of any spec, dispatched on its space."""

from __future__ import annotations

from typing import Callable

from keras_cnas.costs.blockset import estimate_blockset
from keras_cnas.costs.descriptor import estimate_descriptor
from keras_cnas.costs.report import CostReport
from keras_cnas.errors import InvalidSpecError
from keras_cnas.registry import Registry
from keras_cnas.spaces.base import Spec

Estimator = Callable[..., CostReport]
#: Cost estimators by spec ``SPACE`` tag; register one for a new space.
ESTIMATORS: Registry[Estimator] = Registry("cost estimator")
ESTIMATORS.add("descriptor", estimate_descriptor)
ESTIMATORS.add("blockset", estimate_blockset)


def estimate(spec: Spec, bytes_per_element: int = 4) -> CostReport:
    """The analytic costs of ``spec``: params, MAdds, FLOPs, memory, peak activation.

    Args:
        spec: any spec with a registered estimator (descriptor, block-set genotype).
        bytes_per_element: B_pe of eq. 6: 4 for float32, 1 for int8.

    Example:
        >>> from keras_cnas.spaces import reference
        >>> report = estimate(reference.mobilenet_v2((224, 224, 3), 1000))
        >>> report.params
        3538984
    """
    if isinstance(bytes_per_element, bool) or not isinstance(bytes_per_element, int) \
            or bytes_per_element < 1:
        raise ValueError(f"bytes_per_element: expected a positive int (4 for float32, 1 for "
                         f"int8), got {bytes_per_element!r}")
    tag = getattr(spec, "SPACE", None)
    if tag not in ESTIMATORS:
        raise InvalidSpecError(
            f"spec: no analytic cost model for {type(spec).__name__} (space {tag!r}); "
            f"estimators exist for: {', '.join(ESTIMATORS.names())}")
    return ESTIMATORS.get(tag)(spec, bytes_per_element)
