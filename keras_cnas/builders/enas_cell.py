"""Keras model of an ENAS cell network (see ``keras_cnas.spaces.enas_cell``).

Layer names follow positions: ``cell_{k}_calib{0|1}_*`` for the calibration of cell ``k``'s
inputs, ``cell_{k}_block_{j}_{a|b}_{op}_*`` for the ops of block ``j``, ``cell_{k}_block_{j}_add``,
``cell_{k}_out_*`` for the output concat and 1x1 conv; ``stem_*``, ``head_relu``,
``global_pool`` and ``classifier`` around them. Cells that do not reach the classifier
(``LayerPlan.live``) are not built.
"""

from __future__ import annotations

from keras_cnas._keras import keras
from keras_cnas.builders.common import batch_norm
from keras_cnas.spaces.enas_cell import OPS, EnasNet

layers = keras.layers


def factorized_reduce(x, filters: int, name: str):
    """ENAS's stride-2 shortcut: two 1x1 convs (``filters // 2`` each) on the input and on
    the input shifted one pixel down-right, concatenated, then BN. Unlike a strided 1x1 conv
    alone, it sees every pixel."""
    half = filters // 2
    path1 = layers.Conv2D(half, 1, strides=2, use_bias=False, name=f"{name}_path1")(x)
    # Pad first, then crop: a 1x1 map stays 1x1 (its shifted copy is zeros).
    shifted = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}_shift_pad")(x)
    shifted = layers.Cropping2D(((1, 0), (1, 0)), name=f"{name}_shift_crop")(shifted)
    path2 = layers.Conv2D(half, 1, strides=2, use_bias=False, name=f"{name}_path2")(shifted)
    x = layers.Concatenate(name=f"{name}_concat")([path1, path2])
    return batch_norm(name=f"{name}_bn")(x)


def _relu_conv_bn(x, filters: int, name: str):
    x = layers.ReLU(name=f"{name}_relu")(x)
    x = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_conv")(x)
    return batch_norm(name=f"{name}_bn")(x)


def _op(x, op: str, channels: int, stride: int, name: str):
    info = OPS[op]
    if info.kind == "sep":
        x = layers.ReLU(name=f"{name}_relu")(x)
        x = layers.SeparableConv2D(channels, info.kernel, strides=stride, padding="same",
                                   use_bias=False, name=f"{name}_sep")(x)
        return batch_norm(name=f"{name}_bn")(x)
    if info.kind == "avg":
        return layers.AveragePooling2D(info.kernel, strides=stride, padding="same",
                                       name=f"{name}_pool")(x)
    if info.kind == "max":
        return layers.MaxPool2D(info.kernel, strides=stride, padding="same", name=f"{name}_pool")(x)
    if stride == 2:  # identity across a reduction
        return factorized_reduce(x, channels, f"{name}_reduce")
    return x


def build_enas_net(spec: EnasNet) -> keras.Model:
    """The Keras model of ``spec``: its ``count_params()`` equals ``estimate(spec).params``.

    Example:
        >>> from keras_cnas.spaces.enas_cell import EnasCell
        >>> spec = EnasNet((8, 8, 1), 10, EnasCell([(0, "sep3x3", 1, "identity")]),
        ...                num_layers=2, filters=4)
        >>> model = build_enas_net(spec)
        >>> model.output_shape, model.get_layer("cell_1_block_0_b_identity_reduce_bn").name
        ((None, 10), 'cell_1_block_0_b_identity_reduce_bn')
    """
    inputs = keras.Input(shape=spec.input_shape, name="input")
    x = layers.Conv2D(spec.filters, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    outputs = {-1: batch_norm(name="stem_bn")(x)}
    cell = spec.cell
    unused = cell.unused_blocks
    for plan in spec.layer_plan():
        if not plan.live:
            continue
        prefix, ch = f"cell_{plan.index}", plan.channels
        states = []
        for which, cal in enumerate(plan.calibrate):
            if not cell.uses_input(which):  # its source may not even be built
                states.append(None)
                continue
            t = outputs[plan.sources[which]]
            name = f"{prefix}_calib{which}"
            if cal.kind == "conv":
                t = _relu_conv_bn(t, ch, name)
            elif cal.kind == "reduce":
                t = factorized_reduce(layers.ReLU(name=f"{name}_relu")(t), ch, f"{name}_reduce")
            states.append(t)
        for j, block in enumerate(cell.blocks):
            ends = [_op(states[index], op, ch, plan.op_stride(index),
                        f"{prefix}_block_{j}_{side}_{op}")
                    for side, (index, op) in zip("ab", block.sides())]
            states.append(layers.Add(name=f"{prefix}_block_{j}_add")(ends))
        ends = [states[2 + j] for j in unused]
        t = ends[0] if len(ends) == 1 else layers.Concatenate(name=f"{prefix}_concat")(ends)
        outputs[plan.index] = _relu_conv_bn(t, ch, f"{prefix}_out")
    x = layers.ReLU(name="head_relu")(outputs[spec.num_layers - 1])
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    y = layers.Dense(spec.num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, y, name="enas_net")
