"""``estimate(spec)``: the analytic costs of any spec, dispatched on its space, or the
costs from a space's cost table (tabular benchmarks)."""

from __future__ import annotations

from typing import Callable

from keras_cnas.costs.blockset import estimate_blockset
from keras_cnas.costs.descriptor import estimate_descriptor
from keras_cnas.costs.enas_cell import estimate_enas_cell
from keras_cnas.costs.report import CostReport
from keras_cnas.costs.resnet import estimate_resnet
from keras_cnas.errors import InvalidSpecError
from keras_cnas.registry import Registry
from keras_cnas.spaces.base import Space, Spec
from keras_cnas.spaces.categorical import CategoricalSpace, CategoricalSpec

Estimator = Callable[..., CostReport]
#: Cost estimators by spec ``SPACE`` tag; register one for a new space.
ESTIMATORS: Registry[Estimator] = Registry("cost estimator")
ESTIMATORS.add("descriptor", estimate_descriptor)
ESTIMATORS.add("blockset", estimate_blockset)
ESTIMATORS.add("resnet", estimate_resnet)
ESTIMATORS.add("enas_cell", estimate_enas_cell)
# "hyper" (a HyperSpec is priced by building its model) is registered by keras_cnas._plugins:
# the builders sit above costs.


def estimate(spec: Spec, bytes_per_element: int = 4, *, space: Space | None = None) -> CostReport:
    """The costs of ``spec``: params, MAdds, FLOPs, memory, peak activation.

    Args:
        spec: any spec with a registered estimator (descriptor, block-set genotype), or a
            categorical spec together with the ``space`` whose cost table prices it.
        bytes_per_element: B_pe of eq. 6: 4 for float32, 1 for int8 (unused by tables).
        space: the spec's space. A ``CategoricalSpace`` with a cost table
            (``costs=...``) answers from the table, so a tabular search checks constraints
            before a query exactly as an analytic one does; one without a table reports no
            costs (an empty report). Other spaces leave the analytic estimate unchanged.

    Raises:
        InvalidSpecError: no estimator and no cost table for ``spec``, or its key is not in
            the table.

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
    if isinstance(space, CategoricalSpace):
        if space.cost_table is not None:
            return CostReport.from_dict(space.table_costs(spec))
        # A plain decision vector has no costs: report none, so that only a constraint on
        # a cost fails (UnknownCostError when the search checks what is available).
        space.validate(spec)
        return CostReport()
    if tag not in ESTIMATORS:
        hint = ("; a categorical spec is priced by its space's cost table: pass "
                "space=CategoricalSpace(..., costs=table_or_path)"
                if tag == CategoricalSpec.SPACE else "")
        raise InvalidSpecError(
            f"spec: no analytic cost model for {type(spec).__name__} (space {tag!r}); "
            f"estimators exist for: {', '.join(ESTIMATORS.names())}{hint}")
    return ESTIMATORS.get(tag)(spec, bytes_per_element)
