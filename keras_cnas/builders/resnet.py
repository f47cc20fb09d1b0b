"""Keras model of a CIFAR ResNet spec (see ``keras_cnas.spaces.resnet``)."""

from __future__ import annotations

from keras_cnas._keras import keras
from keras_cnas.builders.common import batch_norm
from keras_cnas.spaces.resnet import ResNetSpec

layers = keras.layers


def _conv(filters: int, kernel: int, stride: int, name: str) -> keras.layers.Conv2D:
    # He-normal, as in He et al. (2015, 2016); no bias: BN follows every conv.
    return layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                         kernel_initializer="he_normal", name=name)


def build_resnet(spec: ResNetSpec) -> keras.Model:
    inputs = keras.Input(shape=spec.input_shape, name="input")
    x = _conv(spec.stage_widths[0], 3, 1, "stem_conv")(inputs)
    x = batch_norm("stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    counts: dict[int, int] = {}
    for stage, c_out, mid, stride in spec.blocks():
        b = counts[stage] = counts.get(stage, -1) + 1
        name = f"stage{stage}_block{b}"
        # Created in the order Keras runs them (conv1, conv2, shortcut, add): the cost
        # estimator walks the same order.
        y = _conv(mid, 3, stride, f"{name}_conv1")(x)
        y = batch_norm(f"{name}_bn1")(y)
        y = layers.ReLU(name=f"{name}_relu1")(y)
        y = _conv(c_out, 3, 1, f"{name}_conv2")(y)
        y = batch_norm(f"{name}_bn2")(y)
        shortcut = x
        if stride != 1 or x.shape[-1] != c_out:
            shortcut = _conv(c_out, 1, stride, f"{name}_shortcut")(x)
            shortcut = batch_norm(f"{name}_shortcut_bn")(shortcut)
        x = layers.Add(name=f"{name}_add")([y, shortcut])
        x = layers.ReLU(name=f"{name}_relu")(x)
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    outputs = layers.Dense(spec.num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name=f"resnet{spec.depth}")
