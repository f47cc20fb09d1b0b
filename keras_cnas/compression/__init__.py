"""Compact architecture search from a baseline (the compact-search survey, Shafiee et al.).

Given a trained ``tf_keras`` model, find a smaller one that meets a hard cost target — say a
third of the baseline's FLOPs — with one of four methods, then hand it to the TFLite export:

* ``"group_lasso"`` (:class:`GroupLassoPruning`): Wen et al.'s group lasso on whole filters;
* ``"vardrop"`` (:class:`VariationalDropoutPruning`): variational dropout per filter;
* ``"morphnet"`` (:class:`MorphNet`): FLOP-weighted L1 on BatchNorm gamma, shrink, expand;
* ``"synthesis"`` (:class:`IterativeSynthesis`): probe, remove, fine-tune, repeat.

Underneath: :class:`ChannelGraph` (which channels go together), :func:`shrink` /
:func:`expand` (channel surgery with weights copied), :func:`model_costs` /
:func:`graph_costs` (analytic costs of any supported model, priced before it is built), and
the tfmot stage (:func:`prune_m_by_n`, :func:`quantization_aware`).

This package imports TensorFlow.

Example:
    >>> import keras_cnas as cnas
    >>> from keras_cnas.compression import Target, TrainingConfig, compress
    >>> spec = cnas.spaces.reference.resnet_cifar(8, (8, 8, 1), 10, width=4)
    >>> model = cnas.build_model(spec)
    >>> result = compress(model, cnas.data.load("digits"), "morphnet", Target(flops=0.33),
    ...                   training=TrainingConfig(epochs=1), finetune=TrainingConfig(epochs=1))
    >>> result.target_met, result.costs.params == result.model.count_params()
    (True, True)
"""

from keras_cnas.compression.api import compress
from keras_cnas.compression.costs import graph_costs, model_costs
from keras_cnas.compression.errors import ToleranceExceededError, UnsupportedModelError
from keras_cnas.compression.graph import SUPPORTED_LAYERS, ChannelGraph, ChannelGroup
from keras_cnas.compression.importance import taylor_importance
from keras_cnas.compression.methods import (
    METHODS,
    CompressionMethod,
    CompressionResult,
    GroupLassoPruning,
    IterativeSynthesis,
    MorphNet,
    VariationalDropoutPruning,
)
from keras_cnas.compression.noise import ChannelNoise
from keras_cnas.compression.optimize import m_by_n_fraction, prune_m_by_n, quantization_aware
from keras_cnas.compression.regularizers import ChannelGroupLasso, GroupLasso, ProximalStep
from keras_cnas.compression.selection import (
    Selection,
    prune_to_bounds,
    select_top,
    uniform_multiplier,
)
from keras_cnas.compression.surgery import (
    clone_with_weights,
    expand,
    mask_channels,
    resize,
    shrink,
)
from keras_cnas.compression.target import TARGET_COSTS, Target
from keras_cnas.compression.training import TrainingConfig

__all__ = [
    "METHODS", "SUPPORTED_LAYERS", "TARGET_COSTS", "ChannelGraph", "ChannelGroup",
    "ChannelGroupLasso", "ChannelNoise", "CompressionMethod", "CompressionResult", "GroupLasso",
    "GroupLassoPruning", "IterativeSynthesis", "MorphNet", "ProximalStep", "Selection", "Target",
    "ToleranceExceededError", "TrainingConfig", "UnsupportedModelError",
    "VariationalDropoutPruning", "clone_with_weights", "compress", "expand", "graph_costs",
    "m_by_n_fraction", "mask_channels", "model_costs", "prune_m_by_n", "prune_to_bounds",
    "quantization_aware", "resize", "select_top", "shrink", "taylor_importance",
    "uniform_multiplier",
]
