"""Loading a saved model without running code from the file.

Only the Keras v3 ``.keras`` format (a zip archive with ``config.json``) is read, and with
``safe_mode=True``. Two ways a model file can run Python on load are refused up front:

* **legacy HDF5** (also when named ``model.keras``): tf_keras's legacy loader rebuilds
  ``Lambda`` layers from their marshalled bytecode, and safe mode does not cover that path;
* **Lambda layers** in a v3 archive: their function is Python code too.

The file's bytes and its ``config.json`` are inspected before TensorFlow sees the file, so
a refused model never executes anything.

Example:
    >>> load_model_file("runs/x/best/model.keras")  # doctest: +SKIP
    <tf_keras.src.engine.functional.Functional object at ...>
"""

from __future__ import annotations

import json
import os
import pathlib
import zipfile
from typing import TYPE_CHECKING, Any, Iterator

from keras_cnas.errors import KerasCnasError

if TYPE_CHECKING:
    from keras_cnas._keras import keras

__all__ = ["MAX_CONFIG_BYTES", "ModelFileError", "check_model_file", "load_model_file"]

#: ``config.json`` larger than this is refused (a network we build has a few hundred kB).
MAX_CONFIG_BYTES = 64 * 2**20
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Layers whose config carries Python code.
_CODE_LAYERS = ("Lambda",)
# Class names of tfmot's wrappers, which loading needs tfmot's custom-object scopes for.
_TFMOT_CLASSES = ("PruneLowMagnitude", "QuantizeWrapper", "QuantizeLayer")


class ModelFileError(KerasCnasError, ValueError):
    """A model file is not a Keras v3 archive, or would run code when loaded."""


def check_model_file(file: str | os.PathLike[str]) -> dict[str, Any]:
    """The model's ``config.json``, after refusing anything that could run code.

    Raises:
        ModelFileError: legacy HDF5, not a Keras v3 archive, a damaged or oversized
            config, or a ``Lambda`` layer.
    """
    file = pathlib.Path(file)
    with open(file, "rb") as f:
        head = f.read(8)
    if head == _HDF5_SIGNATURE:
        raise ModelFileError(
            f"model: {file} is a legacy HDF5 file; loading it could run code stored in it "
            "(tf_keras rebuilds Lambda layers from bytecode, which safe mode does not cover), "
            "so it is refused. Re-save the model in the Keras v3 format where it was built: "
            "model.save('model.keras')")
    if not zipfile.is_zipfile(file):
        raise ModelFileError(f"model: {file} is not a Keras v3 .keras archive (a zip holding "
                             "config.json); save the model with model.save('model.keras')")
    try:
        with zipfile.ZipFile(file) as archive:
            info = archive.getinfo("config.json")
            if info.file_size > MAX_CONFIG_BYTES:
                raise ModelFileError(f"model: {file}: config.json is {info.file_size:,} bytes "
                                     f"(limit {MAX_CONFIG_BYTES:,}); not a model keras_cnas wrote")
            config = json.loads(archive.read(info).decode("utf-8"))
    except KeyError:
        raise ModelFileError(f"model: {file} has no config.json; it is not a Keras v3 archive: "
                             "save the model with model.save('model.keras')") from None
    except (zipfile.BadZipFile, ValueError, RecursionError, OSError) as e:
        raise ModelFileError(f"model: {file} is damaged ({type(e).__name__}: {e}); re-save or "
                             "re-copy it") from None
    for layer in _layers(config):
        if layer.get("class_name") in _CODE_LAYERS:
            name = (layer.get("config") or {}).get("name", "?")
            raise ModelFileError(
                f"model: {file} holds a {layer['class_name']} layer ({name!r}); its Python code "
                "would run when the file is loaded, so it is refused. Replace it by built-in "
                "layers (or a registered custom layer class) and save again")
    return config


def load_model_file(path: str | os.PathLike[str]) -> "keras.Model":
    """The ``tf_keras`` model in a ``.keras`` file, loaded in safe mode after
    :func:`check_model_file`. Models saved with tfmot pruning or QAT wrappers load too.

    Raises:
        FileNotFoundError: no such file.
        ModelFileError: see :func:`check_model_file`.
    """
    file = pathlib.Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"model: no file {file}; pass a saved .keras file")
    text = json.dumps(check_model_file(file))
    from keras_cnas._keras import keras

    if not any(name in text for name in _TFMOT_CLASSES):
        return keras.models.load_model(file, compile=False, safe_mode=True)
    from keras_cnas._keras import tfmot  # the model holds tfmot wrappers

    with tfmot().sparsity.keras.prune_scope(), tfmot().quantization.keras.quantize_scope():
        return keras.models.load_model(file, compile=False, safe_mode=True)


def _layers(node: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    """Every dict with a ``class_name`` in a Keras config (nested models and wrappers too)."""
    if depth > 200:
        raise ModelFileError("model: config.json nests deeper than 200 levels; not a model "
                             "keras_cnas wrote")
    if isinstance(node, dict):
        if "class_name" in node:
            yield node
        for value in node.values():
            yield from _layers(value, depth + 1)
    elif isinstance(node, list):
        for value in node:
            yield from _layers(value, depth + 1)
