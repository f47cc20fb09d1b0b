"""``from_tf_dataset``: a ``tf.data.Dataset`` of ``(image, label)`` read into a
:class:`~keras_cnas.data.Dataset`, and ``as_dataset``, which turns whatever a user passes
as ``search(..., data=...)`` into one.

A search trains hundreds of models on the same data, with seeded shuffles and
augmentations, in worker processes that rebuild it from an ``.npz`` file: so a pipeline is
read once, into memory. It may be batched or not; labels may be class ids or one-hot;
images may be uint8, floats in [0, 1], or floats in [0, 255] (what
``keras.utils.image_dataset_from_directory`` yields), which are divided by 255.

Example:
    >>> import numpy as np
    >>> from keras_cnas._keras import tf
    >>> images, labels = np.zeros((100, 8, 8, 1), np.float32), np.arange(100) % 10
    >>> ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(32)
    >>> data = from_tf_dataset(ds, validation_split=0.2)
    >>> len(data.y_train), len(data.y_val)
    (80, 20)
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import numpy as np

from keras_cnas.data.augment import Augmentation
from keras_cnas.data.dataset import Dataset, from_arrays
from keras_cnas.errors import DataError

__all__ = ["as_dataset", "from_tf_dataset"]

#: A pipeline longer than this is refused (``.take(n)`` it): it is read into memory.
MAX_EXAMPLES = 2_000_000


def from_tf_dataset(train: Any, validation: Any = None, test: Any = None, *,
                    validation_split: float = 0.1, seed: int = 0, name: str = "tf_data",
                    class_names: Sequence[str] | None = None,
                    augmentation: Augmentation | None = None) -> Dataset:
    """Reads ``tf.data`` pipelines of ``(image, label)`` into a :class:`Dataset`.

    Args:
        train: the training pipeline.
        validation: a validation pipeline; without it ``validation_split`` of ``train``
            is held out (stratified, drawn with ``seed``).
        test: an optional test pipeline (the final model's test accuracy).
        validation_split, seed, name, class_names, augmentation: as in
            :func:`~keras_cnas.data.from_arrays` (augmentation default: pad-and-crop).

    Raises:
        DataError: an element is not ``(image, label)``, the pipeline is infinite, or the
            splits disagree in image shape.
    """
    x_train, y_train = _read(train, "train")
    x_test, y_test = _read(test, "test") if test is not None else (None, None)
    if validation is None:
        return from_arrays(x_train, y_train, x_test, y_test, validation_split=validation_split,
                           seed=seed, name=name, class_names=class_names,
                           augmentation=augmentation)
    x_val, y_val = _read(validation, "validation")
    largest = max(int(y.max()) for y in (y_train, y_val, y_test) if y is not None and y.size)
    names = list(class_names) if class_names is not None else [str(i) for i in range(largest + 1)]
    data = from_arrays(x_train, y_train, x_test, y_test, validation_split=0.0, seed=seed,
                       name=name, class_names=names, augmentation=augmentation)
    val = from_arrays(x_val, y_val, validation_split=0.0, class_names=names)
    if val.input_shape != data.input_shape:
        raise DataError(f"validation: images are {val.input_shape}, train images "
                        f"{data.input_shape}; both need one shape")
    return dataclasses.replace(data, x_val=val.x_train, y_val=val.y_train)


def _read(ds: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The pipeline's images (uint8, or float32 in [0, 1]) and integer labels."""
    from keras_cnas._keras import tf  # lazy

    if not isinstance(ds, tf.data.Dataset):
        raise DataError(f"{split}: expected a tf.data.Dataset, got {type(ds).__name__}")
    spec = ds.element_spec
    if not (isinstance(spec, tuple) and len(spec) >= 2):
        raise DataError(f"{split}: elements must be (image, label) pairs; got {spec}")
    if ds.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise DataError(f"{split}: the pipeline is infinite (.repeat()); pass it without "
                        "repeat, or .take(n) of it: it is read once into memory")
    image_rank = spec[0].shape.rank
    # (B, H, W, C), or (B, H, W) grayscale with an unknown batch size: already batched.
    batched = image_rank == 4 or (image_rank == 3 and spec[0].shape[0] is None)
    if not batched:
        ds = ds.batch(1024)
    xs, ys = [], []
    count = 0
    for element in ds.as_numpy_iterator():
        x, y = element[0], element[1]
        xs.append(x)
        ys.append(y)
        count += len(x)
        if count > MAX_EXAMPLES:
            raise DataError(f"{split}: more than {MAX_EXAMPLES:,} examples; .take(n) a subset")
    if not xs:
        raise DataError(f"{split}: the pipeline yielded no examples")
    x, y = np.concatenate(xs), np.concatenate(ys)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot (label_mode="categorical")
        y = y.argmax(axis=1)
    y = y.reshape(len(y), -1)[:, 0] if y.ndim == 2 else y
    if np.issubdtype(x.dtype, np.floating) and x.size and x.max() > 1.0:
        if x.min() < 0 or x.max() > 255:
            raise DataError(f"{split}: float images must lie in [0, 1] or [0, 255]; got "
                            f"[{x.min():.3g}, {x.max():.3g}] (normalise them to [0, 1])")
        x = (x / 255.0).astype(np.float32)  # image_dataset_from_directory's 0..255 floats
    return x, y


def as_dataset(data: Any) -> Dataset:
    """A :class:`Dataset` from what ``search(..., data=...)`` accepts.

    * a :class:`Dataset`: itself;
    * ``(x, y)`` or ``(x_train, y_train, x_test, y_test)`` NumPy arrays;
    * a ``tf.data.Dataset`` (10 % held out for validation), or ``(train_ds, validation_ds)``
      / ``(train_ds, validation_ds, test_ds)`` pipelines;
    * the path of a directory of images per class (:func:`~keras_cnas.data.from_directory`).

    Raises:
        DataError: anything else (the message lists these forms).
    """
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (str, os.PathLike)):
        from keras_cnas.data.directory import from_directory

        return from_directory(data)
    parts = tuple(data) if isinstance(data, (tuple, list)) else (data,)
    if parts and all(isinstance(p, np.ndarray) for p in parts) and len(parts) in (2, 4):
        return from_arrays(*parts)
    if parts and _is_tf_dataset(parts[0]) and len(parts) <= 3:
        return from_tf_dataset(*parts)
    raise DataError(
        f"data: expected a keras_cnas.data.Dataset, (x, y) or (x, y, x_test, y_test) NumPy "
        f"arrays, a tf.data.Dataset (or (train, validation[, test]) of them) or an image "
        f"folder's path; got {type(data).__name__}")


def _is_tf_dataset(obj: Any) -> bool:
    return type(obj).__module__.startswith("tensorflow") and hasattr(obj, "element_spec")
