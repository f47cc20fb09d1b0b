"""The ENAS micro cell (Pham et al. 2018), as searched by B-ENAS (Xu et al. 2019).

**The cell.** A cell has ``B`` blocks. Block ``j`` takes two inputs from {the output of
cell ``k-2`` (index 0), the output of cell ``k-1`` (index 1), block ``i < j`` of this cell
(index ``2 + i``)}, applies one op to each and adds the two results. The ops (:data:`OPS`):

==============  ====================================================================
``identity``    the input itself; with a stride of 2, a factorized reduction (below)
``sep3x3``      ReLU, 3x3 separable conv (depthwise + 1x1 pointwise, no bias), BN
``sep5x5``      ReLU, 5x5 separable conv, BN
``avg3x3``      3x3 average pool, "same" padding (padding excluded from the mean)
``max3x3``      3x3 max pool, "same" padding
==============  ====================================================================

Every tensor inside a cell has the cell's ``C`` channels, so no op changes channels (ENAS
calibrates the cell's inputs first, see below). The cell output concatenates the blocks that
no other block consumes, then ReLU, a 1x1 conv back to ``C`` channels and BN. That 1x1 conv
is ENAS's ``final_conv`` of the weight-shared child: it gives every cell ``C`` output
channels whatever the cell, so the shared weights of the next cell always fit. (ENAS's
fixed-architecture child also concatenates unused *cell inputs* and skips the 1x1 conv; we
follow the B-ENAS issue text, blocks only, and keep the conv so that the final model is
exactly the supernet's sub-network for the cell.)

**The network** (:class:`EnasNet`): a stem (3x3 conv to ``filters`` channels, BN), then
``num_layers`` cells, then ReLU, global average pooling and a softmax classifier. Every
cell is the same cell; a *reduction* cell applies stride 2 to the ops that read the cell's
inputs (blocks already are at the reduced size) and doubles the channels. The cells of
``reduction_layers`` reduce; by default layers ``floor(L/3)`` and ``floor(2L/3)``, which
for ``L = 3N + 2`` is NASNet's and ENAS's "N normal, reduce, N normal, reduce, N normal"
(``L = 11``: reductions at 3 and 7). ``L = 3`` (the search) gives normal, reduce, reduce.

**Calibration** (ENAS ``_maybe_calibrate_size``): cell ``k`` works at the resolution of its
``k-1`` input with ``C_k`` channels. Its ``k-2`` input is brought there by a factorized
reduction when it is twice as large (after a reduction cell), else by ReLU, 1x1 conv, BN
when its channels differ; its ``k-1`` input by ReLU, 1x1 conv, BN when its channels differ.
The first cell reads the stem twice. A *factorized reduction* to ``C`` channels is two
stride-2 1x1 convs with ``C/2`` filters each, one on the input and one on the input shifted
by one pixel (pad bottom/right, crop top/left), concatenated, then BN.

**Dead cells.** Only inputs some block reads are calibrated. A cell whose blocks never read
input 1 (``k-1``) makes alternate cells unreachable from the classifier; those are not part
of the network (:meth:`EnasNet.layer_plan` marks them ``live=False``), as Keras would drop
them too.

Pure Python: the spec, space, cost model and the supernet share :meth:`EnasNet.layer_plan`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from keras_cnas.errors import InvalidSpecError
from keras_cnas.spaces.base import (
    SPACES,
    SPEC_TYPES,
    Mutation,
    Space,
    Spec,
    check_int,
    check_shape,
    require,
)


class OpInfo(NamedTuple):
    """What an op name means: ``kind`` is identity, sep, avg or max; ``kernel`` its size."""

    kind: str
    kernel: int


#: The ENAS micro ops, in the order of their categorical codes.
OPS: dict[str, OpInfo] = {
    "identity": OpInfo("identity", 1),
    "sep3x3": OpInfo("sep", 3),
    "sep5x5": OpInfo("sep", 5),
    "avg3x3": OpInfo("avg", 3),
    "max3x3": OpInfo("max", 3),
}
BLOCK_FIELDS = ("input_a", "op_a", "input_b", "op_b")
#: Inputs of a block that are the cell's own inputs (cells k-2 and k-1).
NUM_CELL_INPUTS = 2


class Block(NamedTuple):
    """One block: ``op_a(input_a) + op_b(input_b)``.

    Inputs are 0 (output of cell k-2), 1 (output of cell k-1) or ``2 + i`` (block ``i``).
    """

    input_a: int
    op_a: str
    input_b: int
    op_b: str

    def sides(self) -> tuple[tuple[int, str], tuple[int, str]]:
        """``((input_a, op_a), (input_b, op_b))``."""
        return (self.input_a, self.op_a), (self.input_b, self.op_b)


@dataclasses.dataclass(frozen=True)
class EnasCell:
    """An ENAS micro cell: a tuple of blocks (see the module docstring).

    Example:
        >>> cell = EnasCell([(0, "sep3x3", 1, "identity"), (2, "avg3x3", 1, "sep5x5")])
        >>> cell.key()
        '0sep3x3+1identity|2avg3x3+1sep5x5'
        >>> cell.unused_blocks, cell.uses_input(0), cell.uses_input(1)
        ((1,), True, True)
        >>> EnasCell.from_list(cell.to_list()) == cell
        True
    """

    blocks: tuple[Block, ...]

    def __post_init__(self) -> None:
        if isinstance(self.blocks, (str, bytes)) or not isinstance(self.blocks, Sequence) \
                or not self.blocks:
            raise InvalidSpecError(
                f"cell.blocks: expected a non-empty list of blocks (input_a, op_a, input_b, "
                f"op_b), got {self.blocks!r:.120}")
        object.__setattr__(self, "blocks", tuple(_as_block(j, b) for j, b in enumerate(self.blocks)))

    @classmethod
    def _trusted(cls, blocks: tuple[Block, ...]) -> "EnasCell":
        """A cell known to be valid (sampling, mutation), built without re-checking."""
        cell = object.__new__(cls)
        object.__setattr__(cell, "blocks", blocks)
        return cell

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @functools.cached_property
    def unused_blocks(self) -> tuple[int, ...]:
        """Indices of the blocks no other block consumes: the cell output concatenates them."""
        used = {i - NUM_CELL_INPUTS for b in self.blocks for i in (b.input_a, b.input_b)}
        return tuple(j for j in range(len(self.blocks)) if j not in used)

    def uses_input(self, index: int) -> bool:
        """Whether some block reads input ``index`` (0: cell k-2, 1: cell k-1, 2+j: block j)."""
        return any(index in (b.input_a, b.input_b) for b in self.blocks)

    def key(self) -> str:
        """The blocks as text, e.g. ``"0sep3x3+1identity|2avg3x3+1sep5x5"``."""
        return "|".join(f"{b.input_a}{b.op_a}+{b.input_b}{b.op_b}" for b in self.blocks)

    def to_list(self) -> list[list[Any]]:
        """JSON-compatible: ``[[input_a, op_a, input_b, op_b], ...]``."""
        return [list(b) for b in self.blocks]

    @classmethod
    def from_list(cls, data: Any) -> "EnasCell":
        if not isinstance(data, list):
            raise InvalidSpecError(f"cell: expected a list of [input_a, op_a, input_b, op_b], "
                                   f"got {data!r:.120}")
        return cls(tuple(data))


def _as_block(j: int, block: Any) -> Block:
    where = f"cell.blocks[{j}]"
    if not isinstance(block, (tuple, list)) or len(block) != 4:
        raise InvalidSpecError(
            f"{where}: expected (input_a, op_a, input_b, op_b), got {block!r:.120}")
    fix = f"0 = cell k-2 output, 1 = cell k-1 output, 2+i = block i < {j} of this cell"
    values = []
    for field, value in zip(BLOCK_FIELDS, block):
        if field.startswith("input"):
            values.append(check_int(f"{where}.{field}", value, 0, j + 1, fix=fix))
        elif value not in OPS:
            raise InvalidSpecError(
                f"{where}.{field}: unknown op {value!r}; known ops: {', '.join(OPS)}")
        else:
            values.append(value)
    return Block(*values)


def default_reduction_layers(num_layers: int) -> tuple[int, ...]:
    """Layers ``floor(L/3)`` and ``floor(2L/3)`` (distinct ones): see the module docstring.

    Example:
        >>> default_reduction_layers(3), default_reduction_layers(11), default_reduction_layers(1)
        ((1, 2), (3, 7), (0,))
    """
    return tuple(sorted({num_layers // 3, 2 * num_layers // 3}))


class Calibration(NamedTuple):
    """How a cell input is brought to the cell's resolution and channels."""

    kind: str  # "none", "conv" (ReLU, 1x1 conv, BN) or "reduce" (ReLU, factorized reduction)
    in_shape: tuple[int, int, int]


class LayerPlan(NamedTuple):
    """The fixed frame of cell ``index``: what the cell does not decide.

    Attributes:
        index: the layer (cell) index.
        reduction: whether the ops reading the cell inputs have stride 2.
        channels: ``C``, the channels of every tensor in the cell and of its output.
        in_size: (height, width) the calibrated inputs have.
        out_size: (height, width) of the blocks and the output.
        calibrate: the :class:`Calibration` of input 0 (k-2) and input 1 (k-1); ``kind`` is
            ``"none"`` for an input no block reads.
        live: whether the cell's output reaches the classifier (else it is not built).
        sources: the layers whose outputs are inputs 0 and 1 (-1 is the stem).
    """

    index: int
    reduction: bool
    channels: int
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    calibrate: tuple[Calibration, Calibration]
    live: bool
    sources: tuple[int, int]

    @property
    def stride(self) -> int:
        return 2 if self.reduction else 1

    def op_stride(self, input_index: int) -> int:
        """The stride of an op reading ``input_index``: 2 on cell inputs of a reduction cell."""
        return self.stride if input_index < NUM_CELL_INPUTS else 1


def _ceil_half(n: int) -> int:
    return (n + 1) // 2


@dataclasses.dataclass(frozen=True)
class EnasNet(Spec):
    """A network stacking one ENAS cell ``num_layers`` times (see the module docstring).

    Args:
        input_shape: (height, width, channels) of the images.
        num_classes: classifier outputs.
        cell: the cell (an :class:`EnasCell` or its list of blocks).
        num_layers: cells stacked, reduction cells included.
        filters: channels of the stem and of the cells before the first reduction; each
            reduction cell doubles them.
        reduction_layers: the layers whose cells reduce; None for
            :func:`default_reduction_layers` (the JSON always records them).

    Example:
        >>> cell = EnasCell([(0, "sep3x3", 1, "identity"), (2, "avg3x3", 1, "sep5x5")])
        >>> net = EnasNet((28, 28, 1), 10, cell, num_layers=3, filters=16)
        >>> net.reduction_layers, [p.channels for p in net.layer_plan()]
        ((1, 2), [16, 32, 64])
        >>> final = net.with_layers(11)
        >>> final.reduction_layers, final.cell == net.cell
        ((3, 7), True)
        >>> EnasNet.from_json(final.to_json()) == final
        True
    """

    SPACE = "enas_cell"
    VERSION = 1

    input_shape: tuple[int, int, int]
    num_classes: int
    cell: EnasCell
    num_layers: int = 3
    filters: int = 20
    reduction_layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "input_shape", check_shape("input_shape", self.input_shape))
        check_int("num_classes", self.num_classes, 1)
        if not isinstance(self.cell, EnasCell):
            setattr_(self, "cell", EnasCell(self.cell))
        check_int("num_layers", self.num_layers, 1)
        check_int("filters", self.filters, 1)
        if self.reduction_layers is None:
            setattr_(self, "reduction_layers", default_reduction_layers(self.num_layers))
        else:
            setattr_(self, "reduction_layers", _check_reductions(self.reduction_layers,
                                                                 self.num_layers))

    @classmethod
    def _trusted(cls, frame: "EnasNet", cell: EnasCell) -> "EnasNet":
        """A net with ``frame``'s fields and a cell known to be valid (sampling)."""
        spec = object.__new__(cls)
        for field in ("input_shape", "num_classes", "num_layers", "filters", "reduction_layers"):
            object.__setattr__(spec, field, getattr(frame, field))
        object.__setattr__(spec, "cell", cell)
        return spec

    def with_cell(self, cell: EnasCell | Sequence[Any]) -> "EnasNet":
        """The same frame with another cell."""
        cell = cell if isinstance(cell, EnasCell) else EnasCell(cell)
        return EnasNet._trusted(self, cell)

    def with_layers(self, num_layers: int, reduction_layers: Sequence[int] | None = None,
                    filters: int | None = None) -> "EnasNet":
        """The same cell stacked ``num_layers`` deep, e.g. ``spec.with_layers(11)`` for the
        final model; reductions default to :func:`default_reduction_layers` for that depth."""
        return EnasNet(self.input_shape, self.num_classes, self.cell, num_layers,
                       self.filters if filters is None else filters,
                       None if reduction_layers is None else tuple(reduction_layers))

    def layer_plan(self) -> tuple[LayerPlan, ...]:
        """Each cell's frame (channels, sizes, calibrations, liveness), in layer order."""
        return _layer_plan(self.input_shape, self.num_layers, self.filters,
                           self.reduction_layers, self.cell.uses_input(0), self.cell.uses_input(1))

    def describe(self) -> str:
        """The network in words, e.g. ``"stem16 > 3 cells [0sep3x3+1identity] (reduce at
        1, 2) > out10"``."""
        return (f"stem{self.filters} > {self.num_layers} cells [{self.cell.key()}] "
                f"(reduce at {', '.join(map(str, self.reduction_layers)) or 'none'}) > "
                f"out{self.num_classes}")

    def key(self) -> str:
        """The cell's key, ``@``, then 8 hex digits hashing the frame."""
        frame = json.dumps([list(self.input_shape), self.num_classes, self.num_layers,
                            self.filters, list(self.reduction_layers)])
        return f"{self.cell.key()}@{hashlib.sha256(frame.encode()).hexdigest()[:8]}"

    def _payload(self) -> dict[str, Any]:
        return {"input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "cell": self.cell.to_list(), "num_layers": self.num_layers,
                "filters": self.filters, "reduction_layers": list(self.reduction_layers)}

    @classmethod
    def _from_payload(cls, payload: Mapping[str, Any]) -> "EnasNet":
        fields = {"input_shape", "num_classes", "cell", "num_layers", "filters", "reduction_layers"}
        unknown = set(payload) - fields
        if unknown:
            raise InvalidSpecError(f"enas_cell: unknown fields {sorted(unknown)}; known: "
                                   f"{sorted(fields)}")
        reductions = require(payload, "reduction_layers")
        if not isinstance(reductions, list):
            raise InvalidSpecError(f"reduction_layers: expected a list of layer indices, got "
                                   f"{reductions!r:.80}")
        return cls(require(payload, "input_shape"), require(payload, "num_classes"),
                   EnasCell.from_list(require(payload, "cell")), require(payload, "num_layers"),
                   require(payload, "filters"), tuple(reductions))


SPEC_TYPES.add(EnasNet.SPACE, EnasNet)


def _check_reductions(value: Any, num_layers: int) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InvalidSpecError(f"reduction_layers: expected a list of layer indices, got {value!r}")
    layers = tuple(check_int(f"reduction_layers[{i}]", v, 0, num_layers - 1,
                             fix=f"a layer index of the {num_layers} cells")
                   for i, v in enumerate(value))
    if list(layers) != sorted(set(layers)):
        raise InvalidSpecError(f"reduction_layers: {list(layers)} must be increasing with no "
                               f"repeats, e.g. {sorted(set(layers))}")
    return layers


@functools.lru_cache(maxsize=256)
def _layer_plan(input_shape: tuple[int, int, int], num_layers: int, filters: int,
                reductions: tuple[int, ...], uses_0: bool, uses_1: bool) -> tuple[LayerPlan, ...]:
    # Cached: a search evaluates thousands of cells over a handful of frames, and the plan
    # depends on the cell only through which of its two inputs it reads.
    h, w = input_shape[0], input_shape[1]
    # (size, channels) of each layer's output; index -1 (the stem) at the end of the list.
    outputs: dict[int, tuple[tuple[int, int], int]] = {-1: ((h, w), filters)}
    frames = []
    channels = filters
    for k in range(num_layers):
        reduction = k in reductions
        if reduction:
            channels *= 2
        src0, src1 = max(k - 2, -1), k - 1
        (size0, c0), (size1, c1) = outputs[src0], outputs[src1]
        if not uses_0:
            cal0 = Calibration("none", (*size0, c0))
        elif size0 != size1:
            cal0 = Calibration("reduce", (*size0, c0))
        else:
            cal0 = Calibration("conv" if c0 != channels else "none", (*size0, c0))
        cal1 = Calibration("conv" if uses_1 and c1 != channels else "none", (*size1, c1))
        out_size = (_ceil_half(size1[0]), _ceil_half(size1[1])) if reduction else size1
        outputs[k] = (out_size, channels)
        frames.append([k, reduction, channels, size1, out_size, (cal0, cal1), False, (src0, src1)])
    # Liveness, backwards from the classifier: a cell lives if a live cell reads it.
    live = [False] * num_layers
    live[-1] = True
    for k in range(num_layers - 2, -1, -1):
        live[k] = (uses_1 and live[k + 1]) or (uses_0 and k + 2 < num_layers and live[k + 2])
    for frame, alive in zip(frames, live):
        frame[6] = alive
    return tuple(LayerPlan(*f) for f in frames)


@SPACES.register("enas_cell")
class EnasCellSpace(Space):
    """ENAS micro cells stacked into a fixed frame (B-ENAS's search space).

    Args:
        input_shape: (height, width, channels) of the images.
        num_classes: classifier outputs.
        num_layers: cells stacked while searching (B-ENAS: 3; the final model takes
            ``spec.with_layers(11)``).
        filters: channels of the stem and first cells (doubled at each reduction).
        min_blocks, max_blocks: bounds on the blocks per cell (B-ENAS: 2 to 7).
        ops: the op names a block may choose, among :data:`OPS`; their order is their
            categorical code.
        reduction_layers: which cells reduce; None for :func:`default_reduction_layers`.

    The categorical view: first the block count (``B - min_blocks``), then for each of
    ``max_blocks`` blocks ``[input_a, op_a, input_b, op_b]``, where block ``i``'s inputs
    have ``i + 2`` choices and its ops ``len(ops)``. Decisions of blocks past ``B`` are 0 in
    :meth:`to_decisions` and ignored by :meth:`from_decisions` (a controller may sample them).

    Example:
        >>> space = EnasCellSpace((8, 8, 1), 10, max_blocks=3)
        >>> space.decision_sizes()
        [2, 2, 5, 2, 5, 3, 5, 3, 5, 4, 5, 4, 5]
        >>> spec = space.sample(np.random.default_rng(0))
        >>> space.from_decisions(space.to_decisions(spec)) == spec
        True
    """

    name = "enas_cell"

    def __init__(self, input_shape: Sequence[int], num_classes: int, *, num_layers: int = 3,
                 filters: int = 20, min_blocks: int = 2, max_blocks: int = 7,
                 ops: Sequence[str] | None = None,
                 reduction_layers: Sequence[int] | None = None):
        self.min_blocks = check_int("min_blocks", min_blocks, 1)
        self.max_blocks = check_int("max_blocks", max_blocks, self.min_blocks,
                                    fix="max_blocks must be >= min_blocks")
        ops = tuple(OPS) if ops is None else ops
        if isinstance(ops, (str, bytes)) or not isinstance(ops, Sequence) or not ops:
            raise ValueError(f"ops: expected a non-empty list of op names among {list(OPS)}, "
                             f"got {ops!r}")
        unknown = [op for op in ops if op not in OPS]
        if unknown or len(set(ops)) != len(ops):
            raise ValueError(f"ops: {list(ops)} must be distinct names among {list(OPS)}; "
                             f"{'unknown: ' + str(unknown) if unknown else 'remove the repeats'}")
        self.ops = tuple(ops)
        self._op_codes = {op: i for i, op in enumerate(self.ops)}
        # The frame, validated once (a placeholder cell; sampling swaps the cell in).
        self._frame = EnasNet(tuple(input_shape), num_classes,
                              EnasCell(((0, self.ops[0], 0, self.ops[0]),)), num_layers, filters,
                              None if reduction_layers is None else tuple(reduction_layers))
        self.input_shape = self._frame.input_shape
        self.num_classes = self._frame.num_classes
        self.num_layers = self._frame.num_layers
        self.filters = self._frame.filters
        self.reduction_layers = self._frame.reduction_layers
        self._explicit_reductions = reduction_layers is not None

    def get_config(self) -> dict[str, Any]:
        return {"input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "num_layers": self.num_layers, "filters": self.filters,
                "min_blocks": self.min_blocks, "max_blocks": self.max_blocks,
                "ops": list(self.ops),
                "reduction_layers": (list(self.reduction_layers) if self._explicit_reductions
                                     else None)}

    def layer_plan(self, cell: EnasCell | None = None) -> tuple[LayerPlan, ...]:
        """The frame of each layer for ``cell``; None: for a cell reading both of its inputs,
        i.e. every calibration any cell of the space may need (what a supernet allocates)."""
        uses = (True, True) if cell is None else (cell.uses_input(0), cell.uses_input(1))
        return _layer_plan(self.input_shape, self.num_layers, self.filters,
                           self.reduction_layers, *uses)

    def net(self, cell: EnasCell | Sequence[Any]) -> EnasNet:
        """The spec of this space with ``cell`` (validated against the space)."""
        spec = self._frame.with_cell(cell)
        self.validate(spec)
        return spec

    # --- sampling -----------------------------------------------------------------------

    def sample_cell(self, rng: np.random.Generator) -> EnasCell:
        """B uniform in [min_blocks, max_blocks], then every input and op uniform."""
        n_ops = len(self.ops)
        b = self.min_blocks + int(rng.integers(self.max_blocks - self.min_blocks + 1))
        u = rng.random(4 * b).tolist()
        blocks = tuple(Block(int(u[4 * j] * (j + 2)), self.ops[int(u[4 * j + 1] * n_ops)],
                             int(u[4 * j + 2] * (j + 2)), self.ops[int(u[4 * j + 3] * n_ops)])
                       for j in range(b))
        return EnasCell._trusted(blocks)

    def sample(self, rng: np.random.Generator) -> EnasNet:
        return EnasNet._trusted(self._frame, self.sample_cell(rng))

    # --- validation ---------------------------------------------------------------------

    def validate(self, spec: Spec) -> None:
        if not isinstance(spec, EnasNet):
            raise InvalidSpecError(f"spec: expected an EnasNet, got {type(spec).__name__}")
        for field in ("input_shape", "num_classes", "num_layers", "filters", "reduction_layers"):
            if getattr(spec, field) != getattr(self._frame, field):
                raise InvalidSpecError(
                    f"spec.{field}: {getattr(spec, field)!r} differs from the space's "
                    f"{getattr(self._frame, field)!r}; use space.net(spec.cell) for this space's "
                    "frame")
        self.validate_cell(spec.cell)

    def validate_cell(self, cell: EnasCell) -> None:
        """Raises InvalidSpecError naming the block and field unless ``cell`` fits the space."""
        check_int("cell.num_blocks", cell.num_blocks, self.min_blocks, self.max_blocks,
                  fix="the space's min_blocks..max_blocks")
        for j, block in enumerate(cell.blocks):
            for field in ("op_a", "op_b"):
                op = getattr(block, field)
                if op not in self._op_codes:
                    raise InvalidSpecError(
                        f"cell.blocks[{j}].{field}: op {op!r} is not one of the space's ops "
                        f"({', '.join(self.ops)})")

    # --- mutations ----------------------------------------------------------------------

    def mutations(self, spec: Spec, rng: np.random.Generator) -> list[Mutation]:
        """Every cell with one input or op changed; one more block (random, appended) when
        below ``max_blocks``; the last block removed when above ``min_blocks``."""
        self.validate(spec)
        assert isinstance(spec, EnasNet)
        blocks = spec.cell.blocks
        out = []
        for j, block in enumerate(blocks):
            for f, field in enumerate(BLOCK_FIELDS):
                choices = range(j + 2) if field.startswith("input") else self.ops
                for value in choices:
                    if value != block[f]:
                        new = block[:f] + (value,) + block[f + 1:]
                        cell = EnasCell._trusted(blocks[:j] + (Block(*new),) + blocks[j + 1:])
                        out.append(Mutation("set", f"blocks[{j}].{field}: {block[f]} -> {value}",
                                            EnasNet._trusted(spec, cell)))
        b = len(blocks)
        if b < self.max_blocks:
            u = rng.random(4).tolist()
            extra = Block(int(u[0] * (b + 2)), self.ops[int(u[1] * len(self.ops))],
                          int(u[2] * (b + 2)), self.ops[int(u[3] * len(self.ops))])
            out.append(Mutation("add_block", f"blocks[{b}] = {tuple(extra)}",
                                EnasNet._trusted(spec, EnasCell._trusted(blocks + (extra,)))))
        if b > self.min_blocks:
            out.append(Mutation("remove_block", f"blocks[{b - 1}]",
                                EnasNet._trusted(spec, EnasCell._trusted(blocks[:-1]))))
        return out

    # --- categorical view ---------------------------------------------------------------

    def decision_sizes(self) -> list[int]:
        n_ops = len(self.ops)
        sizes = [self.max_blocks - self.min_blocks + 1]
        for j in range(self.max_blocks):
            sizes += [j + 2, n_ops, j + 2, n_ops]
        return sizes

    def ordered_decisions(self) -> list[bool]:
        """The block count is ordered; inputs (which earlier node) and operations are not."""
        return [True] + [False] * (4 * self.max_blocks)

    def to_decisions(self, spec: Spec) -> list[int]:
        self.validate(spec)
        assert isinstance(spec, EnasNet)
        codes = self._op_codes
        out = [spec.cell.num_blocks - self.min_blocks]
        for b in spec.cell.blocks:
            out += [b.input_a, codes[b.op_a], b.input_b, codes[b.op_b]]
        out += [0] * (4 * (self.max_blocks - spec.cell.num_blocks))
        return out

    def from_decisions(self, decisions: Sequence[int]) -> EnasNet:
        sizes = self.decision_sizes()
        if len(decisions) != len(sizes):
            raise InvalidSpecError(
                f"decisions: expected {len(sizes)} values for this ENAS cell space (1 + 4 x "
                f"max_blocks={self.max_blocks}), got {len(decisions)}")
        d = [check_int(f"decisions[{i}]", v, 0, s - 1) for i, (v, s) in enumerate(zip(decisions, sizes))]
        b = self.min_blocks + d[0]
        blocks = tuple(Block(d[1 + 4 * j], self.ops[d[2 + 4 * j]], d[3 + 4 * j],
                             self.ops[d[4 + 4 * j]]) for j in range(b))
        return EnasNet._trusted(self._frame, EnasCell._trusted(blocks))
