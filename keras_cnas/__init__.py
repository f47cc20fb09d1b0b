"""keras_cnas: constrained neural architecture search for TensorFlow/Keras.

The pure-Python core (spaces, costs, strategies, the search engine) is imported eagerly;
everything that needs TensorFlow (``build_model``, ``data``, Keras training) is imported on
first use, so that
``import keras_cnas.spaces`` stays microsecond-fast and TensorFlow-free.

Example:
    >>> import keras_cnas as cnas
    >>> spec = cnas.spaces.reference.vgg19((32, 32, 3), 10)
    >>> cnas.estimate(spec).params > 0
    True
"""

from __future__ import annotations

from keras_cnas._lazy import lazy_attributes
from keras_cnas import costs, engine, spaces, strategies
from keras_cnas import _plugins  # noqa: F401  registers the hyper estimator, device presets
from keras_cnas.costs import Constraints, CostReport, estimate
from keras_cnas.api import search
from keras_cnas.engine import SearchResult
from keras_cnas.errors import (
    DataError,
    InfeasibleConstraintsError,
    InvalidSpecError,
    KerasCnasError,
    NoBestTrialError,
    UnknownCostError,
)

__version__ = "0.1.0"

# Attribute -> module that defines it; imported lazily because they import TensorFlow.
_LAZY = {
    "training": "keras_cnas.training",
    "build_model": "keras_cnas.builders",
    "builders": "keras_cnas.builders",
    "compression": "keras_cnas.compression",
    "data": "keras_cnas.data",
    "devices": "keras_cnas.devices",
    "export": "keras_cnas.export",
    "report": "keras_cnas.report",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "Constraints", "CostReport", "DataError", "InfeasibleConstraintsError", "InvalidSpecError",
    "KerasCnasError", "NoBestTrialError", "SearchResult", "UnknownCostError", "build_model",
    "builders", "compression", "costs", "data", "devices", "engine", "estimate", "export",
    "report", "search", "spaces", "strategies", "training",
]
