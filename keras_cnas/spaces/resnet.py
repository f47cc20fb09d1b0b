"""CIFAR ResNets (He et al. 2016, §4.2) as specs, with a free width per block.

The network: a 3x3 stem conv to ``stage_widths[0]`` channels, BN, ReLU; then stages of basic
blocks (``stage_blocks[s]`` each). A block is ``conv 3x3 (stride) -> BN -> ReLU -> conv 3x3 ->
BN``, added to a shortcut, then ReLU. The first block of every stage after the first has
stride 2. The shortcut is the identity where the shapes agree and a projection
(``Conv2D(c_out, 1, stride)`` + BN, the paper's option B) where they do not. Convolutions
have no bias (BN follows); global average pooling and a softmax ``Dense`` end it.

``mid_widths`` holds the width of each block's first conv (its inner channels), which the
residual ``Add`` does not tie to anything: a compressed ResNet (channel surgery) keeps its
stage widths equal along each residual stream but may thin every block differently, and
this spec describes it exactly. :func:`keras_cnas.spaces.reference.resnet_cifar` gives the
paper's networks (inner width = stage width).

Pure Python.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from keras_cnas.errors import InvalidSpecError
from keras_cnas.spaces.base import SPEC_TYPES, Spec, check_int, check_shape, require


@dataclasses.dataclass(frozen=True)
class ResNetSpec(Spec):
    """A CIFAR-style ResNet of basic blocks.

    Attributes:
        input_shape: (height, width, channels).
        num_classes: classifier outputs.
        stage_widths: channels of each stage's residual stream (the stem has the first).
        stage_blocks: basic blocks per stage; depth = 2 * sum(stage_blocks) + 2.
        mid_widths: the inner width of every block, in order (one per block).

    Example:
        >>> spec = ResNetSpec((32, 32, 3), 10, stage_widths=(16, 32, 64), stage_blocks=(3, 3, 3),
        ...                   mid_widths=(16,) * 3 + (32,) * 3 + (64,) * 3)
        >>> spec.depth, spec.describe()
        (20, 'resnet20 stages 16x3/32x3/64x3 > out10')
        >>> ResNetSpec.from_json(spec.to_json()) == spec
        True
    """

    SPACE = "resnet"
    VERSION = 1

    input_shape: tuple[int, int, int]
    num_classes: int
    stage_widths: tuple[int, ...]
    stage_blocks: tuple[int, ...]
    mid_widths: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", check_shape("input_shape", self.input_shape))
        check_int("num_classes", self.num_classes, 1)
        for field in ("stage_widths", "stage_blocks", "mid_widths"):
            value = getattr(self, field)
            if not isinstance(value, (tuple, list)) or not value:
                raise InvalidSpecError(f"{field}: expected a non-empty list of integers, got "
                                       f"{value!r:.80}")
            object.__setattr__(self, field, tuple(
                check_int(f"{field}[{i}]", v, 1) for i, v in enumerate(value)))
        if len(self.stage_blocks) != len(self.stage_widths):
            raise InvalidSpecError(
                f"stage_blocks: {len(self.stage_blocks)} stages, but stage_widths has "
                f"{len(self.stage_widths)}; give one block count per stage width")
        if len(self.mid_widths) != sum(self.stage_blocks):
            raise InvalidSpecError(
                f"mid_widths: {len(self.mid_widths)} widths for {sum(self.stage_blocks)} blocks "
                f"(stage_blocks={list(self.stage_blocks)}); give one inner width per block")

    @property
    def depth(self) -> int:
        """Weighted layers: the stem, two convs per block and the classifier."""
        return 2 * sum(self.stage_blocks) + 2

    def blocks(self) -> list[tuple[int, int, int, int]]:
        """``(stage, c_out, mid, stride)`` of every block, in order."""
        out, i = [], 0
        for s, (width, count) in enumerate(zip(self.stage_widths, self.stage_blocks)):
            for b in range(count):
                out.append((s, width, self.mid_widths[i], 2 if s > 0 and b == 0 else 1))
                i += 1
        return out

    def describe(self) -> str:
        """e.g. ``resnet20 stages 16x3/32x3/64x3 > out10`` (plus the inner widths if thinned)."""
        stages = "/".join(f"{w}x{n}" for w, n in zip(self.stage_widths, self.stage_blocks))
        text = f"resnet{self.depth} stages {stages}"
        if any(mid != c for _, c, mid, _ in self.blocks()):
            text += f" mid {','.join(map(str, self.mid_widths))}"
        return f"{text} > out{self.num_classes}"

    def _payload(self) -> dict[str, Any]:
        return {"input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "stage_widths": list(self.stage_widths), "stage_blocks": list(self.stage_blocks),
                "mid_widths": list(self.mid_widths)}

    @classmethod
    def _from_payload(cls, payload: Mapping[str, Any]) -> "ResNetSpec":
        return cls(require(payload, "input_shape"), require(payload, "num_classes"),
                   require(payload, "stage_widths"), require(payload, "stage_blocks"),
                   require(payload, "mid_widths"))


SPEC_TYPES.add(ResNetSpec.SPACE, ResNetSpec)
