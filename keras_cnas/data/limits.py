"""Size limits on data files, checked before their bytes are read.

A 1 MB ``.tar.gz`` can declare a 1 GiB member (zeros compress well) and a small ``.gz`` can
inflate to any size: reading either whole took over a gigabyte of memory before the data
was found wrong. The declared size of a tar member is checked before it is read; a gzip
stream is read up to the limit plus one byte.

| limit | value | applies to |
|---|---|---|
| ``MAX_FILE_BYTES`` | 256 MiB | a data file or archive member (a CIFAR-10 batch is 30 MB, MNIST's training images 47 MB) |
| ``MAX_IMAGE_BYTES`` | 16 MiB | one encoded image of a class-folder tree |
"""

from __future__ import annotations

from typing import BinaryIO

from keras_cnas.errors import DataError

__all__ = ["MAX_FILE_BYTES", "MAX_IMAGE_BYTES", "check_size", "read_limited"]

MAX_FILE_BYTES = 256 * 2**20
MAX_IMAGE_BYTES = 16 * 2**20


def check_size(what: str, size: int, limit: int = MAX_FILE_BYTES) -> None:
    """Refuses ``what`` (a file or member) whose declared ``size`` exceeds ``limit``."""
    if size > limit:
        raise DataError(f"data_dir: {what} is {size:,} bytes, more than the {limit:,} a dataset "
                        "file may hold (keras_cnas.data.limits); it is not the expected data: "
                        "re-copy the file")


def read_limited(stream: BinaryIO, what: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """Reads a stream whose size is not known in advance (gzip), at most ``limit`` bytes."""
    data = stream.read(limit + 1)
    check_size(what, len(data) if len(data) <= limit else limit + 1, limit)
    return data
