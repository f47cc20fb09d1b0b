"""Reference networks as points in the spaces, pinned by golden cost tests.

Example:
    >>> from keras_cnas.costs import estimate
    >>> estimate(mobilenet_v2((224, 224, 3), 1000)).params   # == keras.applications
    3538984
"""

from __future__ import annotations

from typing import Sequence

from keras_cnas._checks import is_int
from keras_cnas.spaces.blockset import (
    DEFAULT_BLOCK_TYPES,
    DEFAULT_STAGE_POSITIONS,
    MOBILENET_V2_STAGES,
    BlockSetGenotype,
    BlockSetSpace,
    BlockType,
    Skeleton,
    Stage,
)
from keras_cnas.spaces.descriptor import ConvLayer, Descriptor, FcLayer, Skip
from keras_cnas.spaces.resnet import ResNetSpec

#: VGG-19's conv widths; "M" is a 2x2 max-pool with stride 2 after the preceding conv.
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def vgg19(input_shape: Sequence[int], num_classes: int, hidden: int = 4096) -> Descriptor:
    """VGG-19 as a descriptor: 16 3x3 conv layers, 5 max-pools, two fc layers of ``hidden``.

    The descriptor adds BatchNorm after each conv and drops the conv biases (the descriptor
    space's realisation); otherwise the layers are VGG-19's. At 32x32 the last map is 1x1.
    """
    conv: list[ConvLayer] = []
    for item in VGG19_LAYOUT:
        if item == "M":
            conv[-1] = conv[-1]._replace(pool_x=2, pool_y=2, sub_x=2, sub_y=2)
        else:
            conv.append(ConvLayer(int(item), 3, 3))
    return Descriptor(tuple(input_shape), num_classes, tuple(conv),
                      (FcLayer(hidden), FcLayer(hidden)))


def make_divisible(value: float, divisor: int = 8) -> int:
    """Rounds a channel count to a multiple of ``divisor``, never more than 10 % down.

    The rule MobileNetV2 uses for its width multiplier.
    """
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def mobilenet_v2_skeleton(alpha: float = 1.0,
                          stage_positions: Sequence[int] = DEFAULT_STAGE_POSITIONS) -> Skeleton:
    """The default block-set skeleton at width multiplier ``alpha``."""
    if not alpha > 0:
        raise ValueError(f"alpha: expected a positive width multiplier such as 1.0, got {alpha!r}")
    if len(stage_positions) != len(MOBILENET_V2_STAGES):
        raise ValueError(f"stage_positions: expected {len(MOBILENET_V2_STAGES)} counts, "
                         f"got {list(stage_positions)}")
    stages = tuple(Stage(make_divisible(int(c * alpha)), s, n)
                   for (c, s, _), n in zip(MOBILENET_V2_STAGES, stage_positions))
    head = 1280 if alpha <= 1.0 else make_divisible(1280 * alpha)
    return Skeleton(stem_filters=make_divisible(32 * alpha), stem_kernel=3, stem_stride=2,
                    stages=stages, head_filters=head, activation="relu6")


def mobilenet_v2_space(input_shape: Sequence[int], num_classes: int,
                       alpha: float = 1.0) -> BlockSetSpace:
    """The default block-set space (N = 36, six block types) at width multiplier ``alpha``."""
    return BlockSetSpace(input_shape, num_classes, skeleton=mobilenet_v2_skeleton(alpha),
                         block_types=DEFAULT_BLOCK_TYPES)


def mobilenet_v2(input_shape: Sequence[int], num_classes: int, alpha: float = 1.0) -> BlockSetGenotype:
    """MobileNetV2 as a genotype of :func:`mobilenet_v2_space`.

    Each stage fills its first positions with MobileNetV2's blocks (``ir_t1`` in the
    first stage, ``ir_t6`` elsewhere) and leaves the rest empty (identity). At 224x224x3
    with 1000 classes its params equal ``tf_keras.applications.MobileNetV2(weights=None)``'s.
    """
    space = mobilenet_v2_space(input_shape, num_classes, alpha)
    t1 = 1 + [t.name for t in space.block_types].index("ir_t1")
    t6 = 1 + [t.name for t in space.block_types].index("ir_t6")
    blocks: list[int] = []
    for s, ((_, _, filled), stage) in enumerate(zip(MOBILENET_V2_STAGES, space.skeleton.stages)):
        code = t1 if s == 0 else t6
        blocks += [code] * filled + [0] * (stage.positions - filled)
    return space.genotype(blocks)


#: NAS-Bench-Macro's per-layer choices after identity (code 0).
NAS_BENCH_MACRO_BLOCK_TYPES = (BlockType("mb_k3_e3", expansion=3, kernel=3),
                               BlockType("mb_k5_e6", expansion=6, kernel=5))


def nas_bench_macro_space(input_shape: Sequence[int] = (32, 32, 3),
                          num_classes: int = 10) -> BlockSetSpace:
    """NAS-Bench-Macro's macro space (CIFAR-10) as a block-set space.

    Stem conv 3x3 to 32 channels (stride 1), 8 positions in stages of 2, 3, 3 with 64, 128,
    256 channels (each stage starts with stride 2), a 1x1 head to 1280, ReLU. A genotype's
    ``blocks`` as a string is the benchmark's key ("01201210"), and its ``trainable_params``
    and ``madds`` equal the table's ``params`` and ``flops``.
    """
    skeleton = Skeleton(stem_filters=32, stem_kernel=3, stem_stride=1,
                        stages=(Stage(64, 2, 2), Stage(128, 2, 3), Stage(256, 2, 3)),
                        head_filters=1280, activation="relu")
    return BlockSetSpace(input_shape, num_classes, skeleton=skeleton,
                         block_types=NAS_BENCH_MACRO_BLOCK_TYPES)


#: Depths of the CIFAR ResNets in He et al. (2016), Table 6: 6n + 2.
RESNET_CIFAR_DEPTHS = (20, 32, 44, 56, 110)


def resnet_cifar(depth: int = 20, input_shape: Sequence[int] = (32, 32, 3), num_classes: int = 10,
                 width: int = 16) -> ResNetSpec:
    """He et al.'s CIFAR ResNet-``depth``: three stages of ``(depth - 2) / 6`` basic blocks
    with ``width``, ``2 * width`` and ``4 * width`` channels (16/32/64 in the paper).

    The shortcuts that change shape are 1x1 projections (option B; see
    :mod:`keras_cnas.spaces.resnet`): ResNet-20 has 274,042 parameters (BN statistics
    included; 2,560 conv weights of them in the two projections) and 40.8 M MAdds.
    ``width`` thins or widens every layer alike, e.g. for a quick test.

    Args:
        depth: 6n + 2 with n >= 1: 20, 32, 44, 56 and 110 are the paper's.
        input_shape: (height, width, channels) of the images.
        num_classes: classifier outputs.
        width: channels of the first stage.

    Example:
        >>> from keras_cnas.costs import estimate
        >>> estimate(resnet_cifar(20)).params, estimate(resnet_cifar(32)).madds
        (274042, 69124736)
    """
    if not is_int(depth) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth: a CIFAR ResNet has 6n + 2 layers (n >= 1), e.g. "
                         f"{', '.join(map(str, RESNET_CIFAR_DEPTHS))}; got {depth!r}")
    if not is_int(width) or width < 1:
        raise ValueError(f"width: expected a positive number of channels such as 16, got {width!r}")
    n = (depth - 2) // 6
    widths = (width, 2 * width, 4 * width)
    return ResNetSpec(tuple(input_shape), num_classes, widths, (n, n, n),
                      tuple(w for w in widths for _ in range(n)))


def resnet_cifar_descriptor(depth: int = 8, input_shape: Sequence[int] = (32, 32, 3),
                            num_classes: int = 10, width: int = 16) -> Descriptor:
    """:func:`resnet_cifar` as a residual descriptor: the stem conv, then each basic block
    as two 3x3 conv layers (the first with the block's stride) under one skip, global
    average pooling and the classifier.

    Its params, MAdds and FLOPs are those of ``resnet_cifar(depth, ...)``; ResNet-8 is the
    MLPerf Tiny image-classification reference's topology (16/32/64 channels; 78,714
    parameters with BN statistics, 78,042 trainable; 12.5 M MAdds).

    Example:
        >>> from keras_cnas.costs import estimate
        >>> r8 = resnet_cifar_descriptor(8)
        >>> (estimate(r8).params, estimate(r8).madds) == (
        ...     estimate(resnet_cifar(8)).params, estimate(resnet_cifar(8)).madds)
        True
    """
    spec = resnet_cifar(depth, input_shape, num_classes, width)
    conv = [ConvLayer(spec.stage_widths[0])]
    skips = []
    for _, c_out, mid, stride in spec.blocks():
        conv += [ConvLayer(mid, stride=stride), ConvLayer(c_out)]
        skips.append(Skip(len(conv) - 2, len(conv) - 1))
    return Descriptor(tuple(input_shape), num_classes, tuple(conv), (), tuple(skips),
                      global_pool=True)
