"""The local moves of Algorithm II (MIT-LL Monte Carlo search), on any space.

A :class:`Move` is one step from a base architecture: on a
:class:`~keras_cnas.spaces.DescriptorSpace`, a *layer move* scales one numeric coordinate
by α (1.5 or 0.66) or a *meta move* adds (a copy of) or removes a layer, or (in a
residual descriptor space) adds or removes a skip connection; on every other
space, one decision of its categorical view changes: a step of ±1 along an ordered
decision (widths, identity < block), a jump to another value of an unordered one
(operation types), as ``space.ordered_decisions()`` says.
A move is plain data, so it travels in ``Candidate.info`` and comes back with the trial,
which is how coordinate descent knows what to repeat.

Pure Python + NumPy.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

import numpy as np

from keras_cnas.errors import InvalidSpecError
from keras_cnas.spaces.base import Space, Spec
from keras_cnas.spaces.descriptor import (
    ALPHAS,
    CONV_FIELDS,
    FC_FIELDS,
    Coordinate,
    Descriptor,
    DescriptorSpace,
    Skip,
)

#: Move kinds: "scale" (layer move), "add_layer" / "remove_layer" (meta moves), "step"
#: (±1 on one ordered categorical decision), "jump" (an unordered decision set to a value).
MOVE_KINDS = ("scale", "add_layer", "remove_layer", "add_skip", "remove_skip", "step", "jump")
META_KINDS = ("add_layer", "remove_layer", "add_skip", "remove_skip")
#: Meta moves on a residual descriptor's skips, coordinate ``"skips[start-end]"``.
SKIP_KINDS = ("add_skip", "remove_skip")

# "conv_layers[2].n_filters" (scale), "conv_layers[2]" (add a copy of / remove layer 2),
# "fc_layers" (append a random layer to an empty section).
_LAYER_COORDINATE = re.compile(r"^(conv|fc)_layers(?:\[(\d+)\])?(?:\.(\w+))?$")
_DECISION = re.compile(r"^decisions\[(\d+)\]$")
_SKIP = re.compile(r"^skips\[(\d+)-(\d+)\]$")


@dataclasses.dataclass(frozen=True)
class Move:
    """One local move, identified by its kind and the coordinate it touches.

    Attributes:
        kind: one of :data:`MOVE_KINDS`.
        coordinate: what it touches, e.g. ``"conv_layers[2].n_filters"``, ``"fc_layers[0]"``
            or ``"decisions[3]"``; after a rejected move, coordinate descent tries a
            different coordinate (§4.2).
        alpha: the scale factor of a ``"scale"`` move.
        delta: +1 or -1 for a ``"step"`` move.
        value: the new value of a ``"jump"`` move.

    Example:
        >>> move = Move("scale", "conv_layers[2].n_filters", alpha=1.5)
        >>> move.to_info()
        {'move': 'scale', 'coordinate': 'conv_layers[2].n_filters', 'alpha': 1.5}
        >>> Move.from_info(move.to_info()) == move
        True
    """

    kind: str
    coordinate: str
    alpha: float | None = None
    delta: int | None = None
    value: int | None = None

    @property
    def is_meta(self) -> bool:
        return self.kind in META_KINDS

    def to_info(self) -> dict[str, Any]:
        """The JSON-compatible record kept in ``Candidate.info``."""
        info: dict[str, Any] = {"move": self.kind, "coordinate": self.coordinate}
        if self.alpha is not None:
            info["alpha"] = self.alpha
        if self.delta is not None:
            info["delta"] = self.delta
        if self.value is not None:
            info["value"] = self.value
        return info

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> "Move | None":
        """The move recorded in ``info``; None for anything that is not a repeatable move
        (a random sample, a re-evaluation, or info written by someone else)."""
        kind, coordinate = info.get("move"), info.get("coordinate")
        if kind not in MOVE_KINDS or not isinstance(coordinate, str):
            return None
        alpha, delta, value = info.get("alpha"), info.get("delta"), info.get("value")
        if kind == "scale" and not isinstance(alpha, (int, float)):
            return None
        if kind == "step" and delta not in (1, -1):
            return None
        if kind == "jump" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            return None
        return cls(kind, coordinate, float(alpha) if kind == "scale" else None,
                   int(delta) if kind == "step" else None, int(value) if kind == "jump" else None)


class DescriptorMoves:
    """Algorithm II's moves on a descriptor: scale a coordinate, add or remove a layer."""

    def __init__(self, space: DescriptorSpace):
        self.space = space

    def moves(self, spec: Spec) -> list[Move]:
        """Every layer move (each coordinate, each α) and meta move of ``spec``.

        Moves that turn out invalid (a clipped no-op, a pool that no longer fits, a full
        section) are listed too: :meth:`apply` returns None for them.
        """
        assert isinstance(spec, Descriptor)
        out = [Move("scale", str(c), alpha=a) for c in self.space.coordinates(spec) for a in ALPHAS]
        for section in ("conv", "fc"):
            layers = spec.conv_layers if section == "conv" else spec.fc_layers
            if not layers:
                out.append(Move("add_layer", f"{section}_layers"))
            for i in range(len(layers)):
                out.append(Move("add_layer", f"{section}_layers[{i}]"))
                out.append(Move("remove_layer", f"{section}_layers[{i}]"))
        if self.space.max_skip_span:
            out += [Move("add_skip", f"skips[{s.start}-{s.end}]")
                    for s in self.space.skip_candidates(spec)]
            out += [Move("remove_skip", f"skips[{s.start}-{s.end}]") for s in spec.skips]
        return out

    def apply(self, spec: Spec, move: Move, rng: np.random.Generator) -> Spec | None:
        """``spec`` after ``move``, or None if the move is a no-op or gives no valid network.

        A repeated move may no longer fit the new base (the layer it named is gone): None.
        """
        assert isinstance(spec, Descriptor)
        if move.kind in SKIP_KINDS:
            found = _SKIP.match(move.coordinate)
            if found is None:
                return None
            skip = Skip(int(found.group(1)), int(found.group(2)))
            if move.kind == "add_skip":
                return self.space.add_skip(spec, skip)
            return self.space.remove_skip(spec, skip)
        match = _LAYER_COORDINATE.match(move.coordinate)
        if match is None or move.kind not in ("scale", *META_KINDS):
            return None
        section, index, field = match.group(1), match.group(2), match.group(3)
        layers = spec.conv_layers if section == "conv" else spec.fc_layers
        layer = None if index is None else int(index)
        if layer is not None and layer >= len(layers):
            return None
        if move.kind == "scale":
            fields = CONV_FIELDS if section == "conv" else FC_FIELDS
            if layer is None or field not in fields or move.alpha is None:
                return None
            return self.space.scale(spec, Coordinate(section, layer, field), move.alpha)
        if field is not None:
            return None
        if move.kind == "add_layer":
            return self.space.add_layer(spec, section, layer, rng)
        if layer is None:
            return None
        return self.space.remove_layer(spec, section, layer)


class DecisionMoves:
    """One decision of a space's categorical view changed (no meta moves): ±1 along an
    ordered decision, so coordinate descent has a direction to keep going in; a jump to
    each other value of an unordered one, where "next" means nothing.

    Example:
        >>> from keras_cnas.spaces import CategoricalSpace
        >>> space = CategoricalSpace([3, 3], ordered=[True, False])
        >>> [m.to_info() for m in DecisionMoves(space).moves(space.spec([0, 1]))]  # doctest: +NORMALIZE_WHITESPACE
        [{'move': 'step', 'coordinate': 'decisions[0]', 'delta': 1},
         {'move': 'jump', 'coordinate': 'decisions[1]', 'value': 0},
         {'move': 'jump', 'coordinate': 'decisions[1]', 'value': 2}]
    """

    def __init__(self, space: Space):
        self.space = space
        self.sizes = space.decision_sizes()
        self.ordered = space.ordered_decisions()

    def moves(self, spec: Spec) -> list[Move]:
        """Every in-range ±1 step of an ordered decision, every jump of an unordered one."""
        decisions = self.space.to_decisions(spec)
        out = []
        for i, (d, size, ordered) in enumerate(zip(decisions, self.sizes, self.ordered)):
            if ordered:
                out += [Move("step", f"decisions[{i}]", delta=delta)
                        for delta in (1, -1) if 0 <= d + delta < size]
            else:
                out += [Move("jump", f"decisions[{i}]", value=v) for v in range(size) if v != d]
        return out

    def apply(self, spec: Spec, move: Move, rng: np.random.Generator) -> Spec | None:
        """``spec`` with one decision changed; None when out of range, invalid or a no-op
        (an inactive decision, or a repeated jump to the value it already has)."""
        del rng  # moves are deterministic
        match = _DECISION.match(move.coordinate)
        if match is None or move.kind not in ("step", "jump"):
            return None
        i = int(match.group(1))
        decisions = self.space.to_decisions(spec)
        if i >= len(decisions):
            return None
        if move.kind == "step" and move.delta is not None:
            value = decisions[i] + move.delta
        elif move.kind == "jump" and move.value is not None:
            value = move.value
        else:
            return None
        if not 0 <= value < self.sizes[i]:
            return None
        decisions[i] = value
        try:
            new = self.space.from_decisions(decisions)
        except InvalidSpecError:  # e.g. a block type whose groups do not fit there
            return None
        return None if new.key() == spec.key() else new


MoveSet = DescriptorMoves | DecisionMoves


def moves_for(space: Space) -> MoveSet:
    """Descriptor moves on a descriptor space, decision steps / jumps on any other."""
    if isinstance(space, DescriptorSpace):
        return DescriptorMoves(space)
    return DecisionMoves(space)
