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
from typing import Any, Callable, Hashable, NamedTuple, Sequence


class SizeBuilder:
    """The arithmetic of ``flatbuffers.Builder`` (python, 25.x): offsets, padding, vtables.

    ``offset`` is the number of bytes written so far (the builder writes back to front);
    objects are identified by the offset at which they end, as in the builder.
    """

    __slots__ = ("offset", "minalign", "vtables", "_fields", "_object_end")

    def __init__(self) -> None:
        self.offset = 0
        self.minalign = 1
        self.vtables: dict[tuple, int] = {}
        self._fields: list[int] = []
        self._object_end = 0

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


class KeyedObjects(Sequence):
    """A sequence of objects given by hashable keys: item ``i`` is ``make(keys[i])``.

    Equal keys must make equal objects. :func:`packed_model_bytes` then memoises each
    object's move by its key alone, so pricing a model neither builds its objects nor
    hashes them (a key is a tuple its caller builds anyway); the objects are made only
    for moves not seen before, or to pack them step by step.
    """

    __slots__ = ("keys", "make")

    def __init__(self, keys: Sequence[Hashable], make: Callable[[Any], Any]) -> None:
        self.keys = keys
        self.make = make

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.make(key) for key in self.keys[i]]
        return self.make(self.keys[i])


class _SizeMemo:
    """The effect of packing an object, memoised by the builder's state.

    What an object adds to the size depends only on its fields and on the builder's
    state: the offset mod 8 where it starts (nothing is aligned beyond 8), ``minalign``
    and which vtables exist (a vtable's own position never matters). States are
    numbered; a move maps (state, object) to (bytes added, next state), so a model is
    sized with one dictionary look-up per object once its kinds of object have been seen
    (pricing thousands of specs a second needs this; the result is the same, tested).
    """

    #: Moves kept per kind of object (a long search sees a few thousand).
    LIMIT = 1 << 17

    def __init__(self) -> None:
        self._ids: dict[tuple, int] = {}
        self._states: list[tuple[int, int, frozenset]] = []
        self._moves: dict[Callable, dict[tuple, tuple[int, int]]] = {}
        # Keyed moves (KeyedObjects): per pack, one dict per state, key -> move; a list
        # indexed by the state saves building a (state, key) tuple per object.
        self._keyed: dict[Callable, list[dict[Hashable, tuple[int, int]]]] = {}
        self._keyed_sizes: dict[Callable, int] = {}
        self.initial = self._state(0, 1, frozenset())

    def _state(self, mod8: int, minalign: int, vtables: frozenset) -> int:
        key = (mod8, minalign, vtables)
        state = self._ids.get(key)
        if state is None:
            state = self._ids[key] = len(self._states)
            self._states.append(key)
            for table in self._keyed.values():
                table.append({})
        return state

    def keyed_moves(self, pack: Callable) -> list[dict[Hashable, tuple[int, int]]]:
        """The memo of ``pack``'s moves by key: ``table[state][key] -> (bytes, next state)``."""
        table = self._keyed.get(pack)
        if table is None:
            table = self._keyed[pack] = [{} for _ in self._states]
            self._keyed_sizes[pack] = 0
        return table

    def keyed_move(self, pack: Callable, state: int, key: Hashable, obj: object) -> tuple[int, int]:
        """:meth:`move` of ``obj``, remembered under ``key`` as well."""
        hit = self.move(pack, state, obj)
        if self._keyed_sizes[pack] < self.LIMIT:
            self._keyed_sizes[pack] += 1
            self._keyed[pack][state][key] = hit
        return hit

    def builder(self, state: int, offset: int) -> SizeBuilder:
        """A builder at ``offset`` (congruent to the state's mod 8) in ``state``."""
        b = SizeBuilder()
        _, b.minalign, vtables = self._states[state]
        b.offset, b.vtables = offset, dict.fromkeys(vtables, 0)
        return b

    def state_of(self, b: SizeBuilder) -> int:
        return self._state(b.offset & 7, b.minalign, frozenset(b.vtables))

    def moves(self, pack: Callable[[SizeBuilder, object], object]) -> dict[tuple, tuple[int, int]]:
        """The memo of ``pack``'s moves: ``(state, obj) -> (bytes, next state)``."""
        return self._moves.setdefault(pack, {})

    def move(self, pack: Callable[[SizeBuilder, object], object], state: int,
             obj: object) -> tuple[int, int]:
        """``pack(builder, obj)`` from ``state``: (bytes added, next state)."""
        moves = self.moves(pack)
        hit = moves.get((state, obj))
        if hit is None:
            b = self.builder(state, self._states[state][0])
            pack(b, obj)
            hit = (b.offset - self._states[state][0], self.state_of(b))
            if len(moves) < self.LIMIT:
                moves[(state, obj)] = hit
        return hit


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
        tensors, operators: the subgraph's, in order (a :class:`KeyedObjects` is sized
            by its keys).
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
    if not memoised:
        b = SizeBuilder()
        for pack, objects in _sections(model, _pack_buffers_step_by_step):
            for obj in objects:
                pack(b, obj)
        return b.offset
    memo, offset = _MEMO, 0
    state = memo.initial
    for pack, objects in _sections(model, _pack_buffers):
        if pack is _pack_buffers:  # a list of sizes: in closed form, not memoised
            b = memo.builder(state, offset)
            _pack_buffers(b, objects[0])
            offset, state = b.offset, memo.state_of(b)
            continue
        if isinstance(objects, KeyedObjects):
            table, make = memo.keyed_moves(pack), objects.make
            for key in objects.keys:
                hit = table[state].get(key)
                delta, state = hit if hit is not None else memo.keyed_move(pack, state, key,
                                                                           make(key))
                offset += delta
            continue
        moves = memo.moves(pack)
        for obj in objects:
            hit = moves.get((state, obj))
            delta, state = hit if hit is not None else memo.move(pack, state, obj)
            offset += delta
    return offset


_MEMO = _SizeMemo()


def _sections(model: PackedModel, buffers: Callable[[SizeBuilder, Sequence[int | None]], None]
              ) -> list[tuple[Callable[[SizeBuilder, Any], object], Sequence[Any]]]:
    """``ModelT.Pack``'s objects in the order it writes them, as (pack, hashable objects)."""
    return [
        (_pack_opcode, [tuple(opcode) for opcode in model.opcodes]),
        (_vector_of_tables, (len(model.opcodes),)),
        # SubGraphT.Pack
        (pack_tensor, model.tensors),
        (_subgraph_io, ((len(model.tensors), model.num_inputs, model.num_outputs),)),
        (pack_operator, model.operators),
        (_subgraph_end, ((len(model.operators), model.subgraph_name_bytes,
                          model.description_bytes),)),
        (buffers, (model.buffers,)),
        (_model_end, ((len(model.buffers), tuple(map(tuple, model.metadata)),
                       tuple(map(tuple, model.signature_inputs)),
                       tuple(map(tuple, model.signature_outputs)), model.signature_key_bytes),)),
    ]


def _pack_opcode(b: SizeBuilder, opcode: tuple[int, int]) -> None:
    pack_opcode(b, *opcode)


def _vector_of_tables(b: SizeBuilder, n: int) -> None:
    b.vector_of_tables(n)


def _subgraph_io(b: SizeBuilder, counts: tuple[int, int, int]) -> None:
    tensors, inputs, outputs = counts
    b.vector_of_tables(tensors)
    b.vector(4, inputs)
    b.vector(4, outputs)


def _subgraph_end(b: SizeBuilder, fields: tuple[int, int, int]) -> None:
    """The operators' vector, the subgraph's name and table, the subgraphs' vector and the
    model's description."""
    operators, name_bytes, description_bytes = fields
    b.vector_of_tables(operators)
    b.string(name_bytes)
    b.start(6)
    for slot in range(5):
        b.ref(slot)
    b.end()
    b.vector_of_tables(1)
    b.string(description_bytes)


def _pack_buffers_step_by_step(b: SizeBuilder, buffers: Sequence[int | None]) -> None:
    for nbytes in buffers:
        pack_buffer(b, nbytes)


def _model_end(b: SizeBuilder, fields: tuple) -> None:
    """The buffers' vector, the metadata, the signature, the model table and ``Finish``."""
    num_buffers, metadata, signature_inputs, signature_outputs, key_bytes = fields
    b.vector_of_tables(num_buffers)
    for name_bytes, buffer in metadata:
        pack_named(b, name_bytes, buffer != 0)
    b.vector_of_tables(len(metadata))
    # SignatureDefT.Pack: inputs, outputs, key, the table (subgraph index 0: not written).
    for maps in (signature_inputs, signature_outputs):
        for name_bytes, index in maps:
            pack_named(b, name_bytes, index != 0)
        b.vector_of_tables(len(maps))
    b.string(key_bytes)
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
    b.finish()


__all__ = ["KeyedObjects", "PackedModel", "PackedOperator", "PackedTensor", "SizeBuilder", "packed_model_bytes"]
