"""``build_model(spec)``: a ``tf_keras.Model`` for any spec, dispatched on its space.

Layer names are deterministic by position (``conv_3``, ``block_12_expand``) so that
weights, pruning masks and reports can refer to layers across runs.
"""

from __future__ import annotations

from typing import Callable

from keras_cnas._keras import keras
from keras_cnas.builders.blockset import build_blockset
from keras_cnas.builders.descriptor import build_descriptor
from keras_cnas.builders.resnet import build_resnet
from keras_cnas.builders.enas_cell import build_enas_net
from keras_cnas.builders.hyper import build_hyper
from keras_cnas.errors import InvalidSpecError
from keras_cnas.registry import Registry
from keras_cnas.spaces.base import Spec

Builder = Callable[[Spec], keras.Model]
#: Model builders by spec ``SPACE`` tag; register one for a new space.
BUILDERS: Registry[Builder] = Registry("model builder")
BUILDERS.add("descriptor", build_descriptor)
BUILDERS.add("blockset", build_blockset)
BUILDERS.add("resnet", build_resnet)
BUILDERS.add("enas_cell", build_enas_net)
BUILDERS.add("hyper", build_hyper)


def build_model(spec: Spec) -> keras.Model:
    """Builds the (untrained, uncompiled) Keras model that ``spec`` describes.

    Its ``count_params()`` equals ``keras_cnas.estimate(spec).params``. The output is a
    softmax over the classes.

    Example:
        >>> import keras_cnas as cnas
        >>> spec = cnas.spaces.reference.mobilenet_v2((96, 96, 3), 10, alpha=0.35)
        >>> model = cnas.build_model(spec)
        >>> model.count_params() == cnas.estimate(spec).params
        True
    """
    tag = getattr(spec, "SPACE", None)
    if tag not in BUILDERS:
        raise InvalidSpecError(
            f"spec: no model builder for {type(spec).__name__} (space {tag!r}); builders "
            f"exist for: {', '.join(BUILDERS.names())}")
    return BUILDERS.get(tag)(spec)


__all__ = ["BUILDERS", "build_model"]
