"""Shared pytest fixtures and checks (``from conftest import assert_costs_exact``)."""

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The real datasets beside the project (``../shared/data``); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


def madds_from_keras(model):
    """Multiply-adds counted from the built layers' real kernels and output shapes: each
    output pixel of a conv does ``kernel.size`` MACs (``(kh, kw, c_in / groups, c_out)``;
    depthwise ``(kh, kw, c, 1)``), a separable conv its depthwise plus pointwise kernels."""
    import numpy as np

    from keras_cnas._keras import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.SeparableConv2D):
            _, h, w, _ = layer.output_shape
            total += h * w * (int(np.prod(layer.depthwise_kernel.shape))
                              + int(np.prod(layer.pointwise_kernel.shape)))
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, _ = layer.output_shape
            total += h * w * int(np.prod(layer.depthwise_kernel.shape))
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, _ = layer.output_shape
            total += h * w * int(np.prod(layer.kernel.shape))
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.kernel.shape))
    return total


def assert_costs_exact(spec):
    """Builds ``spec`` and asserts that ``estimate(spec)`` has its params, trainable params
    and MAdds exactly; returns the model."""
    import numpy as np

    import keras_cnas as cnas
    from keras_cnas._keras import keras

    keras.backend.clear_session()
    model = cnas.build_model(spec)
    report = cnas.estimate(spec)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert (model.count_params(), trainable, madds_from_keras(model)) == (
        report.params, report.trainable_params, report.madds), spec.to_json()
    return model
