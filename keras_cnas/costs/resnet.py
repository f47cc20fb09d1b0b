"""Costs of a CIFAR ResNet spec, walked op by op with :class:`CostTally`.

Every conv is counted with its own stride (as for block-set genotypes), the projection
shortcut included. The ops are walked in the order Keras runs the built model: in a block,
``conv1``, ``conv2``, then the projection shortcut, then the ``Add``. So the peak
activation counts the block input as held across ``conv2`` (the shortcut or the ``Add``
still needs it) and the main branch's output as held across the shortcut conv.
"""

from __future__ import annotations

from keras_cnas.costs.report import CostReport
from keras_cnas.costs.tally import CostTally, size
from keras_cnas.spaces.resnet import ResNetSpec


def estimate_resnet(spec: ResNetSpec, bytes_per_element: int = 4) -> CostReport:
    t = CostTally(spec.input_shape)
    x = t.batch_norm(t.conv(spec.input_shape, spec.stage_widths[0], (3, 3)))
    for _, c_out, mid, stride in spec.blocks():
        block_input = x
        y = t.batch_norm(t.conv(x, mid, (3, 3), stride))
        t.held = size(block_input)
        y = t.batch_norm(t.conv(y, c_out, (3, 3)))
        if stride != 1 or block_input[2] != c_out:
            t.held = size(y)
            t.batch_norm(t.conv(block_input, c_out, (1, 1), stride))
        t.held = 0
        x = t.add(y)
    features = t.global_pool(x)
    t.dense(features, spec.num_classes)
    return t.report(bytes_per_element)
