"""TensorBoard event files, written in pure Python (no TensorFlow, no ``tensorboard`` package).

An event file is a TFRecord stream of serialized ``tensorflow.Event`` protocol buffers:
each record is ``uint64 length, uint32 masked CRC-32C of length, data, uint32 masked
CRC-32C of data`` (little endian). The driver of a search writes one run per finished
trial, so importing TensorFlow (seconds, hundreds of MB) just to log a few scalars would
be a poor trade; TensorFlow 2.21 no longer installs ``tensorboard`` either. The messages
are encoded here field by field; the field numbers are those of TensorFlow's
``event.proto`` / ``summary.proto`` / ``tensor.proto`` and TensorBoard's hparams
``plugin_data.proto``, which TensorFlow's readers (``tf.compat.v1.train.summary_iterator``)
and TensorBoard parse (both checked in ``tests/test_tensorboard.py``).
"""

from __future__ import annotations

import os
import pathlib
import socket
import struct
import time
from typing import Mapping

# --- protocol buffer wire format --------------------------------------------------------

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _varint(value: int) -> bytes:
    if value < 0:  # int64 negatives are 10-byte two's complement varints
        value += 1 << 64
    out = bytearray()
    while True:
        bits, value = value & 0x7F, value >> 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def field_varint(field: int, value: int) -> bytes:
    return _key(field, _VARINT) + _varint(int(value))


def field_double(field: int, value: float) -> bytes:
    return _key(field, _FIXED64) + struct.pack("<d", float(value))


def field_float(field: int, value: float) -> bytes:
    return _key(field, _FIXED32) + struct.pack("<f", float(value))


def field_bytes(field: int, value: bytes | str) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return _key(field, _BYTES) + _varint(len(data)) + data


# --- messages ---------------------------------------------------------------------------

# tensorflow.TensorProto of a float32 tensor of shape (0,): dtype=1 (DT_FLOAT), tensor_shape=2
# holding one dim (field 2) of size 0. TensorBoard attaches it to summaries that carry only
# metadata (the hparams plugin's ``NULL_TENSOR``).
_NULL_TENSOR = field_varint(1, 1) + field_bytes(2, field_bytes(2, b""))


def scalar_value(tag: str, value: float) -> bytes:
    """A ``Summary.Value`` with ``tag`` (1) and ``simple_value`` (2): a scalar-plugin point."""
    return field_bytes(1, tag) + field_float(2, value)


def plugin_value(tag: str, plugin_name: str, content: bytes) -> bytes:
    """A ``Summary.Value`` whose ``metadata`` (9) names a plugin and carries its content.

    ``SummaryMetadata.plugin_data`` is field 1: ``PluginData(plugin_name=1, content=2)``.
    """
    metadata = field_bytes(1, field_bytes(1, plugin_name) + field_bytes(2, content))
    return field_bytes(1, tag) + field_bytes(9, metadata) + field_bytes(8, _NULL_TENSOR)


def summary_event(values: list[bytes], step: int, wall_time: float | None = None) -> bytes:
    """An ``Event`` (wall_time=1, step=2) holding ``Summary(value=1 repeated)`` (field 5)."""
    summary = b"".join(field_bytes(1, v) for v in values)
    return (field_double(1, time.time() if wall_time is None else wall_time)
            + field_varint(2, step) + field_bytes(5, summary))


def _file_version_event() -> bytes:
    """The first event of every file: ``file_version`` (3) = ``"brain.Event:2"``."""
    return field_double(1, time.time()) + field_bytes(3, "brain.Event:2")


# --- hparams plugin (tensorboard/plugins/hparams/plugin_data.proto) ----------------------

HPARAMS_PLUGIN = "hparams"
SESSION_START_TAG = "_hparams_/session_start_info"
SESSION_END_TAG = "_hparams_/session_end_info"
#: api.proto ``Status``.
STATUS_SUCCESS, STATUS_FAILURE = 1, 2


def _protobuf_value(value: bool | int | float | str) -> bytes:
    """A ``google.protobuf.Value``: number_value=2 (double), string_value=3, bool_value=4."""
    if isinstance(value, bool):
        return field_varint(4, int(value))
    if isinstance(value, (int, float)):
        return field_double(2, float(value))
    if isinstance(value, str):
        return field_bytes(3, value)
    raise TypeError(f"hparams: expected bool, int, float or str values, got {type(value).__name__} "
                    f"{value!r}")


def session_start_value(hparams: Mapping[str, bool | int | float | str], start_time_secs: float,
                        group_name: str = "") -> bytes:
    """The ``_hparams_/session_start_info`` summary value of one session (one trial).

    ``HParamsPluginData(version=1, session_start_info=3)``; ``SessionStartInfo(hparams=1
    map<string, Value>, group_name=4, start_time_secs=5)``. A map entry is a nested message
    (key=1, value=2).
    """
    info = b"".join(field_bytes(1, field_bytes(1, name) + field_bytes(2, _protobuf_value(v)))
                    for name, v in sorted(hparams.items()))
    if group_name:  # empty: the session is its own group (TensorBoard's default)
        info += field_bytes(4, group_name)
    info += field_double(5, start_time_secs)
    content = field_varint(1, 0) + field_bytes(3, info)  # plugin data version 0
    return plugin_value(SESSION_START_TAG, HPARAMS_PLUGIN, content)


def session_end_value(status: int, end_time_secs: float) -> bytes:
    """``HParamsPluginData(session_end_info=4)``; ``SessionEndInfo(status=1, end_time_secs=2)``."""
    content = field_varint(1, 0) + field_bytes(4, field_varint(1, status)
                                               + field_double(2, end_time_secs))
    return plugin_value(SESSION_END_TAG, HPARAMS_PLUGIN, content)


# --- TFRecord framing -------------------------------------------------------------------


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # Castagnoli, reflected
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as TFRecord uses.

    Example:
        >>> hex(crc32c(b"123456789"))  # the standard check value
        '0xe3069283'
    """
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC, the data, its masked CRC."""
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", _masked_crc(length))
            + data + struct.pack("<I", _masked_crc(data)))


class EventFileWriter:
    """Appends events to a new ``events.out.tfevents.*`` file in ``run_dir``.

    Each ``write`` is flushed, so a TensorBoard watching the directory sees it at once.

    Example:
        >>> import tempfile
        >>> writer = EventFileWriter(tempfile.mkdtemp())
        >>> writer.write(summary_event([scalar_value("loss", 0.5)], step=1))
        >>> writer.close()
        >>> writer.path.name.startswith("events.out.tfevents.")
        True
    """

    _count = 0  # distinguishes files one process opens in the same second

    def __init__(self, run_dir: str | os.PathLike[str], suffix: str = ""):
        run_dir = pathlib.Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        EventFileWriter._count += 1
        name = (f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}."
                f"{EventFileWriter._count}{suffix}")
        self.path = run_dir / name
        self._file = open(self.path, "ab")
        self.write(_file_version_event())

    def write(self, event: bytes) -> None:
        self._file.write(tfrecord(event))
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> "EventFileWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
