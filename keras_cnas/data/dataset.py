"""The :class:`Dataset` value, :func:`from_arrays`, :func:`load` and the dataset registry."""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

import numpy as np

from keras_cnas._checks import is_int, is_real
from keras_cnas.data.augment import Augmentation, make_tf_dataset
from keras_cnas.errors import DataError
from keras_cnas.registry import Registry

if TYPE_CHECKING:
    from keras_cnas._keras import tf

__all__ = [
    "DATASETS", "Dataset", "DatasetLoader", "RawData", "SPLITS", "from_arrays", "load",
    "per_class_cap", "register", "stratified_sample",
]

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test", "train+validation")

# The seed of the fixed subset kept by ``max_train_examples``: independent of ``seed`` so that
# runs with different seeds train on the same examples and stay comparable.
SUBSET_SEED = 20_231


@dataclasses.dataclass(frozen=True)
class RawData:
    """What a registered dataset loader returns: train and test arrays before splitting.

    Images may be uint8 (scaled to [0, 1] by :func:`load`) or float in [0, 1]; ``x_test`` and
    ``y_test`` may be ``None`` when the source has no test split.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    class_names: Sequence[str] | None = None
    augmentation: Augmentation | None = None


class DatasetLoader(Protocol):
    """The signature of a function registered in :data:`DATASETS`.

    ``max_per_class`` and ``max_train_examples`` are hints a loader may use to skip work
    (e.g. not decoding images it would drop); :func:`load` enforces both anyway, with
    :func:`per_class_cap` and :func:`stratified_sample`, so a loader that uses the same helpers
    gets exactly the same examples.
    """

    def __call__(self, data_dir: pathlib.Path | None, *, max_per_class: int | None,
                 max_train_examples: int | None) -> RawData: ...


DATASETS: Registry[DatasetLoader] = Registry("dataset")


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Train, validation and test splits as NumPy arrays, plus how to augment them.

    Images are float32 NHWC in [0, 1]; labels are 1-D int32 class ids in ``[0, num_classes)``.
    Build one with :func:`load` or :func:`from_arrays` rather than directly.

    Attributes:
        name: The dataset's name, e.g. ``"mnist"``.
        x_train, y_train: The training split (validation examples removed).
        x_val, y_val: The validation split, held out of the original training split.
        x_test, y_test: The test split (may hold zero examples).
        class_names: One name per class id.
        num_classes: ``len(class_names)``.
        input_shape: ``(height, width, channels)``.
        augmentation: The training augmentation suited to this dataset.

    Example:
        >>> data = load("digits")
        >>> data.input_shape, data.num_classes
        ((8, 8, 1), 10)
        >>> images, labels = next(iter(data.tf_dataset("train", batch_size=32)))
        >>> tuple(images.shape), labels.dtype.name
        ((32, 8, 8, 1), 'int32')
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    num_classes: int
    input_shape: tuple[int, int, int]
    augmentation: Augmentation = dataclasses.field(default_factory=Augmentation)

    def __post_init__(self) -> None:
        # Normalise containers so that the value is hashable-ish and comparable in tests.
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        if self.num_classes != len(self.class_names):
            raise DataError(
                f"num_classes={self.num_classes} but {len(self.class_names)} class_names were "
                f"given: {list(self.class_names)}")
        if len(self.input_shape) != 3:
            raise DataError(f"input_shape must be (height, width, channels); got "
                            f"{self.input_shape}")
        for split, x, y in self._splits():
            if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
                raise DataError(f"{split} images and labels must be NumPy arrays; got "
                                f"{type(x).__name__} and {type(y).__name__}")
            if x.dtype != np.float32 or x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
                raise DataError(
                    f"{split} images must be float32 with shape (n, *{self.input_shape}); "
                    f"got {x.dtype} {x.shape}")
            if y.ndim != 1 or y.shape[0] != x.shape[0] or not np.issubdtype(y.dtype, np.integer):
                raise DataError(
                    f"{split} labels must be a 1-D integer array with one label per image "
                    f"({x.shape[0]}); got {y.dtype} {y.shape}")
            if y.size and (y.min() < 0 or y.max() >= self.num_classes):
                raise DataError(
                    f"{split} labels must lie in [0, {self.num_classes}); got "
                    f"[{y.min()}, {y.max()}]")
        if not isinstance(self.augmentation, Augmentation):
            raise DataError(f"augmentation must be an Augmentation; got {self.augmentation!r}")
        height, width, channels = self.input_shape
        if self.augmentation.color_jitter and channels != 3:
            raise DataError(
                f"Augmentation.color_jitter needs 3-channel images; {self.name!r} has "
                f"input_shape {self.input_shape}; use color_jitter=False")
        pad = self.augmentation.resolved_pad(height)
        if pad >= min(height, width):
            raise DataError(
                f"Augmentation.pad={pad} is not smaller than the image size {height}x{width}: "
                f"a crop could be all padding; use pad < {min(height, width)}")

    def _splits(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        return [("train", self.x_train, self.y_train), ("validation", self.x_val, self.y_val),
                ("test", self.x_test, self.y_test)]

    def __repr__(self) -> str:  # the default would print every pixel.
        return (f"Dataset(name={self.name!r}, train={len(self.y_train)}, "
                f"validation={len(self.y_val)}, test={len(self.y_test)}, "
                f"input_shape={self.input_shape}, num_classes={self.num_classes})")

    def arrays(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """The ``(images, labels)`` arrays of one split.

        Args:
            split: ``"train"``, ``"validation"``, ``"test"`` or ``"train+validation"`` (both
                concatenated, for retraining the final model).

        Example:
            >>> x, y = load("digits").arrays("test")
            >>> x.shape
            (359, 8, 8, 1)
        """
        if split == "train":
            return self.x_train, self.y_train
        if split == "validation":
            return self.x_val, self.y_val
        if split == "test":
            return self.x_test, self.y_test
        if split == "train+validation":
            return (np.concatenate([self.x_train, self.x_val]),
                    np.concatenate([self.y_train, self.y_val]))
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")

    def tf_dataset(self, split: str = "train", batch_size: int = 128, augment: bool | None = None,
                   shuffle: bool | None = None, seed: int = 0) -> "tf.data.Dataset":
        """A batched, prefetched ``tf.data.Dataset`` of ``(images, labels)`` for one split.

        Args:
            split: ``"train"``, ``"validation"``, ``"test"`` or ``"train+validation"``.
            batch_size: Examples per batch; the last batch may be smaller.
            augment: Apply :attr:`augmentation`; defaults to True for the training splits
                (``"train"``, ``"train+validation"``) and False otherwise.
            shuffle: Reshuffle every epoch; defaults like ``augment``.
            seed: Seeds the shuffle and the augmentation: the same seed gives the same batches
                in the same order, epoch after epoch.

        Returns:
            Elements ``(float32 [b, h, w, c] in [0, 1], int32 [b])``.

        Raises:
            DataError: The split holds no examples (e.g. ``validation_split=0``).

        Example:
            >>> data = load("digits")
            >>> ds = data.tf_dataset("validation", batch_size=64)
            >>> [tuple(x.shape) for x, _ in ds][:2]
            [(64, 8, 8, 1), (64, 8, 8, 1)]
        """
        x, y = self.arrays(split)
        if not is_int(batch_size, numpy=True) \
                or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
        if not is_int(seed, numpy=True) or seed < 0:
            raise ValueError(f"seed must be a non-negative int; got {seed!r}")
        if len(y) == 0:
            raise DataError(
                f"dataset {self.name!r} has no {split} examples; "
                + ("load it with validation_split > 0" if split == "validation"
                   else "pass x_test and y_test to from_arrays" if split == "test"
                   else "give it training examples"))
        training = split in ("train", "train+validation")
        augment = training if augment is None else augment
        shuffle = training if shuffle is None else shuffle
        return make_tf_dataset(x, y, batch_size=int(batch_size),
                               augmentation=self.augmentation if augment else None,
                               shuffle=bool(shuffle), seed=int(seed))

    def summary(self) -> str:
        """A few lines describing the splits, shapes and examples per class.

        Example:
            >>> print(load("digits").summary())  # doctest: +ELLIPSIS
            Dataset 'digits': 10 classes, input_shape (8, 8, 1), float32 in [0, 1]
            ...
        """
        lines = [f"Dataset {self.name!r}: {self.num_classes} classes, input_shape "
                 f"{self.input_shape}, float32 in [0, 1]"]
        for split, _, y in self._splits():
            counts = np.bincount(y, minlength=self.num_classes)
            lines.append(f"  {split:<10} {len(y):>7} examples; per class: "
                         + ", ".join(f"{c}={n}" for c, n in zip(self.class_names, counts)))
        aug = self.augmentation
        pad = aug.resolved_pad(self.input_shape[0])
        lines.append(f"  augmentation: flip={aug.flip}, pad={pad}, "
                     f"color_jitter={aug.color_jitter}")
        return "\n".join(lines)


def per_class_cap(y: np.ndarray, max_per_class: int) -> np.ndarray:
    """Indices keeping the first ``max_per_class`` examples of each class, in original order.

    "First" rather than random so that a loader can apply the same cap before decoding files.

    Example:
        >>> per_class_cap(np.array([0, 0, 1, 0, 1]), 1)
        array([0, 2])
    """
    y = np.asarray(y)
    keep = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        keep[np.flatnonzero(y == c)[:max_per_class]] = True
    return np.flatnonzero(keep)


def stratified_sample(y: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``count`` examples drawn at random with class proportions kept.

    Each class gets ``count * n_c / n`` examples, rounded by largest remainder so that the
    total is exactly ``count``.

    Args:
        y: 1-D labels.
        count: How many indices to draw, ``0 <= count <= len(y)``.
        rng: The randomness (passed in, never global).

    Example:
        >>> y = np.array([0] * 8 + [1] * 2)
        >>> idx = stratified_sample(y, 5, np.random.default_rng(0))
        >>> len(idx), int((y[idx] == 1).sum())
        (5, 1)
    """
    y = np.asarray(y)
    n = len(y)
    if not 0 <= count <= n:
        raise ValueError(f"count must be in [0, {n}]; got {count}")
    if count == n:
        return np.arange(n)
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * (count / n)
    take = np.floor(quota).astype(int)
    # Largest remainder; ties broken at random so no class is systematically favoured.
    remainder = quota - take
    order = np.lexsort((rng.random(len(classes)), -remainder))
    take[order[:count - take.sum()]] += 1
    chosen = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen)) if chosen else np.arange(0)


def _check_fraction(validation_split: float) -> float:
    if not is_real(validation_split, numpy=True) \
            or not 0.0 <= float(validation_split) < 1.0:
        raise DataError(
            f"validation_split must be a fraction in [0, 1); got {validation_split!r}")
    return float(validation_split)


def _check_seed(seed: int) -> None:
    if not is_int(seed, numpy=True) or seed < 0:
        raise DataError(f"seed must be a non-negative int; got {seed!r}")


def _check_positive(name: str, value: int | None) -> None:
    if value is not None and (not is_int(value, numpy=True)
                              or value < 1):
        raise DataError(f"{name} must be a positive int or None (no limit); got {value!r}")


def _as_images(x: Any, argument: str) -> np.ndarray:
    """Converts images to float32 NHWC in [0, 1], with an error naming the argument."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., np.newaxis]  # (N, H, W) grey images get a channel axis.
    if x.ndim != 4:
        raise DataError(
            f"{argument} must have shape (N, H, W) or (N, H, W, C); got shape {x.shape}")
    if x.shape[0] == 0 and argument == "x_train":
        raise DataError("x_train holds no images; pass at least one training example")
    if x.dtype == np.uint8:
        return (x / np.float32(255.0)).astype(np.float32, copy=False)
    if np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32, copy=False)
        if x.size and not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
            raise DataError(
                f"{argument}: float images must be finite and in [0, 1]; got values in "
                f"[{np.nanmin(x):g}, {np.nanmax(x):g}]; rescale them (e.g. x / 255.0) or pass "
                "uint8 images")
        return x
    raise DataError(
        f"{argument} must be uint8 (0..255, scaled to [0, 1]) or float in [0, 1]; got dtype "
        f"{x.dtype}; convert it, e.g. {argument}.astype('uint8') for 0..255 values")


def _as_labels(y: Any, argument: str, n_images: int, images_argument: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # Keras' CIFAR loader returns (N, 1) labels.
    if y.ndim != 1:
        raise DataError(
            f"{argument} must be 1-D integer class ids; got shape {y.shape}"
            + ("; for one-hot labels pass y.argmax(axis=1)" if y.ndim == 2 else ""))
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)  # 3.0 is a fine class id; 2.5 is not.
        else:
            raise DataError(f"{argument} must hold integer class ids; got dtype {y.dtype}")
    if len(y) != n_images:
        raise DataError(
            f"{argument} has {len(y)} labels but {images_argument} has {n_images} images; "
            "they must have the same length")
    if y.size and y.min() < 0:
        raise DataError(f"{argument} must be non-negative class ids; got minimum {y.min()}")
    return y.astype(np.int32)


def from_arrays(x_train: Any, y_train: Any, x_test: Any = None, y_test: Any = None, *,
                validation_split: float = 0.1, seed: int = 0, name: str = "arrays",
                class_names: Sequence[str] | None = None,
                augmentation: Augmentation | None = None) -> Dataset:
    """Builds a :class:`Dataset` from in-memory arrays.

    Args:
        x_train: Training images, ``(N, H, W)`` or ``(N, H, W, C)``; uint8 is scaled to
            [0, 1] float32, float must already be in [0, 1].
        y_train: ``N`` integer class ids (``(N, 1)`` is accepted too).
        x_test, y_test: Optional test split of the same image shape; without them the
            dataset's test split is empty.
        validation_split: Fraction of the training examples held out for validation,
            stratified by class and drawn with ``seed``.
        seed: Seeds the validation split.
        name: The dataset's name.
        class_names: One name per class; defaults to ``"0"``, ``"1"``, ... up to the largest
            label.
        augmentation: The training augmentation; defaults to pad-and-crop without flip (safe
            for any images, e.g. digits, whose meaning a mirror would change).

    Returns:
        The dataset.

    Raises:
        DataError: Shapes, lengths, dtypes or label ranges are inconsistent.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> data = from_arrays(rng.integers(0, 256, (100, 16, 16, 3), dtype=np.uint8),
        ...                    rng.integers(0, 5, 100), validation_split=0.2)
        >>> len(data.y_train), len(data.y_val), data.num_classes
        (80, 20, 5)
    """
    fraction = _check_fraction(validation_split)
    _check_seed(seed)
    xtr = _as_images(x_train, "x_train")
    ytr = _as_labels(y_train, "y_train", len(xtr), "x_train")
    if (x_test is None) != (y_test is None):
        raise DataError("pass both x_test and y_test, or neither; got only "
                        + ("x_test" if y_test is None else "y_test"))
    if x_test is None:
        xte = np.zeros((0,) + xtr.shape[1:], np.float32)
        yte = np.zeros((0,), np.int32)
    else:
        xte = _as_images(x_test, "x_test")
        if xte.shape[1:] != xtr.shape[1:]:
            raise DataError(
                f"x_test images have shape {xte.shape[1:]} but x_train images have "
                f"{xtr.shape[1:]}; both splits need the same image shape")
        yte = _as_labels(y_test, "y_test", len(xte), "x_test")

    largest = max(int(ytr.max()), int(yte.max()) if yte.size else -1)
    if class_names is None:
        class_names = [str(i) for i in range(largest + 1)]
    else:
        class_names = [str(c) for c in class_names]
        if len(set(class_names)) != len(class_names):
            raise DataError(f"class_names must be distinct; got {class_names}")
        if largest >= len(class_names):
            raise DataError(
                f"labels go up to {largest} but only {len(class_names)} class_names were given "
                f"({class_names}); labels must lie in [0, {len(class_names)})")

    n_val = int(round(len(ytr) * fraction))
    if fraction > 0:
        n_val = max(n_val, 1)  # a requested validation split is never silently empty.
    if n_val >= len(ytr):
        raise DataError(
            f"validation_split={fraction} of {len(ytr)} training examples leaves none to train "
            "on; use a smaller validation_split or more examples")
    val_idx = stratified_sample(ytr, n_val, np.random.default_rng(seed))
    train_mask = np.ones(len(ytr), dtype=bool)
    train_mask[val_idx] = False

    if augmentation is None:
        augmentation = Augmentation(flip=False)
    return Dataset(
        name=name, x_train=xtr[train_mask], y_train=ytr[train_mask], x_val=xtr[val_idx],
        y_val=ytr[val_idx], x_test=xte, y_test=yte, class_names=tuple(class_names),
        num_classes=len(class_names), input_shape=tuple(xtr.shape[1:]),
        augmentation=augmentation)


def load(name: str, data_dir: str | os.PathLike[str] | None = None, validation_split: float = 0.1,
         seed: int = 0, max_train_examples: int | None = None, *,
         max_per_class: int | None = None) -> Dataset:
    """Loads a registered dataset from local files; never downloads anything.

    Args:
        name: A name registered in :data:`DATASETS`: ``"digits"`` (bundled with
            scikit-learn, no files needed), ``"mnist"`` (the four IDX files) or ``"cifar10"``
            (python batches, a ``train/<class>/`` + ``test/<class>/`` image tree, or a
            ``.tar.gz`` of that tree).
        data_dir: The directory holding the dataset's files (unused by ``"digits"``).
        validation_split: Fraction of the training split held out for validation, stratified
            by class and drawn with ``seed``.
        seed: Seeds the validation split only: test splits and ``max_train_examples`` subsets
            are fixed, so runs with different seeds stay comparable.
        max_train_examples: Keep at most this many training examples (before the validation
            split), a fixed stratified subset; for quick experiments.
        max_per_class: Keep only the first this-many examples of each class, in both train and
            test; keeps tests fast (decoding CIFAR-10's 60,000 JPEGs takes a while).

    Returns:
        The dataset, with the augmentation suited to it.

    Raises:
        KeyError: ``name`` is not registered; the message lists the known names.
        DataError: ``data_dir`` is missing or its files are missing or malformed.

    Example:
        >>> data = load("digits", seed=1)
        >>> len(data.y_train), len(data.y_val), len(data.y_test)
        (1294, 144, 359)
    """
    loader = DATASETS.get(name)
    # Check every argument before reading files: decoding CIFAR-10 can take seconds.
    _check_fraction(validation_split)
    _check_seed(seed)
    _check_positive("max_train_examples", max_train_examples)
    _check_positive("max_per_class", max_per_class)
    directory = None if data_dir is None else pathlib.Path(os.fspath(data_dir)).expanduser()
    raw = loader(directory, max_per_class=max_per_class, max_train_examples=max_train_examples)
    x_train, y_train, x_test, y_test = raw.x_train, raw.y_train, raw.x_test, raw.y_test
    if max_per_class is not None:
        keep = per_class_cap(y_train, max_per_class)
        x_train, y_train = x_train[keep], y_train[keep]
        if y_test is not None:
            keep = per_class_cap(y_test, max_per_class)
            x_test, y_test = x_test[keep], y_test[keep]
    if max_train_examples is not None and len(y_train) > max_train_examples:
        keep = stratified_sample(np.asarray(y_train), max_train_examples,
                                 np.random.default_rng(SUBSET_SEED))
        x_train, y_train = x_train[keep], y_train[keep]
    data = from_arrays(x_train, y_train, x_test, y_test, validation_split=validation_split,
                       seed=seed, name=name, class_names=raw.class_names,
                       augmentation=raw.augmentation)
    logger.info("loaded %r", data)
    return data


def register(name: str) -> Callable[[DatasetLoader], DatasetLoader]:
    """Decorator registering a dataset loader under ``name`` (see :class:`DatasetLoader`).

    Example:
        >>> @register("tiny")  # doctest: +SKIP
        ... def load_tiny(data_dir, *, max_per_class, max_train_examples):
        ...     x = np.zeros((4, 8, 8, 1), np.float32)
        ...     return RawData(x, np.array([0, 1, 0, 1]), None, None)
        >>> load("tiny", validation_split=0.5).num_classes  # doctest: +SKIP
        2
    """
    return DATASETS.register(name)
