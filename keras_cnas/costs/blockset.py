"""Costs of a block-set genotype, walked op by op with :class:`CostTally`.

How the MIT-LL formulas read here: eq. 7 is applied to every convolution with its own
stride, with ``x_d`` divided by the groups (a grouped 1x1 conv), and to depthwise convs
with ``g = x_d = k``; the "+1" bias term of eq. 7 is kept even though these convs have no
bias (the FLOPs are the paper's definition, not a count of what runs — ``madds`` is
that count). Residual adds, BatchNorm and pooling count 0 FLOPs and 0 MAdds. For memory
(eq. 6) ``max(|x_l|, |y_l|)`` is the largest single tensor; the peak activation counts a
residual block's input as alive until its ``Add``.
"""

from __future__ import annotations

from keras_cnas.costs.report import CostReport
from keras_cnas.costs.tally import CostTally, size
from keras_cnas.spaces.blockset import BlockSetGenotype


def estimate_blockset(spec: BlockSetGenotype, bytes_per_element: int = 4) -> CostReport:
    sk = spec.skeleton
    t = CostTally(spec.input_shape)
    x = t.conv(spec.input_shape, sk.stem_filters, (sk.stem_kernel, sk.stem_kernel), sk.stem_stride)
    t.batch_norm(x)
    for pos in sk.positions:
        block = spec.block_type(pos.index)
        if block is None:
            if not pos.is_identity_when_empty:  # projection shortcut
                x = t.batch_norm(t.conv(x, pos.c_out, (1, 1), pos.stride))
            continue
        residual = pos.stride == 1 and pos.c_in == pos.c_out
        block_input = x
        kernel = (block.kernel, block.kernel)
        if block.expansion > 1:
            y = t.batch_norm(t.conv(x, block.expansion * pos.c_in, (1, 1), groups=block.expand_groups))
            t.held = size(block_input) if residual else 0
            y = t.batch_norm(t.depthwise(y, kernel, pos.stride))
        else:
            y = t.batch_norm(t.depthwise(x, kernel, pos.stride))
            t.held = size(block_input) if residual else 0
        y = t.batch_norm(t.conv(y, pos.c_out, (1, 1), groups=block.project_groups))
        t.held = 0
        x = t.add(y) if residual else y
    if sk.head_filters:
        x = t.batch_norm(t.conv(x, sk.head_filters, (1, 1)))
    features = t.global_pool(x)
    t.dense(features, spec.num_classes)
    return t.report(bytes_per_element)
