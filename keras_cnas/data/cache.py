"""How a worker process gets the data: a small JSON value, never a pickled array.

A :class:`DataSource` is either a *registered dataset* (``name``, ``data_dir``, split and
subset arguments), which each process reloads with :func:`keras_cnas.data.load`, or the
path of an ``.npz`` cache written once by :func:`save_npz` and read with
``allow_pickle=False``: every split, the class names, the input shape and the augmentation.
The engine writes the cache for in-memory datasets (which no JSON can carry) and for
slow-to-decode ones (CIFAR-10's 60,000 JPEGs), so that N workers do not decode N times.

:meth:`DataSource.load` is cached per process: a worker evaluating many trials loads once.
Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
from typing import Any, Mapping

import numpy as np

from keras_cnas._checks import is_int, is_real
from keras_cnas.data import Augmentation, Dataset
from keras_cnas.data import load as load_dataset
from keras_cnas.errors import DataError

__all__ = ["DataSource", "load_npz", "save_npz"]

logger = logging.getLogger(__name__)

#: Bumped when the cache layout changes; a cache of another version is rejected.
NPZ_FORMAT = 1
_ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
_FIELDS = ("name", "data_dir", "validation_split", "seed", "max_train_examples",
           "max_per_class", "npz_path")

# DataSource config (JSON) -> Dataset, for this process. Datasets are large: keep few.
_CACHE: dict[str, Dataset] = {}
_CACHE_SIZE = 2


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Where a process gets its :class:`~keras_cnas.data.Dataset`: a JSON-compatible value.

    Build one with :meth:`registered` or :meth:`npz`; exactly one of ``name`` and
    ``npz_path`` is set.

    Attributes:
        name: a dataset registered in ``keras_cnas.data.DATASETS`` (``"digits"``, ...).
        data_dir: the directory of its files (unused by ``"digits"``).
        validation_split, seed, max_train_examples, max_per_class: passed to
            :func:`keras_cnas.data.load`.
        npz_path: an ``.npz`` cache written by :func:`save_npz` (splits are baked in).

    Example:
        >>> source = DataSource.registered("digits", validation_split=0.2)
        >>> DataSource.from_config(source.to_config()) == source
        True
        >>> source.load().input_shape
        (8, 8, 1)
    """

    name: str | None = None
    data_dir: str | None = None
    validation_split: float = 0.1
    seed: int = 0
    max_train_examples: int | None = None
    max_per_class: int | None = None
    npz_path: str | None = None

    def __post_init__(self) -> None:
        if (self.name is None) == (self.npz_path is None):
            raise ValueError(
                f"DataSource: give exactly one of name= (a registered dataset) and npz_path= "
                f"(a cache from save_npz); got name={self.name!r}, npz_path={self.npz_path!r}")
        if self.npz_path is not None:
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            changed = [f for f in _FIELDS[1:6] if getattr(self, f) != defaults[f]]
            if changed:
                raise ValueError(
                    f"DataSource: {', '.join(changed)} do not apply to an npz cache (its splits "
                    f"are fixed when it is written); drop them or use name= instead")
            return
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name: expected a registered dataset name such as 'digits', "
                             f"got {self.name!r}")
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))
        # Checked here, in the driver, rather than when a worker first loads the data.
        split = self.validation_split
        if not is_real(split) or not 0 <= split < 1:
            raise ValueError(f"validation_split: expected a fraction in [0, 1) such as 0.1, "
                             f"got {split!r}")
        if not is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {self.seed!r}")
        for field in ("max_train_examples", "max_per_class"):
            value = getattr(self, field)
            if value is not None and (not is_int(value)
                                      or value < 1):
                raise ValueError(f"{field}: expected a positive integer or None (no limit), "
                                 f"got {value!r}")

    @classmethod
    def registered(cls, name: str, data_dir: str | os.PathLike[str] | None = None, *,
                   validation_split: float = 0.1, seed: int = 0,
                   max_train_examples: int | None = None,
                   max_per_class: int | None = None) -> "DataSource":
        """A registered dataset, reloaded by each process with :func:`keras_cnas.data.load`."""
        return cls(name=name,
                   data_dir=None if data_dir is None else str(pathlib.Path(data_dir).resolve()),
                   validation_split=validation_split, seed=seed,
                   max_train_examples=max_train_examples, max_per_class=max_per_class)

    @classmethod
    def npz(cls, path: str | os.PathLike[str]) -> "DataSource":
        """An ``.npz`` cache written by :func:`save_npz`."""
        return cls(npz_path=str(pathlib.Path(path).expanduser().resolve()))

    def to_config(self) -> dict[str, Any]:
        """JSON-compatible; only the fields that apply."""
        if self.npz_path is not None:
            return {"npz_path": self.npz_path}
        return {f: getattr(self, f) for f in _FIELDS[:6]}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "DataSource":
        """Inverse of :meth:`to_config`; unknown keys are an error naming them."""
        if not isinstance(config, Mapping):
            raise ValueError(f"data: expected a DataSource config such as {{'name': 'digits'}}, "
                             f"got {type(config).__name__}")
        unknown = sorted(set(config) - set(_FIELDS))
        if unknown:
            raise ValueError(f"data: unknown DataSource fields {unknown}; known: {list(_FIELDS)}")
        return cls(**config)

    def load(self) -> Dataset:
        """The dataset, loaded once per process (later calls return the same object).

        Raises:
            DataError, FileNotFoundError, KeyError: the source cannot be read.
        """
        key = _cache_key(self)
        if key not in _CACHE:
            data = (load_npz(self.npz_path) if self.npz_path is not None else load_dataset(
                self.name, self.data_dir, self.validation_split, self.seed,
                self.max_train_examples, max_per_class=self.max_per_class))
            remember(self, data)
        return _CACHE[key]


def _cache_key(source: DataSource) -> str:
    key = json.dumps(source.to_config(), sort_keys=True)
    if source.npz_path is not None and os.path.exists(source.npz_path):
        stat = os.stat(source.npz_path)  # a rewritten cache is a different dataset.
        key += f"|{stat.st_size}|{stat.st_mtime_ns}"
    return key


def remember(source: DataSource, data: Dataset) -> None:
    """Primes this process's cache: ``source.load()`` will return ``data`` without reading.

    Used after writing an npz cache from data already in memory.
    """
    while len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))  # the oldest: datasets are large.
    _CACHE[_cache_key(source)] = data


def fingerprint(data: Dataset) -> str:
    """16 hex digits identifying the dataset's contents (arrays, classes, augmentation)."""
    digest = hashlib.sha256(json.dumps(_meta(data), sort_keys=True).encode())
    for name in _ARRAYS:
        array = np.ascontiguousarray(getattr(data, name))
        digest.update(f"{name}{array.dtype}{array.shape}".encode())
        if array.size:  # an empty split (no test set) has no bytes, and cannot be cast
            digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()[:16]


def _meta(data: Dataset) -> dict[str, Any]:
    aug = data.augmentation
    return {"format": NPZ_FORMAT, "name": data.name, "class_names": list(data.class_names),
            "input_shape": list(data.input_shape),
            "augmentation": {"flip": bool(aug.flip), "pad": aug.pad,
                             "color_jitter": bool(aug.color_jitter)}}


def _as_uint8_if_exact(x: np.ndarray) -> np.ndarray:
    """uint8 when ``x`` is exactly ``u8 / 255`` (images decoded from 8-bit files): a quarter
    of the bytes, and :func:`load_npz` restores the very same float32 values."""
    if x.size == 0:
        return x
    candidate = np.rint(x * np.float32(255.0))
    if candidate.min() < 0 or candidate.max() > 255:
        return x
    u8 = candidate.astype(np.uint8)
    return u8 if np.array_equal(_u8_to_float(u8), x) else x


def _u8_to_float(u8: np.ndarray) -> np.ndarray:
    # The same expression keras_cnas.data uses to scale uint8 images, so values match bit for bit.
    return (u8 / np.float32(255.0)).astype(np.float32, copy=False)


def save_npz(data: Dataset, path: str | os.PathLike[str]) -> pathlib.Path:
    """Writes ``data`` to an ``.npz`` file (no pickle) that :func:`load_npz` reads back.

    Images that are exact multiples of 1/255 are stored as uint8. The file is written
    under a temporary name and renamed, so a reader never sees half a file.

    Args:
        data: the dataset.
        path: the file to write (``.npz`` is *not* appended).

    Returns:
        The path written.

    Example:
        >>> import tempfile, keras_cnas as cnas
        >>> data = cnas.data.load("digits")
        >>> path = save_npz(data, pathlib.Path(tempfile.mkdtemp()) / "digits.npz")
        >>> again = load_npz(path)
        >>> bool((again.x_train == data.x_train).all()), again.augmentation == data.augmentation
        (True, True)
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: getattr(data, name) for name in _ARRAYS}
    for name in ("x_train", "x_val", "x_test"):
        arrays[name] = _as_uint8_if_exact(arrays[name])
    arrays["meta"] = np.array(json.dumps(_meta(data), sort_keys=True))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name.
        np.savez(f, **arrays)
    os.replace(tmp, path)
    logger.info("wrote %r to %s", data, path)
    return path


def load_npz(path: str | os.PathLike[str]) -> Dataset:
    """Reads a dataset written by :func:`save_npz` (``allow_pickle=False``).

    Raises:
        FileNotFoundError: no file at ``path``.
        DataError: the file is not a keras_cnas dataset cache of this version.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"npz_path: no dataset cache at {path}; write one with "
            "keras_cnas.data.cache.save_npz(dataset, path) or "
            "KerasEvaluator.portable(cache_dir)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            arrays = {name: npz[name] for name in _ARRAYS}
    except (KeyError, ValueError, OSError) as e:
        raise DataError(f"npz_path: {path} is not a keras_cnas dataset cache ({e}); "
                        "rewrite it with save_npz") from None
    if meta.get("format") != NPZ_FORMAT:
        raise DataError(f"npz_path: {path} has cache format {meta.get('format')!r}, this "
                        f"version reads {NPZ_FORMAT}; rewrite it with save_npz")
    for name in ("x_train", "x_val", "x_test"):
        if arrays[name].dtype == np.uint8:
            arrays[name] = _u8_to_float(arrays[name])
    return Dataset(name=meta["name"], **arrays, class_names=tuple(meta["class_names"]),
                   num_classes=len(meta["class_names"]), input_shape=tuple(meta["input_shape"]),
                   augmentation=Augmentation(**meta["augmentation"]))


def cache_file_name(data: Dataset) -> str:
    """``<name>-<fingerprint>.npz``: the same data always maps to the same file, so a
    resumed search finds the cache it wrote before."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in data.name) or "data"
    return f"{safe}-{fingerprint(data)}.npz"
