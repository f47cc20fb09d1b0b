"""RCAS block-set genotypes: a MobileNetV2-like skeleton with a block type per position.

The skeleton is fixed: a stem conv, ``N`` block positions grouped into stages (each stage
has output channels, a stride and a number of positions), an optional 1x1 head conv,
global average pooling and the classifier. Each position holds one of ``L`` block types
or is empty.

**Blocks** are inverted residuals (MobileNetV2): an optional 1x1 expansion conv to
``t * c_in`` channels with ``expand_groups`` groups (absent when ``t == 1``), BN, activation;
a ``kernel x kernel`` depthwise conv carrying the position's stride, BN, activation; a 1x1
linear projection to ``c_out`` with ``project_groups`` groups, BN; plus a residual ``Add``
when the stride is 1 and ``c_in == c_out``. Convolutions have no bias (BN follows).

**Empty positions.** The first position of a stage carries the stage's stride and channel
change. An empty position is the identity where its input and output shapes agree (stride 1,
``c_in == c_out``). Where they do not, an identity is impossible, and the position becomes a
*projection shortcut*: ``Conv2D(c_out, 1, strides=stride, no bias)`` + BN, the convention of
NAS-Bench-Macro, so that its per-layer choice {identity, MB k3 e3, MB k5 e6} is expressed
exactly (see :func:`keras_cnas.spaces.reference.nas_bench_macro_space`). Shapes therefore
never depend on which positions are filled.

**Default block table** (six types in the spirit of RCAS Table 1, kernel 3, ``t`` and the
groups of the expansion ``g_e`` and projection ``g_p`` 1x1 convs varying):

====  ==============  ===  ===  ===  ==========================================
code  name            t    g_e  g_p  note
====  ==============  ===  ===  ===  ==========================================
1     ``ir_t1``       1    -    1    MobileNetV2's first block (no expansion)
2     ``ir_t3``       3    1    1    light block
3     ``ir_t6``       6    1    1    MobileNetV2's block
4     ``ir_t3_g2``    3    2    2    grouped 1x1 convs halve their MACs
5     ``ir_t6_g2``    6    2    2
6     ``ir_t6_g4``    6    4    4    cheapest wide block
====  ==============  ===  ===  ===  ==========================================

Code 0 is the empty choice. A type whose groups do not divide a position's channels is not
allowed there (sampling skips it; validation names the position).

Pure Python + NumPy.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from keras_cnas.errors import InvalidSpecError
from keras_cnas.spaces.base import (
    SIZERS,
    SPACES,
    SPEC_TYPES,
    Mutation,
    Space,
    Spec,
    check_int,
    check_shape,
    decisions_key,
    require,
)

ACTIVATIONS = ("relu", "relu6")
#: Positions per stage of the default skeleton: N = 36, as in the RCAS paper.
DEFAULT_STAGE_POSITIONS = (2, 4, 6, 8, 6, 6, 4)
#: MobileNetV2's stages: (output channels, stride, blocks) at width multiplier 1.
MOBILENET_V2_STAGES = ((16, 1, 1), (24, 2, 2), (32, 2, 3), (64, 2, 4), (96, 1, 3),
                       (160, 2, 3), (320, 1, 1))


@dataclasses.dataclass(frozen=True)
class BlockType:
    """An inverted-residual block type.

    Attributes:
        name: a short unique name, e.g. ``"ir_t6_g2"``.
        expansion: the expansion factor t (no expansion conv when 1).
        kernel: the depthwise kernel size (odd).
        expand_groups: groups of the 1x1 expansion conv (g_e).
        project_groups: groups of the 1x1 projection conv (g_p).
    """

    name: str
    expansion: int
    kernel: int = 3
    expand_groups: int = 1
    project_groups: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidSpecError(f"block type name: expected a non-empty string, got {self.name!r}")
        where = f"block type {self.name!r}"
        check_int(f"{where}.expansion", self.expansion, 1)
        check_int(f"{where}.kernel", self.kernel, 1)
        if self.kernel % 2 == 0:
            raise InvalidSpecError(f"{where}.kernel: {self.kernel} is even; use an odd kernel size")
        check_int(f"{where}.expand_groups", self.expand_groups, 1)
        check_int(f"{where}.project_groups", self.project_groups, 1)

    def fits(self, c_in: int, c_out: int) -> bool:
        """Whether the groups divide the channels at a position with these channels."""
        hidden = self.expansion * c_in
        expand_ok = self.expansion == 1 or c_in % self.expand_groups == 0
        return expand_ok and hidden % self.project_groups == 0 and c_out % self.project_groups == 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "BlockType":
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, Mapping) or not {"name", "expansion"} <= set(data) <= fields:
            raise InvalidSpecError(
                f"block type: expected an object with 'name', 'expansion' and optionally "
                f"'kernel', 'expand_groups', 'project_groups'; got {data!r:.120}")
        return cls(**data)


DEFAULT_BLOCK_TYPES = (
    BlockType("ir_t1", 1),
    BlockType("ir_t3", 3),
    BlockType("ir_t6", 6),
    BlockType("ir_t3_g2", 3, expand_groups=2, project_groups=2),
    BlockType("ir_t6_g2", 6, expand_groups=2, project_groups=2),
    BlockType("ir_t6_g4", 6, expand_groups=4, project_groups=4),
)


class Stage(NamedTuple):
    """A group of positions sharing output channels; the first one carries the stride."""

    channels: int
    stride: int
    positions: int


class Position(NamedTuple):
    """What the skeleton fixes at one position, whatever block fills it."""

    index: int
    stage: int
    c_in: int
    c_out: int
    stride: int

    @property
    def is_identity_when_empty(self) -> bool:
        return self.stride == 1 and self.c_in == self.c_out


@dataclasses.dataclass(frozen=True)
class Skeleton:
    """The fixed part of a block-set network.

    Attributes:
        stem_filters: output channels of the stem conv.
        stem_kernel: its kernel size.
        stem_stride: its stride.
        stages: (channels, stride, positions) of each stage.
        head_filters: output channels of the 1x1 head conv; 0 for no head conv.
        activation: ``"relu6"`` (MobileNetV2) or ``"relu"`` (NAS-Bench-Macro).
    """

    stem_filters: int = 32
    stem_kernel: int = 3
    stem_stride: int = 2
    stages: tuple[Stage, ...] = tuple(
        Stage(c, s, n) for (c, s, _), n in zip(MOBILENET_V2_STAGES, DEFAULT_STAGE_POSITIONS))
    head_filters: int = 1280
    activation: str = "relu6"

    def __post_init__(self) -> None:
        check_int("skeleton.stem_filters", self.stem_filters, 1)
        check_int("skeleton.stem_kernel", self.stem_kernel, 1)
        check_int("skeleton.stem_stride", self.stem_stride, 1)
        check_int("skeleton.head_filters", self.head_filters, 0)
        if self.activation not in ACTIVATIONS:
            raise InvalidSpecError(
                f"skeleton.activation: {self.activation!r} is not one of {ACTIVATIONS}")
        if not isinstance(self.stages, (tuple, list)) or not self.stages:
            raise InvalidSpecError(f"skeleton.stages: expected a non-empty list, got {self.stages!r}")
        stages = []
        for i, stage in enumerate(self.stages):
            if not isinstance(stage, (tuple, list)) or len(stage) != 3:
                raise InvalidSpecError(
                    f"skeleton.stages[{i}]: expected (channels, stride, positions), got {stage!r}")
            stages.append(Stage(check_int(f"skeleton.stages[{i}].channels", stage[0], 1),
                                check_int(f"skeleton.stages[{i}].stride", stage[1], 1),
                                check_int(f"skeleton.stages[{i}].positions", stage[2], 1)))
        object.__setattr__(self, "stages", tuple(stages))

    @functools.cached_property
    def positions(self) -> tuple[Position, ...]:
        out, c_in = [], self.stem_filters
        for s, stage in enumerate(self.stages):
            for j in range(stage.positions):
                out.append(Position(len(out), s, c_in, stage.channels, stage.stride if j == 0 else 1))
                c_in = stage.channels
        return tuple(out)

    @property
    def num_positions(self) -> int:
        return sum(stage.positions for stage in self.stages)

    def to_dict(self) -> dict[str, Any]:
        return {"stem_filters": self.stem_filters, "stem_kernel": self.stem_kernel,
                "stem_stride": self.stem_stride, "stages": [list(s) for s in self.stages],
                "head_filters": self.head_filters, "activation": self.activation}

    @classmethod
    def from_dict(cls, data: Any) -> "Skeleton":
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, Mapping) or not set(data) <= fields:
            raise InvalidSpecError(
                f"skeleton: expected an object with fields among {sorted(fields)}, got {data!r:.120}")
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class BlockSetGenotype(Spec):
    """A block-set network: skeleton, block table and one choice per position.

    ``blocks[p]`` is 0 for an empty position, or ``i >= 1`` for ``block_types[i - 1]``.

    Example:
        >>> g = BlockSetGenotype((32, 32, 3), 10, Skeleton(stem_stride=1),
        ...                      DEFAULT_BLOCK_TYPES, blocks=(1,) + (0,) * 35)
        >>> g.describe()
        'stem32 > [0]ir_t1 > 35 empty > head1280 > out10'
    """

    SPACE = "blockset"
    VERSION = 1

    input_shape: tuple[int, int, int]
    num_classes: int
    skeleton: Skeleton
    block_types: tuple[BlockType, ...]
    blocks: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", check_shape("input_shape", self.input_shape))
        check_int("num_classes", self.num_classes, 1)
        if not isinstance(self.skeleton, Skeleton):
            raise InvalidSpecError(f"skeleton: expected a Skeleton, got {type(self.skeleton).__name__}")
        types = tuple(self.block_types)
        if not types or not all(isinstance(t, BlockType) for t in types):
            raise InvalidSpecError(f"block_types: expected a non-empty list of BlockType, got {types!r:.120}")
        names = [t.name for t in types]
        if len(set(names)) != len(names):
            raise InvalidSpecError(f"block_types: names must be unique, got {names}")
        object.__setattr__(self, "block_types", types)
        blocks = tuple(self.blocks)
        n = self.skeleton.num_positions
        if len(blocks) != n:
            raise InvalidSpecError(
                f"blocks: the skeleton has {n} positions, got {len(blocks)} choices")
        blocks = tuple(check_int(f"blocks[{p}]", b, 0, len(types),
                                 fix="0 is empty, i >= 1 is block_types[i - 1]")
                       for p, b in enumerate(blocks))
        object.__setattr__(self, "blocks", blocks)
        for pos, choice in zip(self.skeleton.positions, blocks):
            if choice and not types[choice - 1].fits(pos.c_in, pos.c_out):
                t = types[choice - 1]
                raise InvalidSpecError(
                    f"blocks[{pos.index}]: block type {t.name!r} (g_e={t.expand_groups}, "
                    f"g_p={t.project_groups}, t={t.expansion}) does not divide the channels "
                    f"{pos.c_in} -> {pos.c_out} at this position; choose a type whose groups "
                    "divide the channels, or leave it empty (0)")

    @classmethod
    def _trusted(cls, frame: "BlockSetGenotype", blocks: tuple[int, ...]) -> "BlockSetGenotype":
        """A genotype of ``frame``'s space with choices known to be valid (sampling)."""
        spec = object.__new__(cls)
        for field in ("input_shape", "num_classes", "skeleton", "block_types"):
            object.__setattr__(spec, field, getattr(frame, field))
        object.__setattr__(spec, "blocks", blocks)
        return spec

    def block_type(self, position: int) -> BlockType | None:
        choice = self.blocks[position]
        return self.block_types[choice - 1] if choice else None

    def describe(self) -> str:
        """The network in words: filled positions by name, runs of empty ones counted."""
        parts, empty = [f"stem{self.skeleton.stem_filters}"], 0
        for p, choice in enumerate(self.blocks):
            if choice == 0:
                empty += 1
                continue
            if empty:
                parts.append(f"{empty} empty")
                empty = 0
            parts.append(f"[{p}]{self.block_types[choice - 1].name}")
        if empty:
            parts.append(f"{empty} empty")
        if self.skeleton.head_filters:
            parts.append(f"head{self.skeleton.head_filters}")
        parts.append(f"out{self.num_classes}")
        return " > ".join(parts)

    def key(self) -> str:
        """The choices as a string, plus a hash of the skeleton and block table."""
        sizes = [len(self.block_types) + 1] * len(self.blocks)
        frame = json.dumps([list(self.input_shape), self.num_classes, self.skeleton.to_dict(),
                            [t.to_dict() for t in self.block_types]], sort_keys=True)
        return f"{decisions_key(self.blocks, sizes)}@{hashlib.sha256(frame.encode()).hexdigest()[:8]}"

    def _payload(self) -> dict[str, Any]:
        return {"input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "skeleton": self.skeleton.to_dict(),
                "block_types": [t.to_dict() for t in self.block_types],
                "blocks": list(self.blocks)}

    @classmethod
    def _from_payload(cls, payload: Mapping[str, Any]) -> "BlockSetGenotype":
        types = require(payload, "block_types")
        if not isinstance(types, list):
            raise InvalidSpecError(f"block_types: expected a list, got {types!r:.80}")
        blocks = require(payload, "blocks")
        if not isinstance(blocks, list):
            raise InvalidSpecError(f"blocks: expected a list, got {blocks!r:.80}")
        return cls(require(payload, "input_shape"), require(payload, "num_classes"),
                   Skeleton.from_dict(require(payload, "skeleton")),
                   tuple(BlockType.from_dict(t) for t in types), tuple(blocks))


SPEC_TYPES.add(BlockSetGenotype.SPACE, BlockSetGenotype)


def _is_chain(types: Sequence[BlockType]) -> bool:
    return all(b.expansion >= a.expansion and b.kernel >= a.kernel
               and b.expand_groups <= a.expand_groups and b.project_groups <= a.project_groups
               for a, b in zip(types, types[1:]))


@SPACES.register("blockset")
class BlockSetSpace(Space):
    """Block-set genotypes over a fixed skeleton (RCAS).

    Args:
        input_shape: (height, width, channels) of the images.
        num_classes: classifier outputs.
        skeleton: the fixed part; default a MobileNetV2-like skeleton with N = 36 positions
            (stages of 2, 4, 6, 8, 6, 6, 4 positions with MobileNetV2's channels and strides).
        block_types: the block table; default :data:`DEFAULT_BLOCK_TYPES`.

    Example:
        >>> space = BlockSetSpace((32, 32, 3), 10)
        >>> g = space.sample(np.random.default_rng(0))
        >>> len(g.blocks), space.decision_sizes()[0], space.empty_choice
        (36, 7, 0)
    """

    name = "blockset"

    @classmethod
    def for_budget(cls, constraints: Any, input_shape: Sequence[int], num_classes: int,
                   **options: Any) -> "BlockSetSpace":
        """A MobileNetV2-skeleton space (width multiplier, positions per stage, head width)
        sized so that its empty network and a useful share of its samples fit ``constraints``
        (see :func:`keras_cnas.costs.sizing.blockset_space_for_budget`, which this calls).

        Example:
            >>> from keras_cnas.costs import Constraints
            >>> space = BlockSetSpace.for_budget(Constraints(max_params=100_000), (32, 32, 3), 10)
            >>> space.skeleton.stem_filters < 32
            True
        """
        return SIZERS.get(cls.name)(constraints, input_shape, num_classes, **options)

    def __init__(self, input_shape: Sequence[int], num_classes: int, *,
                 skeleton: Skeleton | Mapping[str, Any] | None = None,
                 block_types: Sequence[BlockType | Mapping[str, Any]] | None = None):
        self.input_shape = check_shape("input_shape", tuple(input_shape))
        self.num_classes = check_int("num_classes", num_classes, 1)
        if skeleton is None:
            skeleton = Skeleton()
        elif isinstance(skeleton, Mapping):
            skeleton = Skeleton.from_dict(skeleton)
        self.skeleton = skeleton
        types = DEFAULT_BLOCK_TYPES if block_types is None else block_types
        self.block_types = tuple(t if isinstance(t, BlockType) else BlockType.from_dict(t)
                                 for t in types)
        # Validates the skeleton/table combination once (names unique, etc.).
        empty = BlockSetGenotype(self.input_shape, self.num_classes, self.skeleton,
                                 self.block_types, (0,) * self.skeleton.num_positions)
        self._empty = empty
        # Choices allowed at each position: empty plus every type whose groups fit.
        self.allowed = tuple(
            (0,) + tuple(i + 1 for i, t in enumerate(self.block_types) if t.fits(p.c_in, p.c_out))
            for p in self.skeleton.positions)

    def get_config(self) -> dict[str, Any]:
        return {"input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "skeleton": self.skeleton.to_dict(),
                "block_types": [t.to_dict() for t in self.block_types]}

    @property
    def empty_choice(self) -> int:
        return 0

    def genotype(self, blocks: Sequence[int]) -> BlockSetGenotype:
        """The genotype of this space with these choices (validated)."""
        return BlockSetGenotype(self.input_shape, self.num_classes, self.skeleton,
                                self.block_types, tuple(blocks))

    def sample(self, rng: np.random.Generator) -> BlockSetGenotype:
        """Each position uniform over empty and the block types that fit there."""
        u = rng.random(len(self.allowed)).tolist()
        # Valid by construction: every choice comes from the position's allowed list.
        return BlockSetGenotype._trusted(
            self._empty, tuple(a[int(x * len(a))] for x, a in zip(u, self.allowed)))

    def validate(self, spec: Spec) -> None:
        if not isinstance(spec, BlockSetGenotype):
            raise InvalidSpecError(f"spec: expected a BlockSetGenotype, got {type(spec).__name__}")
        for field in ("input_shape", "num_classes", "skeleton", "block_types"):
            if getattr(spec, field) != getattr(self._empty, field):
                raise InvalidSpecError(
                    f"spec.{field}: {getattr(spec, field)!r:.100} differs from the space's "
                    f"{getattr(self._empty, field)!r:.100}")

    def mutations(self, spec: Spec, rng: np.random.Generator) -> list[Mutation]:
        """Every genotype that differs from ``spec`` at exactly one position: the next
        smaller or bigger choice when the block table is ordered, any other allowed one when
        it is not."""
        self.validate(spec)
        assert isinstance(spec, BlockSetGenotype)
        out = []
        names = ["empty"] + [t.name for t in self.block_types]
        ordered = self.ordered_decisions()
        for p, allowed in enumerate(self.allowed):
            current = spec.blocks[p]
            if ordered[p]:  # the adjacent allowed choices
                lower = [c for c in allowed if c < current]
                upper = [c for c in allowed if c > current]
                options = lower[-1:] + upper[:1]
            else:
                options = [c for c in allowed if c != current]
            for choice in options:
                blocks = spec.blocks[:p] + (choice,) + spec.blocks[p + 1:]
                out.append(Mutation("set", f"position {p}: {names[current]} -> {names[choice]}",
                                    self.genotype(blocks)))
        return out

    def decision_sizes(self) -> list[int]:
        return [len(self.block_types) + 1] * self.skeleton.num_positions

    def ordered_decisions(self) -> list[bool]:
        """Ordered when the block table is a chain (empty < each type < the next, every
        type at least as big as the one before: expansion and kernel no smaller, groups no
        more), as NAS-Bench-Macro's identity < MB k3 e3 < MB k5 e6; else the choices are
        block types without an order."""
        return [_is_chain(self.block_types)] * self.skeleton.num_positions

    def to_decisions(self, spec: Spec) -> list[int]:
        self.validate(spec)
        assert isinstance(spec, BlockSetGenotype)
        return list(spec.blocks)

    def from_decisions(self, decisions: Sequence[int]) -> BlockSetGenotype:
        return self.genotype(tuple(decisions))
