"""``from_directory``: a folder of images, one sub-folder per class (Keras'
``image_dataset_from_directory`` layout), as a :class:`~keras_cnas.data.Dataset`.

Layouts:

* ``root/<class>/*.png|jpg|jpeg|bmp|gif``: everything is training data (validation is split
  off, stratified); no test split;
* ``root/train/<class>/...`` and ``root/test/<class>/...`` (and optionally
  ``root/validation/<class>/...``, used instead of a split).

Every image is decoded and resized to ``image_size`` once, into memory (as a ``uint8``
array, scaled to [0, 1] floats like every dataset here). TensorFlow is imported when
decoding.

Example:
    >>> data = from_directory("photos/", image_size=(32, 32))       # doctest: +SKIP
    >>> data.input_shape, data.class_names                          # doctest: +SKIP
    ((32, 32, 3), ('cat', 'dog'))
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Sequence

import numpy as np

from keras_cnas.data.augment import Augmentation
from keras_cnas.data.dataset import Dataset, from_arrays, per_class_cap
from keras_cnas.errors import DataError

__all__ = ["AUGMENTATIONS", "IMAGE_EXTENSIONS", "augmentation_named", "from_directory"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
COLOR_MODES = {"rgb": 3, "grayscale": 1}
#: ``--augment`` values: what each means as an :class:`Augmentation`.
AUGMENTATIONS = {"none": Augmentation.none(), "flip": Augmentation(flip=True, pad=0),
                 "crop": Augmentation(flip=False), "flip+crop": Augmentation(flip=True)}


def augmentation_named(name: str) -> Augmentation:
    """``"none"``, ``"flip"``, ``"crop"`` (pad and random crop) or ``"flip+crop"``.

    Example:
        >>> augmentation_named("flip")
        Augmentation(flip=True, pad=0, color_jitter=False)
    """
    if name not in AUGMENTATIONS:
        raise ValueError(f"augment: expected one of {', '.join(AUGMENTATIONS)}, got {name!r}")
    return AUGMENTATIONS[name]


def from_directory(path: str | os.PathLike[str], image_size: Sequence[int] | None = None, *,
                   color_mode: str = "rgb", validation_split: float = 0.1, seed: int = 0,
                   augmentation: Augmentation | str = "crop",
                   max_per_class: int | None = None) -> Dataset:
    """Loads a directory of images per class (see the module docstring).

    Args:
        path: the root directory.
        image_size: ``(height, width)`` every image is resized to; None keeps the size of the
            first image (then all must share it).
        color_mode: ``"rgb"`` (3 channels) or ``"grayscale"`` (1).
        validation_split: fraction of the training images held out, stratified by class,
            unless there is a ``validation/`` folder.
        seed: seeds the validation split.
        augmentation: an :class:`Augmentation` or ``"none"``, ``"flip"``, ``"crop"``,
            ``"flip+crop"``; default ``"crop"`` (a flip changes the meaning of digits or text).
        max_per_class: keep at most this many images of each class in each split.

    Raises:
        DataError: no such directory, no class folders, no images, an undecodable file.
    """
    root = pathlib.Path(os.fspath(path)).expanduser()
    if not root.is_dir():
        raise DataError(f"data_dir: {root} is not a directory; pass a folder holding one "
                        "sub-folder of images per class")
    if color_mode not in COLOR_MODES:
        raise ValueError(f"color_mode: expected 'rgb' or 'grayscale', got {color_mode!r}")
    if image_size is not None:
        if len(image_size) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0
                                           for v in image_size):
            raise ValueError(f"image_size: expected (height, width) in pixels, got {image_size!r}")
    if isinstance(augmentation, str):
        augmentation = augmentation_named(augmentation)
    split_dirs = {s: root / s for s in ("train", "validation", "test") if (root / s).is_dir()}
    if "train" not in split_dirs:
        split_dirs = {"train": root}
    files = {split: _class_files(d) for split, d in split_dirs.items()}
    class_names = sorted(set().union(*(f.keys() for f in files.values())))
    if not files["train"]:
        raise DataError(f"data_dir: {split_dirs['train']} has no class sub-folders holding "
                        f"images ({', '.join(IMAGE_EXTENSIONS)}); expected "
                        f"{split_dirs['train']}/<class>/<image>")
    size = tuple(int(v) for v in image_size) if image_size is not None else None
    channels = COLOR_MODES[color_mode]
    arrays = {}
    for split, by_class in files.items():
        paths, labels = [], []
        for label, name in enumerate(class_names):
            for p in by_class.get(name, []):
                paths.append(p)
                labels.append(label)
        y = np.array(labels, np.int32)
        if max_per_class is not None:
            keep = per_class_cap(y, max_per_class)
            paths, y = [paths[i] for i in keep], y[keep]
        x, size = _decode(paths, size, channels)
        arrays[split] = x, y
    x_test, y_test = arrays.get("test", (None, None))
    data = from_arrays(*arrays["train"], x_test, y_test,
                       validation_split=0.0 if "validation" in arrays else validation_split,
                       seed=seed, name=root.name or "folder", class_names=class_names,
                       augmentation=augmentation)
    if "validation" in arrays:
        x_val, y_val = arrays["validation"]
        data = dataclasses.replace(data, x_val=x_val.astype(np.float32) / 255.0, y_val=y_val)
    return data


def _class_files(directory: pathlib.Path) -> dict[str, list[pathlib.Path]]:
    out = {}
    for class_dir in sorted(p for p in directory.iterdir() if p.is_dir()
                            and not p.name.startswith(".")):
        images = sorted(p for p in class_dir.rglob("*") if p.is_file()
                        and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
        if images:
            out[class_dir.name] = images
    return out


def _decode(paths: list[pathlib.Path], size: tuple[int, ...] | None,
            channels: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """uint8 ``(n, h, w, channels)``, each image resized to ``size`` (the first one's if None)."""
    from keras_cnas._keras import tf  # lazy: decoding needs TensorFlow

    images = []
    for p in paths:
        try:
            image = tf.io.decode_image(p.read_bytes(), channels=channels, expand_animations=False)
        except (tf.errors.InvalidArgumentError, OSError) as e:
            raise DataError(f"{p}: cannot decode it as an image ({str(e).strip()[:200]})") from None
        if size is None:
            size = tuple(int(d) for d in image.shape[:2])
        if tuple(image.shape[:2]) != size:
            image = tf.cast(tf.round(tf.clip_by_value(
                tf.image.resize(image, size, antialias=True), 0, 255)), tf.uint8)
        images.append(image.numpy())
    if not images:
        assert size is not None
        return np.zeros((0, *size, channels), np.uint8), size
    return np.stack(images), size  # type: ignore[return-value]
