"""CIFAR-10 from the official python batches, a class-folder image tree, or a tarball of either.

Accepted ``data_dir`` layouts (nothing is ever downloaded):

* the official python batches: ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and
  ``batches.meta`` (the directory itself or a parent holding ``cifar-10-batches-py/``);
* a class-folder tree ``train/<class>/*.jpg|png`` and ``test/<class>/*.jpg|png`` (the directory
  itself or a parent holding exactly one such tree);
* a ``.tar.gz`` (or ``.tgz`` / ``.tar``) holding either layout, read in place with
  :mod:`tarfile` without extracting to disk: ``data_dir`` may be the tarball itself or a
  directory holding ``CIFAR-10-images.tar.gz``, ``cifar-10-python.tar.gz`` or exactly one tarball.

The official batches are pickles; that *is* the published format, so we read them with
:mod:`pickle`, but through an unpickler that only resolves the few globals a batch needs
(NumPy array reconstruction), so a hostile file cannot run code.
"""

from __future__ import annotations

import collections
import io
import logging
import pathlib
import pickle
import tarfile
from typing import Any, Callable

import numpy as np

from keras_cnas.data.augment import Augmentation
from keras_cnas.data.dataset import SUBSET_SEED, RawData, per_class_cap, register, stratified_sample
from keras_cnas.data.limits import MAX_FILE_BYTES, MAX_IMAGE_BYTES, check_size
from keras_cnas.errors import DataError

__all__ = ["BATCH_FILES", "IMAGE_EXTENSIONS", "TARBALL_NAMES", "load_cifar10_raw"]

logger = logging.getLogger(__name__)

BATCH_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
BATCHES_SUBDIR = "cifar-10-batches-py"
TARBALL_NAMES = ("CIFAR-10-images.tar.gz", "cifar-10-python.tar.gz")
TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
SPLIT_DIRS = ("train", "test")

# CIFAR-10: flips keep the meaning of every class; pad 4 then crop 32 is the standard recipe.
AUGMENTATION = Augmentation(flip=True, pad=4, color_jitter=False)

_LAYOUTS = (
    f"the python batches ({', '.join(BATCH_FILES)}), "
    "a class-folder tree (train/<class>/*.jpg|png and test/<class>/*.jpg|png), "
    f"or a tarball of either (e.g. {TARBALL_NAMES[0]})")


# --------------------------------------------------------------------------------------------
# Locating the source.


def _is_tarball(path: pathlib.Path) -> bool:
    return path.is_file() and path.name.lower().endswith(TARBALL_SUFFIXES)


def _has_tree(path: pathlib.Path) -> bool:
    return (path / "train").is_dir() or (path / "test").is_dir()


def _locate(data_dir: pathlib.Path) -> tuple[str, pathlib.Path]:
    """Returns ``(kind, path)`` with kind ``"batches"``, ``"tree"`` or ``"tarball"``."""
    if _is_tarball(data_dir):
        return "tarball", data_dir
    if not data_dir.is_dir():
        raise DataError(
            f"data_dir {data_dir} does not exist or is not a directory; it should hold "
            f"{_LAYOUTS}")
    for candidate in (data_dir, data_dir / BATCHES_SUBDIR):
        if any((candidate / name).is_file() for name in BATCH_FILES):
            return "batches", candidate
    if _has_tree(data_dir):
        return "tree", data_dir
    trees = [d for d in sorted(data_dir.iterdir()) if d.is_dir() and _has_tree(d)]
    if len(trees) == 1:  # e.g. a freshly extracted CIFAR-10-images/.
        return "tree", trees[0]
    for name in TARBALL_NAMES:
        if (data_dir / name).is_file():
            return "tarball", data_dir / name
    tarballs = [p for p in sorted(data_dir.iterdir()) if _is_tarball(p)]
    if len(tarballs) == 1:
        return "tarball", tarballs[0]
    found = sorted(p.name for p in data_dir.iterdir())
    shown = ", ".join(found[:10]) + (", ..." if len(found) > 10 else "") or "nothing"
    hint = (f"; it holds several tarballs: pass data_dir=<one of {[p.name for p in tarballs]}>"
            if tarballs else "")
    raise DataError(
        f"data_dir {data_dir} holds no CIFAR-10 data (found: {shown}){hint}; expected "
        f"{_LAYOUTS}")


# --------------------------------------------------------------------------------------------
# The official python batches.


class _BatchUnpickler(pickle.Unpickler):
    """Resolves only what a CIFAR batch needs, so unpickling cannot run arbitrary code."""

    ALLOWED = frozenset({
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        # Python 3 writes bytes at pickle protocols < 3 as _codecs.encode(str, "latin1").
        ("_codecs", "encode"),
    })

    def __init__(self, file: io.BytesIO, source: str):
        super().__init__(file, encoding="bytes")  # the batches were written by Python 2.
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise DataError(
                f"{self.source}: refers to {module}.{name}, expected only NumPy arrays, lists "
                "and dicts; it is not a CIFAR-10 python batch")
        return super().find_class(module, name)


def _unpickle(data: bytes, source: str) -> dict:
    try:
        obj = _BatchUnpickler(io.BytesIO(data), source).load()
    except DataError:
        raise
    except Exception as e:  # pickle raises many types for a damaged file.
        raise DataError(f"{source}: cannot unpickle it ({type(e).__name__}: {e}); expected a "
                        "CIFAR-10 python batch") from e
    if not isinstance(obj, dict):
        raise DataError(f"{source}: found a {type(obj).__name__}, expected a dict")
    return obj


def _read_batch(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(data, source)
    if b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{source}: found keys {sorted(batch)}, expected b'data' and b'labels'")
    pixels = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"{source}: found data of {pixels.dtype} {pixels.shape}, expected uint8 (N, 3072)")
    if labels.shape != (len(pixels),):
        raise DataError(
            f"{source}: found {labels.size} labels for {len(pixels)} images, expected one each")
    # Each row holds the red, green then blue 32x32 planes: channel-first, to NHWC.
    return pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int32)


def _read_batches(read: Callable[[str], bytes | None], where: str) -> RawData:
    blobs = {name: read(name) for name in BATCH_FILES}
    missing = [name for name, blob in blobs.items() if blob is None]
    if missing:
        raise DataError(f"{where} lacks {', '.join(missing)}; expected all of "
                        f"{', '.join(BATCH_FILES)}")
    train = [_read_batch(blobs[name], f"{where}/{name}") for name in BATCH_FILES[:5]]
    x_test, y_test = _read_batch(blobs["test_batch"], f"{where}/test_batch")
    meta = _unpickle(blobs["batches.meta"], f"{where}/batches.meta")
    if b"label_names" not in meta:
        raise DataError(f"{where}/batches.meta: found keys {sorted(meta)}, expected "
                        "b'label_names'")
    class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[b"label_names"]]
    return RawData(x_train=np.concatenate([x for x, _ in train]),
                   y_train=np.concatenate([y for _, y in train]),
                   x_test=x_test, y_test=y_test, class_names=class_names,
                   augmentation=AUGMENTATION)


# --------------------------------------------------------------------------------------------
# Class-folder trees, on disk or inside a tarball.


def _tree_key(parts: tuple[str, ...]) -> tuple[str, str, str] | None:
    """``(split, class, file)`` for ``[prefix/]train|test/<class>/<file>`` image paths."""
    if len(parts) < 3 or parts[-3] not in SPLIT_DIRS:
        return None
    name = parts[-1]
    # Skip macOS metadata ("._x.jpg", __MACOSX/) that tarballs made on a Mac carry along.
    if name.startswith(".") or "__MACOSX" in parts or not name.lower().endswith(IMAGE_EXTENSIONS):
        return None
    return parts[-3], parts[-2], name


def _select(names: dict[tuple[str, str], list[str]], where: str, max_per_class: int | None,
            max_train_examples: int | None) -> tuple[list[str], dict[str, list[tuple[int, str]]]]:
    """Picks the files to decode: exactly those :func:`~keras_cnas.data.load` would keep."""
    class_names = sorted({c for (split, c) in names if split == "train"})
    if not class_names:
        raise DataError(f"{where} has no images under train/<class>/; expected {_LAYOUTS}")
    test_classes = sorted({c for (split, c) in names if split == "test"})
    if not test_classes:
        raise DataError(f"{where} has no images under test/<class>/; expected {_LAYOUTS}")
    unknown = sorted(set(test_classes) - set(class_names))
    if unknown:
        raise DataError(f"{where}: test classes {unknown} have no training images; expected the "
                        f"test classes to be among the train classes {class_names}")
    chosen: dict[str, list[tuple[int, str]]] = {}
    for split in SPLIT_DIRS:
        # Class order, then file-name order: the order load()'s per-class cap assumes.
        files = [(label, c, f) for label, c in enumerate(class_names)
                 for f in sorted(names.get((split, c), []))]
        y = np.array([label for label, _, _ in files], dtype=np.int32)
        keep = np.arange(len(files))
        if max_per_class is not None:
            keep = per_class_cap(y, max_per_class)
        if split == "train" and max_train_examples is not None and len(keep) > max_train_examples:
            keep = keep[stratified_sample(y[keep], max_train_examples,
                                          np.random.default_rng(SUBSET_SEED))]
        chosen[split] = [(files[i][0], f"{split}/{files[i][1]}/{files[i][2]}") for i in keep]
    return class_names, chosen


def _decode_images(blobs: list[bytes], names: list[str]) -> np.ndarray:
    """Decodes encoded images to a uint8 ``(n, h, w, 3)`` array; all must share one size."""
    from keras_cnas._keras import tf  # lazy: keeps `import keras_cnas.data` light.

    def decode_one(blob: bytes, name: str) -> np.ndarray:
        try:
            return tf.io.decode_image(blob, channels=3, expand_animations=False).numpy()
        except tf.errors.InvalidArgumentError as e:
            raise DataError(f"{name}: cannot decode it as an image ({e.message.strip()})") from e

    first = decode_one(blobs[0], names[0])
    shape = first.shape

    def decode(blob: Any) -> Any:
        image = tf.io.decode_image(blob, channels=3, expand_animations=False)
        return tf.ensure_shape(image, shape)

    # Parallel decoding in tf.data is several times faster than a Python loop over 60k JPEGs.
    ds = tf.data.Dataset.from_tensor_slices(blobs).map(
        decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(1024)
    try:
        return np.concatenate([batch.numpy() for batch in ds])
    except tf.errors.InvalidArgumentError:
        # Slow path, only on error: find the culprit file so the message can name it.
        for blob, name in zip(blobs, names):
            image = decode_one(blob, name)
            if image.shape != shape:
                raise DataError(
                    f"{name}: image is {image.shape[1]}x{image.shape[0]}, expected "
                    f"{shape[1]}x{shape[0]} like {names[0]}; all images must share one size"
                ) from None
        raise


def _tree_raw(class_names: list[str], chosen: dict[str, list[tuple[int, str]]],
              read: Callable[[str], bytes], where: str) -> RawData:
    arrays = {}
    for split in SPLIT_DIRS:
        files = chosen[split]
        names = [f"{where}/{rel}" for _, rel in files]
        # _select guarantees at least one file per split.
        x = _decode_images([read(rel) for _, rel in files], names)
        arrays[split] = x, np.array([label for label, _ in files], dtype=np.int32)
    (x_train, y_train), (x_test, y_test) = arrays["train"], arrays["test"]
    if x_test.shape[1:] != x_train.shape[1:]:
        raise DataError(f"{where}: test images are {x_test.shape[1:]}, train images "
                        f"{x_train.shape[1:]}; expected one size")
    return RawData(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                   class_names=class_names, augmentation=AUGMENTATION)


def _load_tree(root: pathlib.Path, max_per_class: int | None,
               max_train_examples: int | None) -> RawData:
    names: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    for split in SPLIT_DIRS:
        split_dir = root / split
        if not split_dir.is_dir():
            raise DataError(f"{root} lacks the {split}/ directory; expected {_LAYOUTS}")
        for class_dir in sorted(split_dir.iterdir()):
            if class_dir.is_dir():
                for path in class_dir.iterdir():
                    key = _tree_key((split, class_dir.name, path.name))
                    if key and path.is_file():
                        names[key[:2]].append(key[2])
    class_names, chosen = _select(names, str(root), max_per_class, max_train_examples)
    return _tree_raw(class_names, chosen, lambda rel: _read_file(root / rel, MAX_IMAGE_BYTES),
                     str(root))


def _read_file(path: pathlib.Path, limit: int = MAX_FILE_BYTES) -> bytes:
    check_size(str(path), path.stat().st_size, limit)
    return path.read_bytes()


def _scan_tarball(tar: tarfile.TarFile, max_per_class: int | None
                  ) -> tuple[dict[str, bytes], dict[tuple[str, str], dict[str, bytes]]]:
    """One sequential pass over a (gzip) tarball: batch files and tree images, in memory.

    A gzip stream cannot seek cheaply, so we read what we need on the way through. With
    ``max_per_class`` only the first files (by name) of each class are kept, bounding memory.
    """
    batches: dict[str, bytes] = {}
    images: dict[tuple[str, str], dict[str, bytes]] = collections.defaultdict(dict)
    for member in tar:
        if not member.isfile():
            continue
        parts = tuple(p for p in member.name.split("/") if p not in ("", "."))
        if parts and parts[-1] in BATCH_FILES:
            check_size(f"{tar.name}: member {member.name}", member.size)  # before reading it
            batches[parts[-1]] = tar.extractfile(member).read()
            continue
        key = _tree_key(parts)
        if key is None:
            continue
        bucket = images[key[:2]]
        if max_per_class is not None and len(bucket) >= max_per_class:
            worst = max(bucket)
            if key[2] >= worst:
                continue
            del bucket[worst]
        check_size(f"{tar.name}: member {member.name}", member.size, MAX_IMAGE_BYTES)
        bucket[key[2]] = tar.extractfile(member).read()
    return batches, images


def _load_tarball(path: pathlib.Path, max_per_class: int | None,
                  max_train_examples: int | None) -> RawData:
    try:
        with tarfile.open(path, "r:*") as tar:  # "r:*" detects gzip / bz2 / xz / plain.
            batches, images = _scan_tarball(tar, max_per_class)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read it as a tarball ({e}); re-copy the file") from e
    if batches:
        return _read_batches(batches.get, str(path))
    if not images:
        raise DataError(f"{path} holds no CIFAR-10 data; expected {_LAYOUTS}")
    names = {key: list(files) for key, files in images.items()}
    class_names, chosen = _select(names, str(path), max_per_class, max_train_examples)

    def read(rel: str) -> bytes:
        split, cls, name = rel.split("/")
        return images[(split, cls)][name]

    return _tree_raw(class_names, chosen, read, str(path))


@register("cifar10")
def load_cifar10_raw(data_dir: pathlib.Path | None, *, max_per_class: int | None = None,
                     max_train_examples: int | None = None) -> RawData:
    """CIFAR-10 (or any same-layout class-folder image set) from local files.

    Prefer ``keras_cnas.data.load("cifar10", data_dir=...)``. Folder class names are sorted
    alphabetically (CIFAR-10's official order is alphabetical too); batches use
    ``batches.meta``. Images are decoded as RGB; all must share one size.

    Args:
        data_dir: See the module docstring for the accepted layouts.
        max_per_class: Decode only the first this-many files (by name) of each class in each
            split; the python batches are read whole and capped by :func:`load`.
        max_train_examples: Decode only the fixed stratified subset :func:`load` would keep.

    Raises:
        DataError: ``data_dir`` is None or missing, holds no CIFAR-10 layout, or a file is
            malformed; the message names the file.

    Example:
        >>> raw = load_cifar10_raw(pathlib.Path("cifar10-jpeg"),  # doctest: +SKIP
        ...                        max_per_class=20)
        >>> raw.x_train.shape, raw.class_names[:2]  # doctest: +SKIP
        ((200, 32, 32, 3), ['airplane', 'automobile'])
    """
    if data_dir is None:
        raise DataError(
            "the 'cifar10' dataset needs data_dir: pass data_dir=... pointing at the directory "
            f"containing {_LAYOUTS} (nothing is ever downloaded)")
    kind, path = _locate(data_dir)
    logger.info("reading CIFAR-10 %s from %s", kind, path)
    if kind == "batches":
        def read(name: str) -> bytes | None:
            return _read_file(path / name) if (path / name).is_file() else None

        return _read_batches(read, str(path))
    if kind == "tree":
        return _load_tree(path, max_per_class, max_train_examples)
    return _load_tarball(path, max_per_class, max_train_examples)
