"""The tensorflow-model-optimization stage after shrinking: 2:4 structured pruning and
quantization-aware training, with the wrappers stripped (or converted) before export.

* :func:`prune_m_by_n` wraps every ``Conv2D`` and ``Dense`` that has at least ``n`` input
  channels (per group) in tfmot's ``prune_low_magnitude(sparsity_m_by_n=(m, n))``, fine-tunes
  with ``UpdatePruningStep``, and returns the stripped model: plain layers whose kernels
  have ``m`` zeros in every ``n`` consecutive input channels (the layout sparse tensor cores
  and XNNPACK's sparse kernels use). DepthwiseConv2D is left dense (tfmot cannot prune it
  this way), and so is a layer with fewer than ``n`` input channels (the first conv on RGB:
  it would lose a third of its input).
* :func:`quantization_aware` fine-tunes with fake quantization (tfmot ``quantize_model``);
  after 2:4 pruning it re-applies the zero pattern after every step, so that QAT keeps the
  zeros. (tfmot's own ``Default8BitPrunePreserveQuantizeScheme`` builds its mask when
  ``quantize_apply`` builds the wrappers, from freshly initialised weights, before the
  trained ones are copied in: measured here it kept nothing — 21 % zeros in the int8
  kernels of a 2:4 model, against 50 % with re-masking.)
  The returned QAT model converts to a full-integer ``.tflite`` with
  :func:`keras_cnas.export.to_tflite` (``quantize="int8"``).

The export never uses the converter's ``EXPERIMENTAL_SPARSITY`` (see
:mod:`keras_cnas.export.convert`): the zeros ship as a dense int8 model.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from keras_cnas._checks import is_int
from keras_cnas._keras import keras, tfmot
from keras_cnas.compression.training import TrainingConfig, fit, outputs_probabilities
from keras_cnas.data import Dataset

__all__ = ["m_by_n_fraction", "prunable_for_m_by_n", "prune_m_by_n", "quantization_aware"]


def _check_m_by_n(m_by_n: Any) -> tuple[int, int]:
    if not isinstance(m_by_n, (tuple, list)) or len(m_by_n) != 2 or not all(
            is_int(v) for v in m_by_n) \
            or not 0 < m_by_n[0] < m_by_n[1]:
        raise ValueError(f"sparsity_m_by_n: expected (m, n) with 0 < m < n, such as (2, 4) "
                         f"(2 zeros in every 4 weights), got {m_by_n!r}")
    return int(m_by_n[0]), int(m_by_n[1])


def prunable_for_m_by_n(model: Any, n: int = 4) -> list[str]:
    """Names of the ``Conv2D`` / ``Dense`` layers :func:`prune_m_by_n` prunes."""
    out = []
    for layer in model.layers:
        if type(layer) in (keras.layers.Conv2D, keras.layers.Dense) \
                and int(layer.kernel.shape[-2]) >= n:
            out.append(layer.name)
    return out


def prune_m_by_n(model: Any, data: Dataset, training: TrainingConfig,
                 sparsity_m_by_n: Sequence[int] = (2, 4), *, seed: int = 0) -> Any:
    """``model`` fine-tuned into ``m``:``n`` structured sparsity, pruning wrappers stripped.

    Args:
        model: a trained Sequential or Functional model (not modified).
        data: training data for the fine-tuning.
        training: the fine-tuning.
        sparsity_m_by_n: ``(m, n)``: ``m`` zeros in every ``n`` consecutive weights along
            the input channels.
        seed: seeds the fine-tuning.

    Example:
        >>> import keras_cnas as cnas
        >>> from keras_cnas._keras import keras
        >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(10, activation="softmax", name="out")])
        >>> sparse = prune_m_by_n(model, cnas.data.load("digits"), TrainingConfig(epochs=1))
        >>> m_by_n_fraction(sparse.get_layer("out").kernel.numpy())
        1.0
    """
    m, n = _check_m_by_n(tuple(sparsity_m_by_n))
    targets = set(prunable_for_m_by_n(model, n))
    if not targets:
        raise ValueError(f"model: no Conv2D or Dense layer of {model.name!r} has {n} or more input "
                         f"channels, so none can take {m}:{n} sparsity")
    sparsity = tfmot().sparsity.keras

    def clone(layer: Any) -> Any:
        copy = type(layer).from_config(layer.get_config())
        if layer.name not in targets:
            return copy
        # The schedule's sparsity is unused with m_by_n; the masks are recomputed every 10
        # steps (every step doubles the training time) and applied at every step.
        return sparsity.prune_low_magnitude(
            copy, pruning_schedule=sparsity.ConstantSparsity(0.5, begin_step=0, frequency=10),
            sparsity_m_by_n=(m, n))

    wrapped = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name in targets:
            target = next(w for w in wrapped.layers
                          if getattr(w, "layer", None) is not None and w.layer.name == layer.name)
            target.layer.set_weights(layer.get_weights())
        else:
            wrapped.get_layer(layer.name).set_weights(layer.get_weights())
    fit(wrapped, data, training, seed=seed, callbacks=[sparsity.UpdatePruningStep()],
        from_logits=not outputs_probabilities(model))
    return sparsity.strip_pruning(wrapped)


def m_by_n_fraction(kernel: np.ndarray, m: int = 2, n: int = 4) -> float:
    """The fraction of ``n``-blocks along the input axis (``kernel.shape[-2]``: a conv's
    input channels, a dense kernel's rows, zero-padded to a multiple of ``n``) with at
    least ``m`` zeros. 1.0 for an ``m``:``n``-sparse kernel.

    Example:
        >>> m_by_n_fraction(np.array([[1.0], [0.0], [2.0], [0.0]]))
        1.0
    """
    kernel = np.asarray(kernel)
    rows = np.moveaxis(kernel, -2, -1).reshape(-1, kernel.shape[-2])  # (..., c_in)
    pad = (-rows.shape[1]) % n
    rows = np.pad(rows, ((0, 0), (0, pad)))
    blocks = rows.reshape(rows.shape[0], -1, n)
    return float(np.mean(np.sum(blocks == 0, axis=-1) >= m))


def quantization_aware(model: Any, data: Dataset, training: TrainingConfig, *,
                       preserve_sparsity: bool = False, seed: int = 0) -> Any:
    """``model`` wrapped for quantization-aware training and fine-tuned.

    Args:
        model: a trained float model (not modified).
        data: training data.
        training: the QAT fine-tuning (a small learning rate, e.g. 1e-4).
        preserve_sparsity: keep the zero weights of ``Conv2D`` / ``Dense`` kernels zero, for
            a model from :func:`prune_m_by_n`.
        seed: seeds the fine-tuning.

    Returns:
        The QAT model (fake-quant wrappers); export it with
        ``keras_cnas.export.to_tflite(qat_model, "int8", representative_data=data)``.

    Raises:
        ValueError: tfmot cannot quantize a layer of the model (named in the message).

    A BatchNorm gamma that is exactly zero (a channel a regulariser switched off at one of
    the BatchNorms of a residual stream) is set to 1e-6 first: QAT folds BatchNorm into the
    conv before it, and an all-zero folded filter has no per-channel quantization scale,
    which the converter rejects. The output changes by 1e-6 of a normalised activation.
    """
    quantization = tfmot().quantization.keras
    model = _nonzero_gammas(model)
    try:
        qat = quantization.quantize_model(model)
    except Exception as e:  # noqa: BLE001  re-raised naming the argument
        raise ValueError(f"model: tfmot cannot prepare {model.name!r} for quantization-aware "
                         f"training: {e}; export with post-training int8 instead") from e
    callbacks = [_KeepZeros(model, qat)] if preserve_sparsity else []
    fit(qat, data, training, seed=seed, callbacks=callbacks,
        from_logits=not outputs_probabilities(model))
    return qat


class _KeepZeros(keras.callbacks.Callback):
    """Multiplies every QAT kernel by the zero pattern of the float model's kernel, before
    training and after every step."""

    def __init__(self, model: Any, qat: Any):
        super().__init__()
        zeros = {layer.name: layer.kernel.numpy() != 0 for layer in model.layers
                 if type(layer) in (keras.layers.Conv2D, keras.layers.Dense)
                 and np.any(layer.kernel.numpy() == 0)}
        self.pairs = []
        for layer in qat.layers:
            inner = getattr(layer, "layer", None)
            if inner is None or inner.name not in zeros:
                continue
            mask = zeros[inner.name]
            # The wrapper swaps inner.kernel for its fake-quantised tensor; the variable is
            # among the wrapper's weights.
            for w in layer.weights:
                if w.name.split("/")[-1].startswith("kernel") and tuple(w.shape) == mask.shape:
                    self.pairs.append((w, mask.astype(np.float32)))
        self.apply()

    def apply(self) -> None:
        for kernel, mask in self.pairs:
            kernel.assign(kernel * mask)

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.apply()


def _nonzero_gammas(model: Any) -> Any:
    """``model``, or a copy with exactly-zero BatchNorm gammas set to 1e-6."""
    from keras_cnas.compression.surgery import clone_with_weights

    layers = [layer for layer in model.layers
              if isinstance(layer, keras.layers.BatchNormalization) and layer.scale
              and np.any(layer.gamma.numpy() == 0)]
    if not layers:
        return model
    copy = clone_with_weights(model)
    for layer in layers:
        gamma = copy.get_layer(layer.name).gamma
        value = gamma.numpy()
        value[value == 0] = 1e-6
        gamma.assign(value)
    return copy
