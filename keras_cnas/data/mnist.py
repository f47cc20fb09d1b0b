"""MNIST from the four standard IDX files (gzip-compressed or not)."""

from __future__ import annotations

import gzip
import pathlib
import zlib

import numpy as np

from keras_cnas.data.augment import Augmentation
from keras_cnas.data.dataset import RawData, register
from keras_cnas.data.limits import check_size, read_limited
from keras_cnas.errors import DataError

__all__ = ["FILES", "IMAGES_MAGIC", "LABELS_MAGIC", "load_mnist_raw", "read_idx_images",
           "read_idx_labels"]

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions.
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension.

# Logical file -> its standard name; each may also be stored uncompressed (without ".gz").
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def _candidates(standard: str) -> list[str]:
    bare = standard[:-len(".gz")]
    # Some re-packagings (e.g. Kaggle's) write "train-images.idx3-ubyte": accept that spelling.
    dotted = bare.replace("-idx", ".idx")
    return [standard, bare, dotted + ".gz", dotted]


def _find(data_dir: pathlib.Path, standard: str) -> pathlib.Path | None:
    for name in _candidates(standard):
        if (data_dir / name).is_file():
            return data_dir / name
    return None


def _read_bytes(path: pathlib.Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return read_limited(f, str(path))
        check_size(str(path), path.stat().st_size)
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError.
        raise DataError(f"{path}: cannot read it as {'gzip' if path.suffix == '.gz' else 'IDX'} "
                        f"data ({e}); re-copy the file") from e


def _header(path: pathlib.Path, data: bytes, magic: int, dims: int) -> tuple[int, ...]:
    header_size = 4 * (1 + dims)
    if len(data) < header_size:
        raise DataError(
            f"{path}: found only {len(data)} bytes, expected an IDX header of {header_size} "
            "bytes; the file is truncated or not an IDX file")
    fields = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=1 + dims))
    if fields[0] != magic:
        kind = "images" if magic == IMAGES_MAGIC else "labels"
        raise DataError(
            f"{path}: found magic number {fields[0]}, expected {magic} (IDX {kind}); "
            "it is not an MNIST "
            f"{kind} file (or the file names are swapped)")
    return fields[1:]


def read_idx_images(path: str | pathlib.Path) -> np.ndarray:
    """Reads an IDX image file (magic 2051) into a ``(count, rows, cols)`` uint8 array.

    Raises:
        DataError: The magic number, the header or the data length is wrong; the message
            names the file, what was found and what was expected.

    Example:
        >>> images = read_idx_images("mnist/t10k-images-idx3-ubyte.gz")  # doctest: +SKIP
        >>> images.shape  # doctest: +SKIP
        (10000, 28, 28)
    """
    path = pathlib.Path(path)
    data = _read_bytes(path)
    count, rows, cols = _header(path, data, IMAGES_MAGIC, 3)
    expected = count * rows * cols
    if len(data) - 16 != expected:
        raise DataError(
            f"{path}: found {len(data) - 16} bytes of pixels, expected {expected} "
            f"({count} images of {rows}x{cols}) after the 16-byte header; the file is "
            "truncated or corrupt")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)


def read_idx_labels(path: str | pathlib.Path) -> np.ndarray:
    """Reads an IDX label file (magic 2049) into a ``(count,)`` uint8 array.

    Raises:
        DataError: The magic number, the header or the data length is wrong.
    """
    path = pathlib.Path(path)
    data = _read_bytes(path)
    (count,) = _header(path, data, LABELS_MAGIC, 1)
    if len(data) - 8 != count:
        raise DataError(
            f"{path}: found {len(data) - 8} labels, expected {count} (the count in its "
            "header); the file is truncated or corrupt")
    return np.frombuffer(data, dtype=np.uint8, offset=8).copy()


@register("mnist")
def load_mnist_raw(data_dir: pathlib.Path | None, *, max_per_class: int | None = None,
                   max_train_examples: int | None = None) -> RawData:
    """MNIST's 60,000 training and 10,000 test images from the IDX files in ``data_dir``.

    Prefer ``keras_cnas.data.load("mnist", data_dir=...)``.

    Args:
        data_dir: The directory holding ``train-images-idx3-ubyte.gz``,
            ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz`` and
            ``t10k-labels-idx1-ubyte.gz`` (the names without ``.gz`` work too).
        max_per_class: Unused: reading is fast; :func:`~keras_cnas.data.load` applies it.
        max_train_examples: Unused; :func:`~keras_cnas.data.load` applies it.

    Raises:
        DataError: ``data_dir`` is None or missing, a file is missing, or a file is malformed.
    """
    del max_per_class, max_train_examples  # load() applies them.
    expected = ", ".join(FILES.values())
    if data_dir is None:
        raise DataError(
            "the 'mnist' dataset needs data_dir: pass data_dir=... pointing at the directory "
            f"containing {expected} (nothing is ever downloaded)")
    if not data_dir.is_dir():
        raise DataError(
            f"data_dir {data_dir} does not exist or is not a directory; it should contain "
            f"{expected}")
    paths = {key: _find(data_dir, name) for key, name in FILES.items()}
    missing = [FILES[key] for key, path in paths.items() if path is None]
    if missing:
        raise DataError(
            f"data_dir {data_dir} lacks {', '.join(missing)} (expected {expected}; the names "
            "without .gz are accepted too)")
    splits = {}
    for split in ("train", "test"):
        images = read_idx_images(paths[f"{split}_images"])
        labels = read_idx_labels(paths[f"{split}_labels"])
        if len(images) != len(labels):
            raise DataError(
                f"{paths[f'{split}_images']} holds {len(images)} images but "
                f"{paths[f'{split}_labels']} holds {len(labels)} labels; expected equal counts")
        if labels.size and labels.max() > 9:
            raise DataError(
                f"{paths[f'{split}_labels']}: found label {labels.max()}, expected digits 0..9")
        splits[split] = images, labels
    if splits["train"][0].shape[1:] != splits["test"][0].shape[1:]:
        raise DataError(
            f"train images are {splits['train'][0].shape[1:]} but test images are "
            f"{splits['test'][0].shape[1:]}; expected the same size")
    return RawData(
        x_train=splits["train"][0], y_train=splits["train"][1],
        x_test=splits["test"][0], y_test=splits["test"][1],
        class_names=[str(i) for i in range(10)],
        # No flip (mirrored digits change meaning); pad 3 = max(1, 28 // 8), as MIT-LL.
        augmentation=Augmentation(flip=False, pad=None, color_jitter=False))
