"""The exact size of a ``.tflite`` flatbuffer, from the objects it holds: no bytes are built.

The TFLite converter's last step in Python (``tf.lite.TFLiteConverter.convert``, TensorFlow
2.21) reads the converted model into the object API and writes it again with
``flatbuffer_utils.convert_object_to_bytearray``: the generated ``ModelT.Pack`` over the
Python ``flatbuffers.Builder`` (after adding the ``CONVERSION_METADATA`` buffer). So the
file's layout is that of ``Pack``: objects in the order ``Pack`` creates them, each aligned
as the builder aligns it (vectors to their element size, int64 zero points to 8, strings and
tables to 4), vtables shared between tables whose field layout and size are equal.

:class:`SizeBuilder` replays the builder's arithmetic (the offset, alignment padding and
the vtable cache) without writing bytes, and :func:`packed_model_bytes` walks the objects in
``Pack``'s order. Given the same objects, the result equals ``len(flatbuffer)`` exactly
(tested against converted models read back with the schema). What the objects of a spec's
converted model are (names, buffers, quantization vectors) is :mod:`keras_cnas.costs.
deployment`'s job.

Pure Python: no TensorFlow, no flatbuffers package.

Example:
    >>> b = SizeBuilder()
    >>> b.string(5)  # "hello": length prefix, 5 bytes, NUL, padded to 4
    12
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple, Sequence


class SizeBuilder:
    """The arithmetic of ``flatbuffers.Builder`` (python, 25.x): offsets, padding, vtables.

    ``offset`` is the number of bytes written so far (the builder writes back to front);
    objects are identified by the offset at which they end, as in the builder.
    """

    __slots__ = ("offset", "minalign", "vtables", "_fields", "_object_end", "trace")

    def __init__(self) -> None:
        self.offset = 0
        self.minalign = 1
        self.vtables: dict[tuple, int] = {}
        self._fields: list[int] = []
        self._object_end = 0
        self.trace: list[tuple] | None = None  # the vtable keys used, while memoising

    def prep(self, size: int, additional: int) -> None:
        """``Builder.Prep``: pad so that after ``additional`` bytes we are ``size``-aligned."""
        if size > self.minalign:
            self.minalign = size
        self.offset += (-(self.offset + additional)) & (size - 1)

    # --- vectors and strings ------------------------------------------------------------

    def vector(self, elem_size: int, n: int, alignment: int | None = None) -> int:
        """``StartVector`` + n elements + ``EndVector`` (also ``CreateNumpyVector``)."""
        nbytes = elem_size * n
        self.prep(4, nbytes)
        self.prep(alignment or elem_size, nbytes)
        self.offset += nbytes + 4  # the elements, then the length (already aligned)
        return self.offset

    def string(self, nbytes: int) -> int:
        """``CreateString`` of ``nbytes`` UTF-8 bytes (a NUL follows them)."""
        self.prep(4, nbytes + 1)
        self.offset += nbytes + 1 + 4
        return self.offset

    # --- tables ---------------------------------------------------------------------------

    def start(self, num_fields: int) -> None:
        self._fields = [0] * num_fields
        self._object_end = self.offset

    def scalar(self, slot: int, size: int) -> None:
        """A non-default scalar field of ``size`` bytes (``Prepend<T>Slot``)."""
        self.prep(size, 0)
        self.offset += size
        self._fields[slot] = self.offset

    def ref(self, slot: int) -> None:
        """An offset field (``PrependUOffsetTRelativeSlot``) to an object already written."""
        self.prep(4, 0)
        self.offset += 4
        self._fields[slot] = self.offset

    def end(self) -> int:
        """``EndObject``: the vtable offset, then a new vtable unless an equal one exists."""
        self.prep(4, 0)
        self.offset += 4
        obj = self.offset
        fields = self._fields
        last = len(fields) - 1
        while last >= 0 and fields[last] == 0:
            last -= 1
        key = tuple(obj - f if f else 0 for f in fields[:last + 1]) + (obj - self._object_end,)
        if self.trace is not None:
            self.trace.append(key)
        if key not in self.vtables:
            self.offset += 2 * (last + 1) + 4
            self.vtables[key] = self.offset
        return obj

    def vector_of_tables(self, n: int) -> int:
        return self.vector(4, n)

    def finish(self, file_identifier: bool = True) -> int:
        """``Builder.Finish``: the root offset (and the file identifier); the total size."""
        self.prep(self.minalign, 8 if file_identifier else 4)
        if file_identifier:
            self.prep(4, 4)
            self.offset += 4
        self.prep(4, 0)
        self.offset += 4
        return self.offset


class PackedTensor(NamedTuple):
    """What a tensor adds to the flatbuffer.

    Attributes:
        name_bytes: its name's UTF-8 length.
        rank: the length of its shape (and shape signature).
        type_code: its ``TensorType`` (0 = FLOAT32 is the default, not written).
        has_buffer: whether its buffer index is non-zero (0, the default, is not written;
            the size does not depend on the index otherwise).
        shape_signature: whether a shape signature is stored (non-constant tensors).
        num_scales: quantization scales (and zero points); 0: an empty quantization table.
        quantized_dimension: the per-channel axis (0 is the default, not written).
    """

    name_bytes: int
    rank: int
    type_code: int
    has_buffer: bool
    shape_signature: bool
    num_scales: int = 0
    quantized_dimension: int = 0


class PackedOperator(NamedTuple):
    """What an operator adds: whether its opcode index is non-zero (0 is not written),
    its numbers of inputs and outputs and its builtin options.

    ``options`` lists the non-default scalar fields of its builtin options table as
    ``(slot, size)`` pairs in the order ``Pack`` adds them; None: no options table.
    """

    has_opcode_index: bool
    num_inputs: int
    num_outputs: int
    options_type: int
    options: tuple[tuple[int, int], ...] | None
    options_fields: int = 0


def _memoised(pack: Callable[[SizeBuilder, tuple], object]) -> Callable[[SizeBuilder, tuple], None]:
    """``pack`` with its effect on the builder memoised per object and offset mod 8.

    What an object adds depends only on its fields, on the offset mod 8 where it starts
    (nothing is aligned beyond 8) and on which of its vtables exist already. A cached
    effect is the one where all of them existed; it applies when they all exist again
    (after the first few objects of a kind, almost always), else ``pack`` runs. Pricing
    thousands of specs a second needs this; the result is the same (tested).
    """
    cache: dict[tuple, tuple[int, tuple, int]] = {}

    def run(b: SizeBuilder, obj: tuple) -> None:
        key = (obj, b.offset & 7)
        hit = cache.get(key)
        if hit is not None:
            delta, keys, align = hit
            vtables = b.vtables
            for k in keys:
                if k not in vtables:
                    break
            else:
                b.offset += delta
                if align > b.minalign:
                    b.minalign = align
                return
        start, count, minalign = b.offset, len(b.vtables), b.minalign
        b.trace, b.minalign = [], 1
        pack(b, obj)
        keys, align, b.trace = tuple(b.trace), b.minalign, None
        b.minalign = max(minalign, align)
        if len(b.vtables) == count and len(cache) < 1 << 16:
            cache[key] = (b.offset - start, keys, align)

    return run


def pack_tensor(b: SizeBuilder, t: PackedTensor) -> int:
    """``TensorT.Pack``: shape, name, quantization, shape signature, then the table."""
    b.vector(4, t.rank)
    b.string(t.name_bytes)
    # QuantizationParametersT.Pack: scale (float32), zero_point (int64), the table.
    if t.num_scales:
        b.vector(4, t.num_scales)
        b.vector(8, t.num_scales)
    b.start(7)
    if t.num_scales:
        b.ref(2)
        b.ref(3)
    if t.quantized_dimension:
        b.scalar(6, 4)
    b.end()
    if t.shape_signature:
        b.vector(4, t.rank)
    b.start(11)
    b.ref(0)                      # shape
    if t.type_code:
        b.scalar(1, 1)            # type (int8)
    if t.has_buffer:
        b.scalar(2, 4)            # buffer (uint32)
    b.ref(3)                      # name
    b.ref(4)                      # quantization
    if t.shape_signature:
        b.ref(7)
    b.scalar(8, 1)                # has_rank = True
    return b.end()


def pack_operator(b: SizeBuilder, op: PackedOperator) -> int:
    """``OperatorT.Pack``: inputs, outputs, builtin options, then the table."""
    b.vector(4, op.num_inputs)
    b.vector(4, op.num_outputs)
    if op.options is not None:
        b.start(op.options_fields)
        for slot, size in op.options:
            b.scalar(slot, size)
        b.end()
    b.start(14)
    if op.has_opcode_index:
        b.scalar(0, 4)
    b.ref(1)
    b.ref(2)
    if op.options_type:
        b.scalar(3, 1)
    if op.options is not None:
        b.ref(4)
    return b.end()


_pack_tensor_memoised = _memoised(pack_tensor)
_pack_operator_memoised = _memoised(pack_operator)


def pack_opcode(b: SizeBuilder, version: int, builtin_code: int) -> int:
    """``OperatorCodeT.Pack`` of a builtin operator (``deprecated_builtin_code`` = code)."""
    b.start(4)
    if builtin_code:
        b.scalar(0, 1)
    if version != 1:
        b.scalar(2, 4)
    if builtin_code:
        b.scalar(3, 4)
    return b.end()


def pack_buffer(b: SizeBuilder, nbytes: int | None) -> int:
    """``BufferT.Pack``: its data (a uint8 vector) if it has any, then the table."""
    if nbytes is not None:
        b.vector(1, nbytes)
    b.start(3)
    if nbytes is not None:
        b.ref(0)
    return b.end()


def _pack_buffers(b: SizeBuilder, buffers: Sequence[int | None]) -> None:
    """:func:`pack_buffer` of each, in closed form (the same arithmetic; tested)."""
    vtables = b.vtables
    offset = b.offset
    for nbytes in buffers:
        if nbytes is None:  # an empty table: its vtable offset, 4-aligned
            pad = -offset & 3
            offset += pad + 4
            key = (4 + pad,)
            if key not in vtables:
                offset += 4
                vtables[key] = offset
        else:  # the data (4-aligned length prefix), then a table with one reference
            offset += (-(offset + nbytes) & 3) + nbytes + 4 + 8
            if (4, 8) not in vtables:
                offset += 6
                vtables[(4, 8)] = offset
    if buffers and b.minalign < 4:
        b.minalign = 4
    b.offset = offset


def pack_named(b: SizeBuilder, name_bytes: int, int_field: bool, fields: int = 2) -> int:
    """A table of a name and a uint32 (``MetadataT``, ``TensorMapT``; 0 is not written)."""
    b.string(name_bytes)
    b.start(fields)
    b.ref(0)
    if int_field:
        b.scalar(1, 4)
    return b.end()


@dataclasses.dataclass(frozen=True)
class PackedModel:
    """The objects of a one-subgraph model, as ``ModelT.Pack`` sees them.

    Attributes:
        opcodes: ``(version, builtin_code)`` per operator code, in the model's order.
        tensors, operators: the subgraph's, in order.
        num_inputs, num_outputs: the subgraph's inputs and outputs.
        buffers: data bytes per buffer (None: a buffer without data), metadata ones included.
        metadata: ``(name bytes, buffer index)`` per metadata entry.
        signature_inputs, signature_outputs: ``(name bytes, tensor index)`` per tensor map.
        signature_key_bytes: the signature key's length (``serving_default``: 15).
        description_bytes: the description's length (``MLIR Converted.``: 15).
        subgraph_name_bytes: the subgraph name's length (``main``: 4).
    """

    opcodes: Sequence[tuple[int, int]]
    tensors: Sequence[PackedTensor]
    operators: Sequence[PackedOperator]
    num_inputs: int
    num_outputs: int
    buffers: Sequence[int | None]
    metadata: Sequence[tuple[int, int]]
    signature_inputs: Sequence[tuple[int, int]]
    signature_outputs: Sequence[tuple[int, int]]
    signature_key_bytes: int = 15
    description_bytes: int = 15
    subgraph_name_bytes: int = 4


def packed_model_bytes(model: PackedModel, *, memoised: bool = True) -> int:
    """``len(flatbuffer_utils.convert_object_to_bytearray(model))``, without building it.

    ``memoised=False`` packs every object step by step (slower; the same result, tested).

    Example:
        >>> m = PackedModel(opcodes=[], tensors=[], operators=[], num_inputs=0,
        ...                 num_outputs=0, buffers=[None], metadata=[],
        ...                 signature_inputs=[], signature_outputs=[])
        >>> packed_model_bytes(m) > 0
        True
    """
    b = SizeBuilder()
    for version, code in model.opcodes:
        pack_opcode(b, version, code)
    b.vector_of_tables(len(model.opcodes))
    # SubGraphT.Pack
    tensor, operator = ((_pack_tensor_memoised, _pack_operator_memoised) if memoised
                        else (pack_tensor, pack_operator))
    for t in model.tensors:
        tensor(b, t)
    b.vector_of_tables(len(model.tensors))
    b.vector(4, model.num_inputs)
    b.vector(4, model.num_outputs)
    for op in model.operators:
        operator(b, op)
    b.vector_of_tables(len(model.operators))
    b.string(model.subgraph_name_bytes)
    b.start(6)
    for slot in range(5):
        b.ref(slot)
    b.end()
    b.vector_of_tables(1)
    b.string(model.description_bytes)
    if memoised:
        _pack_buffers(b, model.buffers)
    else:
        for nbytes in model.buffers:
            pack_buffer(b, nbytes)
    b.vector_of_tables(len(model.buffers))
    for name_bytes, buffer in model.metadata:
        pack_named(b, name_bytes, buffer != 0)
    b.vector_of_tables(len(model.metadata))
    # SignatureDefT.Pack: inputs, outputs, key, the table (subgraph index 0: not written).
    for maps in (model.signature_inputs, model.signature_outputs):
        for name_bytes, index in maps:
            pack_named(b, name_bytes, index != 0)
        b.vector_of_tables(len(maps))
    b.string(model.signature_key_bytes)
    b.start(5)
    b.ref(0)
    b.ref(1)
    b.ref(2)
    b.end()
    b.vector_of_tables(1)
    # ModelT: version 3, then the references.
    b.start(10)
    b.scalar(0, 4)
    for slot in (1, 2, 3, 4, 6, 7):
        b.ref(slot)
    b.end()
    return b.finish()


__all__ = ["PackedModel", "PackedOperator", "PackedTensor", "SizeBuilder", "packed_model_bytes"]
