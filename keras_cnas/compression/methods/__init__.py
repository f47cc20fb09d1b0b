"""The four baseline-guided methods of the compact-search survey, behind one interface."""

from keras_cnas.compression.methods.base import (
    METHODS,
    CompressionMethod,
    CompressionResult,
    CompressionContext,
    SearchOutcome,
)
from keras_cnas.compression.methods.group_lasso import GroupLassoPruning
from keras_cnas.compression.methods.morphnet import MorphNet
from keras_cnas.compression.methods.synthesis import IterativeSynthesis
from keras_cnas.compression.methods.variational_dropout import VariationalDropoutPruning

__all__ = ["METHODS", "CompressionMethod", "CompressionResult", "GroupLassoPruning",
           "IterativeSynthesis", "MorphNet", "CompressionContext", "SearchOutcome",
           "VariationalDropoutPruning"]
