"""Keras model of an MIT-LL descriptor (see ``keras_cnas.spaces.descriptor``)."""

from __future__ import annotations

from keras_cnas._keras import keras
from keras_cnas.builders.common import batch_norm
from keras_cnas.spaces.descriptor import Descriptor

layers = keras.layers


def build_descriptor(spec: Descriptor) -> keras.Model:
    inputs = keras.Input(shape=spec.input_shape, name="input")
    x = inputs
    starts = {s.start: s for s in spec.skips}
    ends = {s.end: s for s in spec.skips}
    skip_input = None
    for i, l in enumerate(spec.conv_layers):
        if i in starts:
            skip_input = x
        # No bias: the BatchNorm that follows has its own shift.
        x = layers.Conv2D(l.n_filters, (l.filt_y, l.filt_x), strides=l.stride, padding="same",
                          use_bias=False, name=f"conv_{i}")(x)
        x = batch_norm(name=f"conv_{i}_bn")(x)
        if i in ends:
            # A ResNet basic block's end: the shortcut (created after the main path, the
            # order the converter keeps and the deployment graph replays), Add, then ReLU.
            shortcut = skip_input
            strides = spec.shortcut(ends[i])
            if strides is not None:
                shortcut = layers.Conv2D(l.n_filters, 1, strides=strides, padding="same",
                                         use_bias=False, name=f"conv_{i}_shortcut")(shortcut)
                shortcut = batch_norm(name=f"conv_{i}_shortcut_bn")(shortcut)
            x = layers.Add(name=f"conv_{i}_add")([x, shortcut])
        x = layers.ReLU(name=f"conv_{i}_relu")(x)
        if l.pools:
            x = layers.MaxPool2D((l.pool_y, l.pool_x), strides=(l.sub_y, l.sub_x),
                                 padding="valid", name=f"conv_{i}_pool")(x)
    if spec.global_pool:
        x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    else:
        x = layers.Flatten(name="flatten")(x)
    for j, l in enumerate(spec.fc_layers):
        x = layers.Dense(l.n_hidden, activation="relu", name=f"fc_{j}")(x)
    outputs = layers.Dense(spec.num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="descriptor_net")
