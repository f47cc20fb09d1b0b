"""``tools/search.py --space=descriptor|blockset`` with a budget and no space flags: the
space is sized from the budget (:mod:`keras_cnas.costs.sizing`).

Kept apart from ``cli/search.py`` so the sizing rule has one small home: a search bounded
by a device or any ``--max_<cost>`` flag, on the descriptor or block-set space, with none
of that space's own flags given, gets ``for_budget``'s space; a space flag the user gives
wins (the space is then built from the flags as before).
"""

from __future__ import annotations

from typing import Any, Collection

from keras_cnas.costs import Constraints
from keras_cnas.costs.sizing import SizedSpace, blockset_space_for_budget, descriptor_space_for_budget

#: The flags that shape each sizable space; giving any of them turns sizing off.
SPACE_FLAGS = {
    "descriptor": ("max_conv_layers", "max_filters", "max_fc_layers", "max_hidden"),
    "blockset": ("width_multiplier", "stage_positions", "head_filters"),
}
_SIZERS = {"descriptor": descriptor_space_for_budget, "blockset": blockset_space_for_budget}


def sized_space(space: str, input_shape: tuple[int, int, int], num_classes: int,
                constraints: Constraints, given_flags: Collection[str],
                target: Any) -> SizedSpace | None:
    """The space sized for ``constraints``, or None when the flags decide it (another
    space, no bounds, or a space flag in ``given_flags``).

    Example:
        >>> sized_space("descriptor", (32, 32, 3), 10, Constraints(), (), None) is None
        True
    """
    if space not in SPACE_FLAGS or not constraints.bounds:
        return None
    if any(flag in given_flags for flag in SPACE_FLAGS[space]):
        return None
    return _SIZERS[space](constraints, input_shape, num_classes, target=target)
