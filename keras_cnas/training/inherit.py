"""Weight inheritance: a child architecture starts from its parent's trained weights.

MIT-LL names it as a technique worth about 2 points that its search did not use. Here a
trial trained with ``KerasEvaluator(inherit_weights=True)`` saves its weights to
``weights.npz`` in its trial directory (plain arrays, read with ``allow_pickle=False``: no
code runs on load), and a candidate whose ``info`` names a ``"parent"`` trial id (Monte
Carlo's adaptive and full steps, evolution's mutations, local search's neighbours) starts
from them:

* a layer whose name (layers are named by position, ``conv_3``, ``fc_0``) and weight shapes
  match the parent's is copied whole: an identical child starts exactly where its parent
  ended;
* a layer of the same name and kind whose shapes differ (a scaled filter count or kernel,
  more hidden units) gets the overlapping slice of each of its parent's arrays, the rest of
  its fresh initialisation kept. This is not Net2Net's function-preserving widening (the
  next layer is not rescaled); it is a warm start, measured as such in
  ``benchmarks/real_task.py``.

Example:
    >>> import pathlib, tempfile
    >>> import keras_cnas as cnas
    >>> from keras_cnas.spaces import ConvLayer, Descriptor
    >>> spec = Descriptor((8, 8, 1), 10, [ConvLayer(4)])
    >>> parent, child = cnas.build_model(spec), cnas.build_model(spec)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "weights.npz"
    >>> save_weights(parent, path)
    >>> inherit_weights(child, path)
    {'copied': 3, 'partial': 0}
"""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from keras_cnas._keras import keras

#: The file a trial's weights are saved to, in its trial directory.
WEIGHTS_FILE = "weights.npz"


def save_weights(model: "keras.Model", path: pathlib.Path) -> None:
    """Every layer's weights as ``<layer name>/<index>`` arrays in an ``.npz`` (atomic)."""
    arrays = {f"{layer.name}/{i}": np.asarray(w) for layer in model.layers
              for i, w in enumerate(layer.get_weights())}
    arrays["__kinds__"] = np.array([f"{layer.name}={type(layer).__name__}" for layer in model.layers
                                    if layer.get_weights()])
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def inherit_weights(model: "keras.Model", path: pathlib.Path) -> dict[str, int]:
    """Copies the weights saved at ``path`` into ``model`` layer by layer (see the module
    docstring); returns how many layers were copied whole and how many in part."""
    with np.load(path, allow_pickle=False) as saved:
        arrays = {k: saved[k] for k in saved.files}
    kinds = dict(entry.split("=", 1) for entry in arrays.pop("__kinds__", np.array([])).tolist())
    copied = partial = 0
    for layer in model.layers:
        current = layer.get_weights()
        if not current or kinds.get(layer.name) != type(layer).__name__:
            continue
        parent = [arrays.get(f"{layer.name}/{i}") for i in range(len(current))]
        if any(p is None or p.ndim != c.ndim for p, c in zip(parent, current)):
            continue
        if all(p.shape == c.shape for p, c in zip(parent, current)):
            layer.set_weights(parent)
            copied += 1
            continue
        merged = []
        for p, c in zip(parent, current):
            out = c.copy()
            overlap = tuple(slice(0, min(a, b)) for a, b in zip(p.shape, c.shape))
            out[overlap] = p[overlap]
            merged.append(out)
        layer.set_weights(merged)
        partial += 1
    return {"copied": copied, "partial": partial}


def parent_weights(workdir: pathlib.Path | None, info: dict) -> pathlib.Path | None:
    """The saved weights of the parent trial ``info["parent"]`` names, beside ``workdir``
    (``search_dir/trials/<id>``), or None (no parent id, or it saved none)."""
    parent = info.get("parent")
    if workdir is None or isinstance(parent, bool) or not isinstance(parent, int):
        return None
    path = pathlib.Path(workdir).parent / f"{parent:05d}" / WEIGHTS_FILE
    return path if path.is_file() else None


__all__ = ["WEIGHTS_FILE", "inherit_weights", "parent_weights", "save_weights"]
