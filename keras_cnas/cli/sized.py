"""``tools/search.py --space=descriptor|blockset`` with a budget and no space flags: the
space is sized from the budget (:mod:`keras_cnas.costs.sizing`).

Kept apart from ``cli/search.py`` so the sizing rule has one small home: a search bounded
by a device or any ``--max_<cost>`` flag, on the descriptor or block-set space, with none
of that space's own bound flags given, gets ``for_budget``'s space; a bound flag the user
gives wins (the space is then built from the flags as before). The residual shape flags
(``--max_stride``, ``--max_skip_span``, ``--global_pool``) win too, without turning sizing
off: the ladder is walked with the user's values in place of its own.
"""

from __future__ import annotations

from typing import Any, Collection, Mapping

from keras_cnas.costs import Constraints
from keras_cnas.costs.sizing import SizedSpace, blockset_space_for_budget, descriptor_space_for_budget

#: The flags that bound each sizable space; giving any of them turns sizing off.
SPACE_FLAGS = {
    "descriptor": ("max_conv_layers", "max_filters", "max_fc_layers", "max_hidden"),
    "blockset": ("width_multiplier", "stage_positions", "head_filters"),
}
#: The flags that shape the residual descriptor space: the sizer keeps walking its ladder
#: (filters and layers) with the values given instead of its own (2, 2, True).
RESIDUAL_FLAGS = ("max_stride", "max_skip_span", "global_pool")
_SIZERS = {"descriptor": descriptor_space_for_budget, "blockset": blockset_space_for_budget}


def sized_space(space: str, input_shape: tuple[int, int, int], num_classes: int,
                constraints: Constraints, given_flags: Collection[str],
                target: Any, residual: Mapping[str, Any] | None = None) -> SizedSpace | None:
    """The space sized for ``constraints``, or None when the flags decide it (another
    space, no bounds, or a space flag in ``given_flags``). ``residual``: the
    :data:`RESIDUAL_FLAGS` the user gave, which the descriptor sizer uses as they are.

    Example:
        >>> sized_space("descriptor", (32, 32, 3), 10, Constraints(), (), None) is None
        True
        >>> sized_space("descriptor", (32, 32, 3), 10, Constraints(max_params=80_000), (),
        ...             None, {"max_skip_span": 0}).space.max_skip_span
        0
    """
    if space not in SPACE_FLAGS or not constraints.bounds:
        return None
    if any(flag in given_flags for flag in SPACE_FLAGS[space]):
        return None
    options = dict(residual or {}) if space == "descriptor" else {}
    return _SIZERS[space](constraints, input_shape, num_classes, target=target, **options)
