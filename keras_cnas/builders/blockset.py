"""Keras model of a block-set genotype (see ``keras_cnas.spaces.blockset``)."""

from __future__ import annotations

from keras_cnas._keras import keras
from keras_cnas.builders.common import batch_norm
from keras_cnas.spaces.blockset import BlockSetGenotype

layers = keras.layers


def _activation(kind: str, name: str) -> keras.layers.Layer:
    return layers.ReLU(max_value=6.0 if kind == "relu6" else None, name=name)


def build_blockset(spec: BlockSetGenotype) -> keras.Model:
    sk = spec.skeleton
    act = sk.activation
    inputs = keras.Input(shape=spec.input_shape, name="input")
    x = layers.Conv2D(sk.stem_filters, sk.stem_kernel, strides=sk.stem_stride, padding="same",
                      use_bias=False, name="stem_conv")(inputs)
    x = batch_norm(name="stem_bn")(x)
    x = _activation(act, "stem_act")(x)
    for pos in sk.positions:
        block = spec.block_type(pos.index)
        name = f"block_{pos.index}"
        if block is None:
            if not pos.is_identity_when_empty:
                # Shapes change here, so "empty" is a projection shortcut (NAS-Bench-Macro).
                x = layers.Conv2D(pos.c_out, 1, strides=pos.stride, use_bias=False,
                                  name=f"{name}_shortcut")(x)
                x = batch_norm(name=f"{name}_shortcut_bn")(x)
            continue
        block_input = x
        if block.expansion > 1:
            x = layers.Conv2D(block.expansion * pos.c_in, 1, groups=block.expand_groups,
                              use_bias=False, name=f"{name}_expand")(x)
            x = batch_norm(name=f"{name}_expand_bn")(x)
            x = _activation(act, f"{name}_expand_act")(x)
        x = layers.DepthwiseConv2D(block.kernel, strides=pos.stride, padding="same",
                                   use_bias=False, name=f"{name}_depthwise")(x)
        x = batch_norm(name=f"{name}_depthwise_bn")(x)
        x = _activation(act, f"{name}_depthwise_act")(x)
        x = layers.Conv2D(pos.c_out, 1, groups=block.project_groups, use_bias=False,
                          name=f"{name}_project")(x)
        x = batch_norm(name=f"{name}_project_bn")(x)
        if pos.stride == 1 and pos.c_in == pos.c_out:
            x = layers.Add(name=f"{name}_add")([block_input, x])
    if sk.head_filters:
        x = layers.Conv2D(sk.head_filters, 1, use_bias=False, name="head_conv")(x)
        x = batch_norm(name="head_bn")(x)
        x = _activation(act, "head_act")(x)
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    outputs = layers.Dense(spec.num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="blockset_net")
