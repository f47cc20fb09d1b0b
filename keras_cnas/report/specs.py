"""A spec in words and as a few numbers: what a report table and TensorBoard's HParams show.

A full spec is too large to be a hyperparameter column (a descriptor has 7 numbers per
layer), so each space summarises its specs by the handful of numbers people filter on;
spaces without a summary here still get their description and key. Pure Python.
"""

from __future__ import annotations

from typing import Any, Callable

from keras_cnas.registry import Registry
from keras_cnas.spaces.base import Spec

HParamValue = bool | int | float | str

#: Space tag -> function giving a spec's summary numbers (``{name: number}``).
SPEC_SUMMARIES: Registry[Callable[[Any], dict[str, HParamValue]]] = Registry("spec summary")


def describe(spec: Spec) -> str:
    """The spec in words (``spec.describe()`` where the space has it), else its key.

    Example:
        >>> from keras_cnas.spaces import CategoricalSpace
        >>> describe(CategoricalSpace([3, 3]).from_decisions([2, 0]))
        'decisions 20'
    """
    words = getattr(spec, "describe", None)
    return words() if callable(words) else f"decisions {spec.key()}"


def spec_summary(spec: Spec) -> dict[str, HParamValue]:
    """``architecture`` (in words), ``spec_key`` and the space's summary numbers.

    Example:
        >>> from keras_cnas.spaces import ConvLayer, Descriptor, FcLayer
        >>> spec = Descriptor((8, 8, 1), 10, [ConvLayer(16), ConvLayer(8, pool_x=2, pool_y=2,
        ...                   sub_x=2, sub_y=2)], [FcLayer(32)])
        >>> summary = spec_summary(spec)
        >>> summary["architecture"], summary["conv_layers"], summary["filters_total"]
        ('conv16x3x3 > conv8x3x3/p2x2s2x2 > fc32 > out10', 2, 24)
    """
    summary: dict[str, HParamValue] = {"architecture": describe(spec), "spec_key": spec.key()}
    if spec.SPACE in SPEC_SUMMARIES:
        summary.update(SPEC_SUMMARIES.get(spec.SPACE)(spec))
    return summary


@SPEC_SUMMARIES.register("descriptor")
def _descriptor(spec: Any) -> dict[str, HParamValue]:
    conv, fc = spec.conv_layers, spec.fc_layers
    return {"conv_layers": len(conv), "fc_layers": len(fc),
            "filters_total": sum(layer.n_filters for layer in conv),
            "filters_max": max((layer.n_filters for layer in conv), default=0),
            "pooling_layers": sum(1 for layer in conv if layer.pools),
            "hidden_units": sum(layer.n_hidden for layer in fc)}


@SPEC_SUMMARIES.register("blockset")
def _blockset(spec: Any) -> dict[str, HParamValue]:
    summary: dict[str, HParamValue] = {"blocks_filled": sum(1 for b in spec.blocks if b)}
    for i, block_type in enumerate(spec.block_types, start=1):
        summary[f"blocks_{block_type.name}"] = sum(1 for b in spec.blocks if b == i)
    return summary


@SPEC_SUMMARIES.register("categorical")
def _categorical(spec: Any) -> dict[str, HParamValue]:
    width = len(str(len(spec.decisions) - 1))  # d0..d7, or d00..d35: sorts as a table
    return {f"d{i:0{width}d}": d for i, d in enumerate(spec.decisions)}


@SPEC_SUMMARIES.register("hyper")
def _hyper(spec: Any) -> dict[str, HParamValue]:
    """A hypermodel's active values by name, as KerasTuner's HParams show them."""
    return dict(spec.values)
