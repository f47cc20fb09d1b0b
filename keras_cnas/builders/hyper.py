"""The Keras side of :class:`~keras_cnas.spaces.hyper.HyperSpace`: build a spec's model by
calling the user's function, and price it without training.

Costs come from the built model through :func:`keras_cnas.compression.model_costs` (exact
params, MAdds, FLOPs, eq. 6 memory, peak activation), so hard bounds reject a candidate
before it trains. A model holding a layer the cost code does not know (an LSTM, a Lambda)
is priced by ``count_params()`` alone, and the layer is named (``HyperSpace.unpriced``):
bounding one of the other costs then fails at the start of the search with that name.
"""

from __future__ import annotations

import functools
import logging
from keras_cnas._keras import keras
from keras_cnas.costs import CostReport
from keras_cnas.errors import InvalidSpecError
from keras_cnas.spaces.hyper import HyperParameters, HyperSpec, note_unpriced, resolve_build_fn

__all__ = ["build_hyper", "hyper_costs"]

logger = logging.getLogger(__name__)



def build_hyper(spec: HyperSpec) -> keras.Model:
    """The model ``spec.build_fn`` builds with ``spec``'s values (built for
    ``spec.input_shape`` if the function left it unbuilt).

    A model the function compiled keeps its optimizer and loss (KerasTuner's convention);
    ``KerasEvaluator`` then only adds the accuracy metric.

    Raises:
        InvalidSpecError: the function returned no tf_keras model (e.g. a Keras 3 one).
    """
    build = resolve_build_fn(spec.build_fn, spec.module_root)
    hp = HyperParameters(spec.as_dict())
    model = build(hp)
    if not isinstance(model, keras.Model):
        hint = (" (a Keras 3 model: build it with tf_keras, e.g. `import tf_keras as keras`)"
                if type(model).__module__.startswith("keras.") else "")
        raise InvalidSpecError(f"build_fn: {spec.build_fn} returned {type(model).__name__}, "
                               f"not a tf_keras Model{hint}")
    if not model.built:
        model.build((None, *spec.input_shape))
    return model


@functools.lru_cache(maxsize=4096)
def hyper_costs(spec: HyperSpec, bytes_per_element: int = 4) -> CostReport:
    """The costs of ``spec``'s model (built, never trained); cached per spec.

    Example:
        >>> report = hyper_costs(spec)   # doctest: +SKIP
        >>> report.params == build_hyper(spec).count_params()   # doctest: +SKIP
        True
    """
    from keras_cnas.compression.costs import model_costs  # compression sits above builders
    from keras_cnas.compression.errors import UnsupportedModelError

    model = build_hyper(spec)
    try:
        return model_costs(model, bytes_per_element)
    except UnsupportedModelError as e:
        reason = str(e)
        if note_unpriced(spec.build_fn, reason):
            logger.warning("%s: only params are known: %s", spec.build_fn, reason)
        trainable = sum(int(w.shape.num_elements()) for w in model.trainable_weights)
        return CostReport(params=model.count_params(), trainable_params=trainable)
