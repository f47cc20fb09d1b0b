"""Keras model of an MIT-LL descriptor (see ``keras_cnas.spaces.descriptor``)."""

from __future__ import annotations

from keras_cnas._keras import keras
from keras_cnas.builders.common import batch_norm
from keras_cnas.spaces.descriptor import Descriptor

layers = keras.layers


def build_descriptor(spec: Descriptor) -> keras.Model:
    inputs = keras.Input(shape=spec.input_shape, name="input")
    x = inputs
    for i, l in enumerate(spec.conv_layers):
        # No bias: the BatchNorm that follows has its own shift.
        x = layers.Conv2D(l.n_filters, (l.filt_y, l.filt_x), padding="same", use_bias=False,
                          name=f"conv_{i}")(x)
        x = batch_norm(name=f"conv_{i}_bn")(x)
        x = layers.ReLU(name=f"conv_{i}_relu")(x)
        if l.pools:
            x = layers.MaxPool2D((l.pool_y, l.pool_x), strides=(l.sub_y, l.sub_x),
                                 padding="valid", name=f"conv_{i}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    for j, l in enumerate(spec.fc_layers):
        x = layers.Dense(l.n_hidden, activation="relu", name=f"fc_{j}")(x)
    outputs = layers.Dense(spec.num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="descriptor_net")
