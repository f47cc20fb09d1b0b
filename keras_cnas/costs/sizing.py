"""Search spaces sized from a budget: the bounds and skeleton a device can hold.

A space's defaults are the paper's (a 26-layer, 128-filter descriptor; MobileNetV2 at width
1.0), far beyond a microcontroller: at 32x32x3 the default block-set space's *empty*
network has 507,786 parameters. These functions walk a ladder of spaces from the largest
to the smallest and return the first whose smallest network meets the constraints and
whose random samples are feasible at least ``min_share`` of the time, all priced with the
:class:`~keras_cnas.costs.Pricer` (analytic and deployment costs, no training).

* descriptor: a residual space (strided convs, skips of up to 2 layers, global pooling, at
  most one hidden fc layer; no max-pools, the convs' strides downsample, as in ResNets) with
  ``(max_filters, max_conv_layers)`` stepping down, spaces
  at least as deep as the field's small reference networks (``REFERENCE_DEPTH``: ResNet-8's
  seven conv layers) first, so that under a budget a reference meets, the reference is a
  point of the sized space; shallower spaces only when no deep one reaches ``min_share``;
* block-set: MobileNetV2's skeleton with width multipliers 1.0 down to 0.1, fewer positions
  per stage and a narrower head.

Pure Python (no TensorFlow): sizing prices a few hundred specs, about a second for a
descriptor space, a few seconds for a block-set space.

Example:
    >>> from keras_cnas.costs import Constraints
    >>> sized = descriptor_space_for_budget(Constraints(max_params=80_000), (32, 32, 3), 10)
    >>> sized.share >= 0.2 and sized.space.max_skip_span == 2
    True
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Iterable, Sequence

import numpy as np

from keras_cnas.costs.constraints import Constraints
from keras_cnas.costs.deployment import ExportTarget
from keras_cnas.costs.pricer import Pricer
from keras_cnas.errors import InfeasibleConstraintsError
from keras_cnas.spaces.base import Space, Spec
from keras_cnas.spaces.blockset import DEFAULT_STAGE_POSITIONS, BlockSetSpace
from keras_cnas.spaces.descriptor import ConvLayer, Descriptor, DescriptorSpace

#: Share of feasible samples a sized space must reach by default (the issue's 20 %, with a
#: margin: the search samples with other seeds).
MIN_SHARE = 0.3
#: Descriptor ladder, largest first.
DESCRIPTOR_FILTERS = (128, 96, 64, 48, 32, 24, 16, 12, 8)
DESCRIPTOR_LAYERS = (12, 10, 8, 7, 6, 4, 3, 2)
#: Conv layers of the field's small residual references (ResNet-8: a stem and three
#: two-conv blocks). Ranking width above depth sized ResNet-8's own budget to 128 filters
#: and 6 layers, a space without ResNet-8 whose best searched networks lost to it.
REFERENCE_DEPTH = 7
#: Block-set ladder, largest first.
WIDTH_MULTIPLIERS = (1.0, 0.75, 0.5, 0.35, 0.25, 0.15, 0.1)
STAGE_POSITIONS = (DEFAULT_STAGE_POSITIONS, (1, 2, 3, 4, 3, 3, 1), (1, 1, 2, 2, 2, 2, 1),
                   (1, 1, 1, 1, 1, 1, 1))
HEAD_FILTERS = (1280, 320, 0)


@dataclasses.dataclass(frozen=True)
class SizedSpace:
    """A space chosen for a budget.

    Attributes:
        space: the space.
        share: the share of ``samples`` random specs that met the constraints.
        samples: how many were priced.
        settings: what was chosen (e.g. ``{"max_filters": 32, "max_conv_layers": 8}``).
        tried: spaces of the ladder priced before this one.
    """

    space: Space
    share: float
    samples: int
    settings: dict[str, Any]
    tried: int

    def to_dict(self) -> dict[str, Any]:
        """For ``summary.json``: the settings, the feasible share and the sample count."""
        return {"space": self.space.name, "settings": self.settings,
                "feasible_share": round(self.share, 4), "samples": self.samples,
                "ladder_tried": self.tried}


def feasible_share(space: Space, pricer: Pricer, samples: int = 100, seed: int = 0) -> float:
    """The share of ``samples`` random specs of ``space`` that ``pricer`` finds feasible."""
    rng = np.random.default_rng(seed)
    return sum(bool(pricer.check(space.sample(rng))) for _ in range(samples)) / samples


def descriptor_space_for_budget(constraints: Constraints, input_shape: Sequence[int],
                                num_classes: int, *, target: ExportTarget | None = ExportTarget(),
                                min_share: float = MIN_SHARE, samples: int = 100,
                                seed: int = 0, max_stride: int = 2, max_skip_span: int = 2,
                                global_pool: bool = True, max_pool: int = 1,
                                max_subsample: int = 1) -> SizedSpace:
    """The largest residual descriptor space of the ladder that fits ``constraints``.

    ``max_stride``, ``max_skip_span`` and ``global_pool`` shape every space of the ladder
    (the residual defaults; ``tools/search.py``'s flags of those names override them, and
    the ladder is then walked with the user's values). ``max_pool`` / ``max_subsample``
    default to 1 (no max-pool layers): with pools as well as strides, random samples under
    ResNet-8's budget shrank to a median 0.5 M of its 12.5 M MAdds, without them 1.1 M.

    Raises:
        InfeasibleConstraintsError: not even a one-layer, one-filter network fits.
    """
    shape = tuple(input_shape)
    residual = {"max_stride": max_stride, "max_skip_span": max_skip_span,
                "global_pool": global_pool, "max_pool": max_pool, "max_subsample": max_subsample}

    def candidates() -> Iterable[tuple[dict[str, Any], Space]]:
        ladder = sorted(itertools.product(DESCRIPTOR_FILTERS, DESCRIPTOR_LAYERS),
                        key=lambda fl: (fl[1] < REFERENCE_DEPTH, -fl[0] ** 2 * fl[1]))
        for filters, layers in ladder:
            settings = {"max_filters": filters, "max_conv_layers": layers}
            yield settings, DescriptorSpace(
                shape, num_classes, min_filters=min(4, filters), max_fc_layers=1,
                max_hidden=128, **residual, **settings)

    # Built by the space's own checks first, so a bad override fails as the space would.
    DescriptorSpace(shape, num_classes, **residual)
    smallest = Descriptor(shape, num_classes, (ConvLayer(1, 1, 1),), global_pool=global_pool)
    return _first_fit(candidates(), smallest, constraints, target, min_share, samples, seed)


def blockset_space_for_budget(constraints: Constraints, input_shape: Sequence[int],
                              num_classes: int, *, target: ExportTarget | None = ExportTarget(),
                              min_share: float = MIN_SHARE, samples: int = 60,
                              seed: int = 0) -> SizedSpace:
    """The largest MobileNetV2-skeleton block-set space of the ladder that fits
    ``constraints`` (its empty network fits and ``min_share`` of its samples do).

    Raises:
        InfeasibleConstraintsError: not even the narrowest, shallowest skeleton fits.
    """
    from keras_cnas.spaces.reference import mobilenet_v2_skeleton

    shape = tuple(input_shape)
    pricer = Pricer(constraints, target=target)
    tried, last = 0, None
    for alpha in WIDTH_MULTIPLIERS:
        for positions in STAGE_POSITIONS:
            for head in HEAD_FILTERS:
                skeleton = dataclasses.replace(mobilenet_v2_skeleton(alpha, positions),
                                               head_filters=head)
                space = BlockSetSpace(shape, num_classes, skeleton=skeleton)
                last = space
                if not pricer.check(space._empty):
                    continue
                tried += 1
                share = feasible_share(space, pricer, samples, seed)
                if share >= min_share:
                    settings = {"width_multiplier": alpha, "stage_positions": list(positions),
                                "head_filters": head}
                    return SizedSpace(space, share, samples, settings, tried)
    assert last is not None
    raise _infeasible(pricer, last._empty, "the narrowest block-set skeleton (width 0.1, one "
                      "position per stage, no head)")


def _first_fit(candidates: Iterable[tuple[dict[str, Any], Space]], smallest: Spec,
               constraints: Constraints, target: ExportTarget | None, min_share: float,
               samples: int, seed: int) -> SizedSpace:
    pricer = Pricer(constraints, target=target)
    if not pricer.check(smallest):
        raise _infeasible(pricer, smallest, "a one-layer, one-filter descriptor")
    best: tuple[float, dict[str, Any], Space] | None = None
    tried = 0
    for settings, space in candidates:
        tried += 1
        share = feasible_share(space, pricer, samples, seed)
        if share >= min_share:
            return SizedSpace(space, share, samples, settings, tried)
        if best is None or share > best[0]:
            best = (share, settings, space)
    assert best is not None  # the smallest candidate holds the smallest network
    return SizedSpace(best[2], best[0], samples, best[1], tried)


def _infeasible(pricer: Pricer, spec: Spec, what: str) -> InfeasibleConstraintsError:
    verdict = pricer.check(spec)
    broken = ", ".join(f"{v.cost} {v.value:,.0f} vs max_{v.cost}={v.bound:,.0f}"
                       for v in verdict.violations)
    return InfeasibleConstraintsError(
        f"constraints: even {what} breaks them ({broken}); raise those bounds or use a "
        "smaller input")


__all__ = ["MIN_SHARE", "REFERENCE_DEPTH", "SizedSpace", "blockset_space_for_budget", "descriptor_space_for_budget",
           "feasible_share"]
