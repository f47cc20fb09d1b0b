"""The TFLite Micro arena a graph needs, computed offline: a replay of its allocator.

:func:`replay_arena` takes a :class:`~keras_cnas.costs.tflite_graph.ModelView` (read from a
flatbuffer by :func:`keras_cnas.export.flatbuffer.read_model`, or derived from a spec by
:mod:`keras_cnas.costs.deployment`) and replays, allocation by allocation, what TFLite Micro's
``MicroInterpreter::AllocateTensors()`` does in the arena, then finds the smallest arena in
which every step fits. It agrees byte for byte with :func:`keras_cnas.export.micro_arena_bytes`
(which binary-searches the real interpreter) on the graphs keras_cnas builds; see
``benchmarks/memory_fidelity.py``.

**What TFLite Micro allocates.** One arena holds a *head* that grows up from its start and a
*tail* (persistent data) that grows down from its end:

* tail, in this order: the allocator objects themselves (the recording buffer allocator, the
  greedy memory planner and the recording ``MicroAllocator`` that the Python interpreter
  uses); the builtin-data allocator; ``SubgraphAllocations``; one ``TfLiteEvalTensor`` per
  tensor and one ``NodeAndRegistration`` per operator; each operator's parsed options
  (``TfLiteConvParams`` ...); each kernel's ``Init`` data (``OpDataConv`` ...); what kernels
  allocate in ``Prepare`` (per-channel output multipliers and shifts of convolutions and
  per-channel fully connected layers); scratch-buffer handles; and finally the input and
  output ``TfLiteTensor`` structs with their quantization parameters.
* head: while kernels prepare, the scratch-buffer requests (room for 12 more per operator)
  plus the temporary ``TfLiteTensor`` structs (and quantization parameters) that kernels
  look at, freed after each operator; while planning, the ``AllocationInfo`` array and the
  greedy planner's working memory (40 bytes per buffer); afterwards the memory plan: the
  greedy planner's placement of every non-constant tensor and scratch buffer, each rounded
  up to 16 bytes, by lifetime (largest first, first fit in the gaps).

Every allocation is aligned (8 for structs, 4 for small arrays, 16 for kernel data and
buffers), so the tail's padding depends on where the arena ends; the replay keeps exact
pointers, assuming a 16-byte-aligned arena start (``malloc`` on 64-bit Linux). The required
arena is the smallest size at which no step fails, and the transient phases (a kernel's
temporaries, the planner's working memory) often need more than the final head + tail that
``print_allocations()`` reports.

One quirk matters: TFLite Micro checks a kernel's persistent allocation in ``Prepare`` only
against the head, not against the temporaries the kernel still holds; when a per-channel
array lands on them, writing it corrupts their bookkeeping and ``AllocateTensors()`` fails,
unless it only hits bytes nothing reads again (the top 16 bytes of a fully connected
layer's temporaries: its output's zero-point array and the tail of its quantization
struct). The replay encodes exactly that.

The struct sizes are those of the pinned ``tflite-micro`` wheel on 64-bit Linux (built with
``USE_TFLM_COMPRESSION``, so kernel data carries two extra scratch indices); they and the
order of allocations were checked against the wheel's own allocation calls (traced with
gdb) and the replay against the interpreter on several hundred random int8 (float and
int8 I/O) and float32 models. Kernels are modelled for CONV_2D (grouped too),
DEPTHWISE_CONV_2D, FULLY_CONNECTED, MAX_POOL_2D, AVERAGE_POOL_2D, ADD, MEAN, RESHAPE,
SOFTMAX, QUANTIZE, DEQUANTIZE, and (for ENAS cells, read off the kernels' sources and
checked against the interpreter) RELU, PAD, STRIDED_SLICE, MUL and CONCATENATION
(:data:`SUPPORTED_OPS`) with float32 or int8 tensors.
Anything else raises :class:`UnsupportedOpError` rather than guess: other operators, int16
activations and int4 weights (their kernels allocate differently), variable tensors,
several subgraphs (control flow), compressed models and offline memory plans.

Pure Python: no TensorFlow, no TFLite Micro.

Example (from a flatbuffer: ``keras_cnas.export.estimate_arena_bytes``):
    >>> from keras_cnas.export.flatbuffer import read_model          # doctest: +SKIP
    >>> replay_arena(read_model(open("model.tflite", "rb").read())).arena_bytes  # doctest: +SKIP
    3144
"""

from __future__ import annotations

import dataclasses
import math
import operator
from typing import Callable, Iterable

from keras_cnas.errors import KerasCnasError
from keras_cnas.costs.tflite_graph import TYPE_SIZES, ModelView, Operator, Subgraph

#: ``MicroArenaBufferAlignment()``: kernel data and planned buffers are 16-byte aligned.
BUFFER_ALIGNMENT = 16

# sizeof / alignof of TFLite Micro's structs in the pinned wheel (x86-64, compression on).
_TFLITE_TENSOR = (64, 8)          # TfLiteTensor (TF_LITE_STATIC_MEMORY layout)
_AFFINE_QUANTIZATION = (24, 8)    # TfLiteAffineQuantization
_INT_ARRAY_ALIGN = 4              # TfLiteIntArray: 4 + 4 * n bytes
_EVAL_TENSOR = (24, 8)            # TfLiteEvalTensor
_NODE_AND_REGISTRATION = (64, 8)  # NodeAndRegistration
_SUBGRAPH_ALLOCATIONS = (24, 8)   # SubgraphAllocations (node/registration, tensors, compressed)
_BUILTIN_DATA_ALLOCATOR = (16, 8)  # MicroBuiltinDataAllocator
_SCRATCH_REQUEST = (16, 8)        # internal::ScratchBufferRequest
_SCRATCH_HANDLE = (8, 8)          # ScratchBufferHandle
_ALLOCATION_INFO = (32, 8)        # AllocationInfo
_SIZE_T = (8, 8)
_POINTER = 8
#: Bytes per buffer of GreedyMemoryPlanner's working arrays (requirements, sorted sizes and
#: ids, the offset-ordered list, offsets).
_PLANNER_BYTES_PER_BUFFER = 40
#: ScratchBufferRequest slots reserved in the head for the operator being prepared.
_MAX_SCRATCH_BUFFERS_PER_OP = 12
#: What the Python interpreter's ``RecordingMicroAllocator::Create`` puts at the very end
#: of the arena: RecordingSingleArenaBufferAllocator, GreedyMemoryPlanner and
#: RecordingMicroAllocator.
_ALLOCATOR_OBJECTS = (("RecordingSingleArenaBufferAllocator", 104, 8),
                      ("GreedyMemoryPlanner", 72, 8),
                      ("RecordingMicroAllocator", 272, 8))


class UnsupportedOpError(KerasCnasError, NotImplementedError):
    """The replay does not know what a kernel allocates (or the graph is out of its scope)."""


@dataclasses.dataclass(frozen=True)
class ArenaEstimate:
    """The replayed allocation of a model in TFLite Micro's arena.

    Attributes:
        arena_bytes: the smallest ``arena_size`` with which ``AllocateTensors()`` succeeds.
        plan_bytes: the memory plan (head) after allocation: all activations and scratch
            buffers as the greedy planner overlaps them.
        persistent_bytes: the tail at that arena size: interpreter structs, kernel data,
            quantization parameters.
        binding_step: the allocation that fails with one byte less, e.g.
            ``"reserve memory plan"`` or ``"prepare op 3 (CONV_2D): temp TfLiteTensor"``.
        num_planned_buffers: tensors and scratch buffers in the memory plan.
    """

    arena_bytes: int
    plan_bytes: int
    persistent_bytes: int
    binding_step: str
    num_planned_buffers: int


# --------------------------------------------------------------------------------------
# The allocation trace: a list of steps replayed against an arena of a given size.

_PERSIST, _TEMP, _RESET_TEMP, _RESIZE, _PLANNER = "persist", "temp", "reset", "resize", "planner"


# A step: (kind, size, align, what, slack). ``what`` names it for the report, as a string
# or as (op index, opcode, text), formatted only when it is reported (pricing thousands of
# specs a second leaves no time for f-strings per allocation); ``slack``: bytes of live
# temporaries a persistent allocation may overwrite harmlessly.
_Step = tuple


def _describe(what) -> str:
    if isinstance(what, str):
        return what
    if what[0] == "op":  # ("op", index, opcode, text): set up before Prepare
        return f"op {what[1]} ({what[2]}) {what[3]}"
    return f"prepare op {what[0]} ({what[1]}): {what[2]}"


class _Trace:
    def __init__(self) -> None:
        self.steps: list[_Step] = []

    def persist(self, size_align: tuple[int, int], what, slack: int = 0) -> None:
        self.steps.append((_PERSIST, size_align[0], size_align[1], what, slack))

    def temp(self, size_align: tuple[int, int], what) -> None:
        self.steps.append((_TEMP, size_align[0], size_align[1], what, 0))

    def reset_temp(self, what) -> None:
        self.steps.append((_RESET_TEMP, 0, 1, what, 0))

    def resize(self, size: int, align: int, what) -> None:
        self.steps.append((_RESIZE, size, align, what, 0))

    def planner(self, num_buffers: int, what) -> None:
        self.steps.append((_PLANNER, num_buffers, BUFFER_ALIGNMENT, what, 0))


def _int_array(n: int) -> tuple[int, int]:
    return 4 + 4 * n, _INT_ARRAY_ALIGN


def _replay(steps: list[_Step], arena_size: int) -> tuple[str | None, int]:
    """Replays ``steps`` in an arena of ``arena_size`` bytes starting at a 16-aligned address.

    Mirrors SingleArenaBufferAllocator: persistent allocations come down from the end,
    aligned down; temporaries go up from the head, aligned up; the resizable head buffer
    starts at the arena start. One deliberate difference: TFLite Micro checks a persistent
    allocation only against the head, so a kernel's Prepare may allocate (and then write)
    over the temporaries it is still using; that corrupts them and Prepare fails (or
    aborts), except where only bytes that are never read again are hit, which each step
    states as its ``slack``. Likewise a temporary or the planner's working memory that
    would start above the tail fails here (in C the ``size_t`` difference wraps). Failure
    is therefore monotone in the arena size. Returns (the failing step's description or
    None, the tail's size when the replay stopped).
    """
    head = temp = 0
    tail = arena_size
    for kind, size, align, what, slack in steps:
        if kind == _PERSIST:
            result = (tail - size) // align * align
            if result < head or result < temp - slack:
                return _describe(what), arena_size - tail
            tail = result
        elif kind == _TEMP:
            result = -(-temp // align) * align
            if tail - result < size:
                return _describe(what), arena_size - tail
            temp = result + size
        elif kind == _RESET_TEMP:
            temp = head
        elif kind == _RESIZE:
            if tail < size:  # the resizable buffer starts at the (aligned) arena start
                return _describe(what), arena_size - tail
            head = temp = size
        else:  # _PLANNER: AllocateTemp(GetAvailableMemory(16), 16), then Init and AddBuffer.
            available = tail // align * align - -(-temp // align) * align
            # GreedyMemoryPlanner::Init(int size): max_buffer_count_ = size / 40, buffers
            # are added while buffer_count_ < max_buffer_count_.
            if available < 0 or size > available // _PLANNER_BYTES_PER_BUFFER:
                return _describe(what), arena_size - tail
    return None, arena_size - tail


# --------------------------------------------------------------------------------------
# Kernels: parsed options, Init data and what Prepare allocates.

class _Prepare:
    """What a kernel's Prepare does, recorded into the trace."""

    def __init__(self, trace: _Trace, sg: Subgraph, op: Operator, scratch: list[tuple[int, int]]):
        self.trace, self.sg, self.op, self.scratch = trace, sg, op, scratch
        self.op_name = (op.index, op.opcode)
        self.requests = 0

    def tensor(self, index: int):
        return self.sg.tensors[index]

    def input(self, k: int):
        ins = self.op.inputs
        return self.sg.tensors[ins[k]] if k < len(ins) and ins[k] >= 0 else None

    def output(self, k: int):
        outs = self.op.outputs
        return self.sg.tensors[outs[k]] if k < len(outs) and outs[k] >= 0 else None

    def temp_input(self, k: int) -> None:
        self._temp(self.input(k))

    def temp_output(self, k: int) -> None:
        self._temp(self.output(k))

    def _temp(self, tensor) -> None:
        # MicroContext::AllocateTempTfLiteTensor: the struct, then (for a quantized tensor)
        # TfLiteAffineQuantization and the zero-point array, all in the temp section.
        if tensor is None:  # an omitted optional input: nothing is allocated
            return
        index, opcode = self.op_name
        self.trace.temp(_TFLITE_TENSOR, (index, opcode, "temp TfLiteTensor"))
        if tensor.num_scales > 0 and tensor.num_zero_points > 0:  # tensor.is_quantized
            self.trace.temp(_AFFINE_QUANTIZATION, (index, opcode, "temp quantization params"))
            self.trace.temp((4 + 4 * tensor.num_scales, _INT_ARRAY_ALIGN),
                            (index, opcode, "temp zero points"))

    def persist(self, nbytes: int, what: str, slack: int = 0) -> None:
        # context->AllocatePersistentBuffer: 16-byte aligned, from the tail.
        self.trace.persist((nbytes, BUFFER_ALIGNMENT), (*self.op_name, what), slack)

    def request_scratch(self, nbytes: int) -> None:
        self.requests += 1
        if self.requests > _MAX_SCRATCH_BUFFERS_PER_OP:
            raise UnsupportedOpError(
                f"{_describe((*self.op_name, 'more than'))} {_MAX_SCRATCH_BUFFERS_PER_OP} "
                "scratch buffers")
        self.scratch.append((nbytes, self.op.index))


@dataclasses.dataclass(frozen=True)
class _Kernel:
    """Arena behaviour of one builtin kernel (reference kernels of TFLite Micro)."""

    builtin_data: tuple[int, int] | None  # (sizeof, alignof) of the parsed options
    init_bytes: int | None                # sizeof the Init's persistent op data
    prepare: Callable[[_Prepare], None]


def _per_channel_arrays(p: _Prepare, channels: int, slack: int = 0) -> None:
    p.persist(4 * channels, "per-channel output multipliers", slack)
    p.persist(4 * channels, "per-channel output shifts", slack)


def _conv_like_prepare(channel_axis: int) -> Callable[[_Prepare], None]:
    """ConvPrepare / DepthwiseConvPrepare, then CalculateOpData{Conv,DepthwiseConv}: the
    same allocations; the output channels sit on axis 0 of a conv's weights (OHWI) and on
    axis 3 of a depthwise conv's (1HWO)."""

    def prepare(p: _Prepare) -> None:
        p.temp_output(0), p.temp_input(0), p.temp_input(1)
        _per_channel_arrays(p, p.input(1).shape[channel_axis])
        for k in (0, 1, 2):
            p.temp_input(k)
        p.temp_output(0)

    return prepare


def _fully_connected_prepare(p: _Prepare) -> None:
    p.temp_input(0), p.temp_input(1), p.temp_input(2), p.temp_output(0)
    data, weights = p.input(0), p.input(1)
    # CalculateOpDataFullyConnected: per-channel arrays for per-channel quantized weights.
    if data.dtype != "FLOAT32" and weights.is_quantized and weights.num_scales > 1:
        # The arrays are written right away, over whatever they overlap. If they reach into
        # the temporaries, the top ones are the output's zero-point array and the tail of
        # its TfLiteAffineQuantization (quantized_dimension, padding), which nothing reads
        # again; below them lies the zero_point pointer that DeallocateTempTfLiteTensor
        # follows, so an overlap reaching it corrupts the temp bookkeeping and Prepare fails.
        out = p.output(0)
        slack = _int_array(out.num_scales)[0] + _AFFINE_QUANTIZATION[0] - 16 \
            if out.is_quantized else 0
        _per_channel_arrays(p, weights.num_scales, slack)


def _inputs_then_output(p: _Prepare) -> None:
    for k in range(len(p.op.inputs)):
        p.temp_input(k)
    p.temp_output(0)


def _first_input_then_output(p: _Prepare) -> None:
    p.temp_input(0), p.temp_output(0)


def _mean_prepare(p: _Prepare) -> None:
    # PrepareMeanOrSumHelper, then PrepareSimple.
    data, out, axis = p.input(0), p.output(0), p.input(1)
    p.temp_input(0), p.temp_output(0), p.temp_input(1)
    if data.dtype == "INT8":
        p.request_scratch(4 * out.num_elements)  # int32 accumulators
    p.request_scratch(4 * len(data.shape))        # input iterator
    p.request_scratch(4 * axis.num_elements)      # resolved axes
    p.temp_input(0), p.temp_input(1)
    if data.dtype == "INT8":
        p.temp_output(0)


def _concatenation_prepare(p: _Prepare) -> None:
    # ConcatenationPrepare: the first input and the output, then each input again.
    p.temp_input(0), p.temp_output(0)
    for k in range(len(p.op.inputs)):
        p.temp_input(k)


_KERNELS: dict[str, _Kernel] = {
    "CONV_2D": _Kernel((28, 4), 80, _conv_like_prepare(0)),
    "DEPTHWISE_CONV_2D": _Kernel((28, 4), 80, _conv_like_prepare(3)),
    "FULLY_CONNECTED": _Kernel((32, 8), 72, _fully_connected_prepare),
    "MAX_POOL_2D": _Kernel((40, 4), 32, _first_input_then_output),
    "AVERAGE_POOL_2D": _Kernel((40, 4), 32, _first_input_then_output),
    "ADD": _Kernel((8, 4), 60, _inputs_then_output),
    "RESHAPE": _Kernel((36, 4), None, _first_input_then_output),
    "SOFTMAX": _Kernel((4, 4), 80, _first_input_then_output),
    "MEAN": _Kernel((1, 1), 44, _mean_prepare),
    "QUANTIZE": _Kernel(None, 32, _first_input_then_output),
    "DEQUANTIZE": _Kernel(None, 32, _first_input_then_output),
    # The ENAS cell's (costs/enas_graph.py): sizeof ReluOpData 28, PadParams + zero point
    # 56, StridedSliceParams 84, OpDataMul 36, concatenation's OpData 80 (its params and
    # ten compression scratch indices); TfLiteStridedSliceParams 24, TfLiteMulParams 4,
    # TfLiteConcatenationParams 8 (RELU and PAD parse no options).
    "RELU": _Kernel(None, 28, _inputs_then_output),
    "PAD": _Kernel(None, 56, _inputs_then_output),
    "STRIDED_SLICE": _Kernel((24, 4), 84, _inputs_then_output),
    "MUL": _Kernel((4, 4), 36, _inputs_then_output),
    "CONCATENATION": _Kernel((8, 4), 80, _concatenation_prepare),
}

#: Operators whose arena use the replay models exactly.
SUPPORTED_OPS = tuple(sorted(_KERNELS))


# --------------------------------------------------------------------------------------
# The greedy memory planner.

_FIRST, _THIRD = operator.itemgetter(0), operator.itemgetter(2)


def greedy_plan(buffers: Iterable[tuple[int, int, int]]) -> tuple[list[int], int]:
    """TFLite Micro's GreedyMemoryPlanner: offsets of ``(size, first_used, last_used)``
    buffers (in the order they are added) and the arena bytes the plan spans.

    Buffers are placed largest first (ties: the later-added first, as the planner fills its
    sort array from the end and bubble-sorts stably), each at the lowest offset where it
    fits between the already placed buffers that are alive at the same time.

    Example:
        >>> greedy_plan([(32, 0, 1), (16, 1, 2), (32, 2, 3)])
        ([0, 32, 0], 48)
    """
    reqs = list(buffers)
    n = len(reqs)
    if n == 0:
        return [], 0
    # Largest first, ties the later-added first: (size, index) pairs in descending order.
    order = sorted(zip(map(_FIRST, reqs), range(n)), reverse=True)
    offsets = [-1] * n
    top = 0
    # The placed buffers alive at each time (slot t + 1: a never-used tensor has time -1;
    # lifetimes are short, so a buffer conflicts with few others); a buffer meets those
    # alive during its lifetime in offset order, ties in the order they were placed, as
    # the planner's offset-ordered list does. One alive at several of those times is met
    # again at once and changes nothing.
    alive: list[list[tuple[int, int, int]]] = [[] for _ in range(max(map(_THIRD, reqs)) + 3)]
    for rank, (size, i) in enumerate(order):
        _, first, last = reqs[i]
        chain = last == first + 1  # most activations: made by one operator, read by the next
        if chain:
            near = alive[first + 1] + alive[last + 1]
        else:
            near = [entry for t in range(first + 1, last + 2) for entry in alive[t]]
        candidate = 0
        if near:
            near.sort()
            for offset, _, end in near:
                if offset - candidate >= size:
                    break
                if end > candidate:
                    candidate = end
        offsets[i] = candidate
        end = candidate + size
        if end > top:
            top = end
        entry = (candidate, rank, end)
        if chain:
            alive[first + 1].append(entry)
            alive[last + 1].append(entry)
        else:
            for t in range(first + 1, last + 2):
                alive[t].append(entry)
    return offsets, top


def _align_up(n: int, a: int) -> int:
    return -(-n // a) * a


# --------------------------------------------------------------------------------------
# The replay of MicroInterpreter::AllocateTensors().

def _check_supported(model: ModelView) -> Subgraph:
    if len(model.subgraphs) != 1:
        raise UnsupportedOpError(
            f"the arena replay handles one subgraph; this model has {len(model.subgraphs)} "
            "(control flow: IF / WHILE / CALL_ONCE)")
    if any(name in ("COMPRESSION_METADATA", "OfflineMemoryAllocation") for name in model.metadata):
        raise UnsupportedOpError(
            "the arena replay does not model TFLite Micro compression or offline-planned "
            "memory (metadata present); measure with micro_arena_bytes instead")
    sg = model.main
    unknown = sorted({op.opcode for op in sg.operators if op.opcode not in _KERNELS})
    if unknown:
        raise UnsupportedOpError(
            f"the arena replay does not know the TFLite Micro kernel data of {', '.join(unknown)}"
            f"; it models {', '.join(SUPPORTED_OPS)}. Measure with micro_arena_bytes instead")
    for t in sg.tensors:
        if (t.dtype == "INT16" and not t.is_constant) or (t.dtype == "INT4" and t.is_constant):
            raise UnsupportedOpError(
                f"tensor {t.index} ({t.name}) is {t.dtype}: the arena replay is verified for "
                "float32 and int8 graphs (kernels allocate differently for int16 activations "
                "and int4 weights); measure with micro_arena_bytes instead")
        if t.dtype not in TYPE_SIZES:
            raise UnsupportedOpError(f"tensor {t.index} ({t.name}): TFLite Micro has no "
                                     f"{t.dtype} tensors")
        if any(d < 0 for d in t.shape):
            raise ValueError(f"tensor {t.index} ({t.name}) has a dynamic shape {list(t.shape)}; "
                             "TFLite Micro needs static shapes (convert with a fixed batch size)")
        if t.is_variable:
            raise UnsupportedOpError(f"tensor {t.index} ({t.name}) is a variable tensor; the "
                                     "arena replay does not model variables")
    return sg


def _trace(model: ModelView) -> tuple[list[_Step], int, int]:
    """The allocation steps of AllocateTensors(); returns (steps, plan bytes, #buffers)."""
    sg = _check_supported(model)
    tr = _Trace()
    ops = sg.operators
    # RecordingMicroAllocator::Create.
    for name, size, align in _ALLOCATOR_OBJECTS:
        tr.persist((size, align), f"create {name}")
    # MicroAllocator::StartModelAllocation.
    tr.persist(_BUILTIN_DATA_ALLOCATOR, "create MicroBuiltinDataAllocator")
    tr.resize(_SCRATCH_REQUEST[0] * _MAX_SCRATCH_BUFFERS_PER_OP, _SCRATCH_REQUEST[1],
              "reserve scratch buffer requests")
    tr.persist(_SUBGRAPH_ALLOCATIONS, "SubgraphAllocations")
    tr.persist((_EVAL_TENSOR[0] * len(sg.tensors), _EVAL_TENSOR[1]), "TfLiteEvalTensor array")
    tr.persist((_NODE_AND_REGISTRATION[0] * len(ops), _NODE_AND_REGISTRATION[1]),
               "NodeAndRegistration array")
    scratch: list[tuple[int, int]] = []
    # PrepareNodeAndRegistrationDataFromFlatbuffer: parsed builtin options.
    for op in ops:
        kernel = _KERNELS[op.opcode]
        if kernel.builtin_data is not None:
            tr.persist(kernel.builtin_data, ("op", op.index, op.opcode, "builtin options"))
    # InitSubgraphs.
    for op in ops:
        kernel = _KERNELS[op.opcode]
        if kernel.init_bytes is not None:
            tr.persist((kernel.init_bytes, BUFFER_ALIGNMENT),
                       ("op", op.index, op.opcode, "init data"))
    # PrepareSubgraphs, each followed by FinishPrepareNodeAllocations.
    for op in ops:
        _KERNELS[op.opcode].prepare(_Prepare(tr, sg, op, scratch))
        tr.reset_temp((op.index, op.opcode, "reset temporaries"))
        tr.resize(_SCRATCH_REQUEST[0] * (len(scratch) + _MAX_SCRATCH_BUFFERS_PER_OP),
                  _SCRATCH_REQUEST[1], (op.index, op.opcode, "scratch requests"))
    # FinishModelAllocation: scratch handles, then CommitStaticMemoryPlan.
    if scratch:
        tr.persist((_SCRATCH_HANDLE[0] * len(scratch), _SCRATCH_HANDLE[1]), "scratch buffer handles")
    tr.temp((_SIZE_T[0] * len(model.subgraphs), _SIZE_T[1]), "planning: subgraph offsets")
    tr.temp((_ALLOCATION_INFO[0] * (len(sg.tensors) + len(scratch)), _ALLOCATION_INFO[1]),
            "planning: AllocationInfo array")
    buffers = _planned_buffers(sg, scratch)
    tr.planner(len(buffers), "planning: greedy planner working memory")
    _, plan_bytes = greedy_plan(buffers)
    tr.reset_temp("planning: free temporaries")
    tr.resize(0, 1, "planning: release scratch requests")
    tr.resize(plan_bytes, BUFFER_ALIGNMENT, "reserve memory plan")
    # MicroInterpreter::AllocateTensors: persistent TfLiteTensors of inputs and outputs.
    for kind, indices in (("input", sg.inputs), ("output", sg.outputs)):
        tr.persist((_POINTER * len(indices), BUFFER_ALIGNMENT), f"{kind} TfLiteTensor pointers")
        for k in indices:
            t = sg.tensors[k]
            tr.persist(_TFLITE_TENSOR, f"{kind} TfLiteTensor")
            if t.is_quantized:
                tr.persist(_AFFINE_QUANTIZATION, f"{kind} quantization params")
                tr.persist(_int_array(t.num_scales), f"{kind} zero points")
    return tr.steps, plan_bytes, len(buffers)


#: The scratch-request room in the head while kernels prepare (before any request).
_SCRATCH_ROOM = _SCRATCH_REQUEST[0] * _MAX_SCRATCH_BUFFERS_PER_OP
#: The tail's allocations before the per-tensor and per-operator arrays (see :func:`_trace`).
_FIRST_PERSISTS = (*((size, align) for _, size, align in _ALLOCATOR_OBJECTS),
                   _BUILTIN_DATA_ALLOCATOR, _SUBGRAPH_ALLOCATIONS)


def _derived_arena_bytes(sg: Subgraph) -> int:
    """``_smallest_arena(_trace(model)[0])`` for a graph :mod:`keras_cnas.costs.deployment`
    derived, in one pass that records no steps (equal on random specs; tested).

    It follows :func:`_smallest_arena`'s reasoning with what such a graph guarantees:

    * Every tail allocation before the first Init data is 1-, 4- or 8-aligned and only has
      to stay above the 192-byte scratch-request room, and the first Init data (16-aligned)
      has to as well; the tail only falls, so those earlier bounds are implied and these
      allocations only move the tail. The first of them (8-aligned) sends arena sizes
      ``0..7`` mod 16 to one tail and ``8..15`` to another; in each class the smallest
      residue needs the least arena, so residues 0 and 8 are followed.
    * From the first Init data on, every residue's tail is a multiple of 16 and moves
      alike: ``need`` is the largest deficit (bound - tail) relative to the tail there, and
      the arena for residue ``r`` is ``r + align16(need) - tail_r``.
    * Each kernel's Prepare is one memoised segment (:func:`_prepare_segment`).
    """
    tensors, ops = sg.tensors, sg.operators
    lo, hi = 0, 8  # the tails for arena sizes 0 and 8 (q = 0)
    for size, align in (*_FIRST_PERSISTS, (_EVAL_TENSOR[0] * len(tensors), _EVAL_TENSOR[1]),
                        (_NODE_AND_REGISTRATION[0] * len(ops), _NODE_AND_REGISTRATION[1])):
        lo, hi = (lo - size) // align * align, (hi - size) // align * align
    first_init = None
    inits = 0  # where the Init data after the first end (<= 0, a multiple of 16)
    tail = 0   # relative to the tail after every Init data (all residues move alike)
    head = _SCRATCH_ROOM
    need = head
    scratch: list[tuple[int, int]] = []
    prepared, quantization, sized = _PREPARED, _QUANTIZATION, _SIZED_PREPARES
    for op in ops:  # parsed options, Init data, and PrepareSubgraphs
        # _prepare_segment's memo, looked up inline (once per operator of every spec):
        # the opcode, the sizes Prepare reads, each operand's type and quantization.
        opcode = op[1]
        key = (opcode, _prepare_sizes(sg, op) if opcode in sized else (),
               *[quantization(tensors[k]) for k in op[4] + op[5]])
        hit = prepared.get(key)
        option, init, before, persists, requests, drop, reach = (
            hit if hit is not None else _prepare_segment(sg, op, key))
        if option is not None:
            size, align = option
            lo, hi = (lo - size) // align * align, (hi - size) // align * align
        if init is not None:
            if first_init is None:
                first_init = init
            else:
                inits -= -(-init // BUFFER_ALIGNMENT) * BUFFER_ALIGNMENT
        # Prepare: temporaries above the head, allocations off the tail.
        if drop is not None and not tail & 15:  # folded (_folded): no loop
            if reach is not None and head - tail + reach > need:
                need = head - tail + reach
            tail -= drop
        else:
            if before >= 0 and head + before - tail > need:
                need = head + before - tail
            for size, align, at_least, after in persists:
                tail = (tail - size) // align * align
                bound = head + (at_least if at_least > after else after)
                if bound - tail > need:
                    need = bound - tail
        if requests:
            scratch += [(nbytes, op.index) for nbytes in requests]
            head = _SCRATCH_REQUEST[0] * (len(scratch) + _MAX_SCRATCH_BUFFERS_PER_OP)
            if head - tail > need:
                need = head - tail
    lo = (lo - first_init) // BUFFER_ALIGNMENT * BUFFER_ALIGNMENT
    hi = (hi - first_init) // BUFFER_ALIGNMENT * BUFFER_ALIGNMENT
    tail += inits
    need -= inits
    if scratch:
        tail = (tail - _SCRATCH_HANDLE[0] * len(scratch)) // _SCRATCH_HANDLE[1] * _SCRATCH_HANDLE[1]
    # Planning: subgraph offsets and AllocationInfo (8-aligned above the 16-aligned head),
    # then the planner's working memory.
    temp = head + _SIZE_T[0] + _ALLOCATION_INFO[0] * (len(tensors) + len(scratch))
    buffers = _planned_buffers(sg, scratch)
    planner = _align_up(_align_up(temp, BUFFER_ALIGNMENT) + _PLANNER_BYTES_PER_BUFFER * len(buffers),
                        BUFFER_ALIGNMENT)
    need = max(need, temp - tail, planner - tail)
    plan = greedy_plan(buffers)[1]
    # The input and output TfLiteTensors, all bounded by the plan.
    for indices in (sg.inputs, sg.outputs):
        tail = (tail - _POINTER * len(indices)) // BUFFER_ALIGNMENT * BUFFER_ALIGNMENT
        for k in indices:
            t = tensors[k]
            tail = (tail - _TFLITE_TENSOR[0]) // _TFLITE_TENSOR[1] * _TFLITE_TENSOR[1]
            if t.num_scales > 0 and t.num_zero_points > 0:
                tail = (tail - _AFFINE_QUANTIZATION[0]) // 8 * 8
                tail = (tail - 4 - 4 * t.num_scales) // _INT_ARRAY_ALIGN * _INT_ARRAY_ALIGN
    need = _align_up(max(need, plan - tail), BUFFER_ALIGNMENT)
    return min(need - lo, 8 + need - hi)


_PREPARED: dict[tuple, tuple] = {}
#: The kernels whose Prepare allocates by operand sizes (:func:`_prepare_sizes`).
_SIZED_PREPARES = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "MEAN"})
_QUANTIZATION = operator.itemgetter(2, 6, 7)  # a Tensor's dtype, num_scales, num_zero_points


def _prepare_segment(sg: Subgraph, op: Operator, key: tuple) -> tuple:
    """An operator's parsed options (sizeof, alignof) and Init data bytes (None: none), its
    kernel's Prepare condensed (:func:`_condensed`) and its scratch requests, memoised by
    ``key``: what they depend on, the opcode, the sizes the kernel reads
    (:func:`_prepare_sizes`) and the type and quantization of every operand (derived
    graphs omit no input); :func:`_derived_arena_bytes` builds it and calls this on a miss."""
    trace, scratch = _Trace(), []
    kernel = _KERNELS[op.opcode]
    kernel.prepare(_Prepare(trace, sg, op, scratch))
    before, persists = _condensed(trace.steps)
    hit = (kernel.builtin_data, kernel.init_bytes, before, persists,
           [nbytes for nbytes, _ in scratch], *_folded(before, persists))
    if len(_PREPARED) < 1 << 16:
        _PREPARED[key] = hit
    return hit


def _prepare_sizes(sg: Subgraph, op: Operator) -> tuple[int, ...]:
    """The operand sizes a kernel's Prepare allocates by (see the ``_KERNELS`` prepares):
    a convolution's output channels (per-channel arrays), MEAN's output elements, input
    rank and axes (scratch buffers); nothing for the others."""
    opcode = op.opcode
    if opcode == "CONV_2D":
        return (sg.tensors[op.inputs[1]].shape[0],)
    if opcode == "DEPTHWISE_CONV_2D":
        return (sg.tensors[op.inputs[1]].shape[3],)
    if opcode == "MEAN":
        data, axis = sg.tensors[op.inputs[0]], sg.tensors[op.inputs[1]]
        return (sg.tensors[op.outputs[0]].num_elements, len(data.shape), axis.num_elements)
    return ()


def _condensed(steps: list[_Step]) -> tuple[int, tuple[tuple[int, int, int, int], ...]]:
    """Temporaries and persistent allocations of one Prepare, as :func:`_derived_arena_bytes`
    needs them. Prepare starts with the temporaries at the head (every operator follows a
    reset) and temporaries align to at most 8 while the head is 16-aligned, so their
    offsets relative to the head are the same wherever the head is: the highest temporary
    end before the first persistent allocation and, per persistent allocation, its
    (size, align), the lowest tail it must stay above and the highest temporary end after
    it (relative to the head; -1: none)."""
    temp = 0
    before = -1
    persists: list[list[int]] = []
    for kind, size, align, _, slack in steps:
        if kind == _TEMP:
            temp = -(-temp // align) * align + size
            if persists:
                persists[-1][3] = max(persists[-1][3], temp)
            else:
                before = max(before, temp)
        else:  # _PERSIST (Prepare records nothing else)
            persists.append([size, align, max(0, temp - slack), -1])
    return before, tuple(tuple(p) for p in persists)


def _folded(before: int, persists: tuple[tuple[int, int, int, int], ...]
            ) -> tuple[int | None, int | None]:
    """A Prepare's persistent allocations folded into two numbers, for a tail that is a
    multiple of 16 where it starts: (how far they move the tail down, the largest bound
    they set relative to ``tail - head`` there, None: none); (None, None) if one is not
    16-aligned (then the tail's residue matters and the steps are replayed one by one)."""
    if any(align != BUFFER_ALIGNMENT for _, align, _, _ in persists):
        return None, None
    drop = 0
    reach = before if before >= 0 else None
    for size, _, at_least, after in persists:
        drop += _align_up(size, BUFFER_ALIGNMENT)
        bound = (at_least if at_least > after else after) + drop
        if reach is None or bound > reach:
            reach = bound
    return drop, reach


def _planned_buffers(sg: Subgraph, scratch: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """(aligned size, first, last) of each buffer, in the order the planner receives them."""
    tensors = sg.tensors
    # One slot more than tensors: an omitted optional input (-1) lands in it, which saves
    # a test per operand (pricing runs this for thousands of graphs a second).
    first = [-1] * (len(tensors) + 1)
    last = first.copy()
    for k in sg.inputs:
        if first[k] == -1:
            first[k] = 0
        last[k] = 0
    scope = 0
    for op in sg.operators:
        scope += 1
        for k in op.outputs:
            if first[k] == -1:
                first[k] = scope
            last[k] = scope
        for k in op.inputs:
            last[k] = scope
    for k in sg.outputs:
        if first[k] == -1:
            first[k] = scope
        last[k] = scope
    buffers = []
    prod, sizes = math.prod, TYPE_SIZES
    for index, _, dtype, shape, constant, variable, _, _, _, _ in tensors:
        if not constant and not variable:
            nbytes = prod(shape) * sizes[dtype]
            if nbytes:
                buffers.append(((nbytes + 15) & -BUFFER_ALIGNMENT, first[index], last[index]))
    if scratch:
        # A scratch buffer lives during its operator's scope (its position + 1).
        scopes = {op.index: scope for scope, op in enumerate(sg.operators, 1)}
        for nbytes, op_index in scratch:
            scope = scopes[op_index]
            buffers.append((_align_up(nbytes, BUFFER_ALIGNMENT), scope, scope))
    return buffers


def replay_arena(model: ModelView) -> ArenaEstimate:
    """The replayed TFLite Micro allocation of a graph (see the module docstring).

    Args:
        model: the graph, read from a flatbuffer or derived from a spec.

    Raises:
        UnsupportedOpError: an operator (or feature) whose kernel data the replay does not
            model; the message lists the supported operators.
        ValueError: a tensor with a dynamic shape.
    """
    steps, plan_bytes, num_buffers = _trace(model)
    hi = _smallest_arena(steps)
    binding, _ = _replay(steps, hi - 1)
    _, tail = _replay(steps, hi)
    return ArenaEstimate(hi, plan_bytes, tail, binding or "", num_buffers)


def replay_arena_bytes(model: ModelView, *, checked: bool = False) -> int:
    """Just the arena size of :func:`replay_arena` (skips the diagnostics).

    ``checked=True`` skips the scope checks for a graph known to be in scope (one
    :mod:`keras_cnas.costs.deployment` derived: supported ops, static int8 / float32 shapes,
    no omitted inputs) and solves it in one pass (:func:`_derived_arena_bytes`).
    """
    if checked:
        return _derived_arena_bytes(model.main)
    return _smallest_arena(_trace(model)[0])


def _smallest_arena(steps: list[_Step]) -> int:
    """The smallest arena size in which no step fails, solved rather than searched.

    Every alignment divides 16 and the arena starts 16-aligned, so growing the arena by 16
    bytes moves every tail pointer up by exactly 16 while the head and the temporaries stay
    put (as long as nothing fails, they never depend on the arena size). Every check of
    :func:`_replay` is a lower bound on the tail at that moment, so one pass turns the
    steps into bounds (on the arena size before the first persistent allocation, then on
    the tail after each one) and, for each residue ``r`` of the size mod 16, the smallest
    ``r + 16 q`` meeting all of them follows by arithmetic; the answer is the least over
    the 16 residues. Equal to binary-searching :func:`_replay` (tested), an order of
    magnitude faster.
    """
    persists: list[list[int]] = []  # [size, align, bound on the result, bound until the next]
    first = 0  # bound on the arena size itself, before the first persistent allocation
    head = temp = 0
    need = 0
    for kind, size, align, _, slack in steps:
        if kind == _PERSIST:
            if persists:
                persists[-1][3] = need
            else:
                first = need
            need = 0
            persists.append([size, align, max(head, temp - slack), 0])
        elif kind == _TEMP:
            start = -(-temp // align) * align
            temp = start + size
            need = max(need, temp)
        elif kind == _RESET_TEMP:
            temp = head
        elif kind == _RESIZE:
            need = max(need, size)
            head = temp = size
        else:  # the planner: tail // 16 * 16 >= aligned temp + 40 per buffer
            bound = -(-temp // BUFFER_ALIGNMENT) * BUFFER_ALIGNMENT + _PLANNER_BYTES_PER_BUFFER * size
            need = max(need, -(-bound // BUFFER_ALIGNMENT) * BUFFER_ALIGNMENT)
    if persists:
        persists[-1][3] = need
    else:
        first = max(first, need)
    # After the first 16-aligned allocation every residue's tail is a multiple of 16 and
    # the rest evolves alike for all of them: price that suffix once, as the largest
    # deficit (bound - tail) relative to a tail of 0 where it starts.
    split = next((k for k, p in enumerate(persists) if p[1] == BUFFER_ALIGNMENT), len(persists))
    suffix_deficit, tail = None, 0
    for size, align, at_least, until_next in persists[split + 1:]:
        tail = (tail - size) // align * align
        deficit = (at_least if at_least > until_next else until_next) - tail
        if suffix_deficit is None or deficit > suffix_deficit:
            suffix_deficit = deficit
    best = None
    for r, q, tail in _prefix_residues(first, persists[:split + 1]):
        if suffix_deficit is not None and suffix_deficit - tail > BUFFER_ALIGNMENT * q:
            q = -(-(suffix_deficit - tail) // BUFFER_ALIGNMENT)
        arena = r + BUFFER_ALIGNMENT * q
        if best is None or arena < best:
            best = arena
    return best


def _prefix_residues(first: int, prefix: list) -> list[tuple[int, int, int]]:
    """Per residue ``r`` of the arena size mod 16: (r, the least ``q`` the bounds up to
    the first 16-aligned allocation need, the tail after it for ``q = 0``).

    Residues whose tails coincide after an allocation share everything after it (an
    8-aligned allocation merges 8 residues into one), so they are followed as one group:
    each keeps the largest deficit (bound - tail) it met before the merge, the group the
    largest one since.
    """
    # groups: tail -> [(r, deficit before joining), largest deficit since]
    groups: dict[int, list] = {r: [[(r, None)], None] for r in range(BUFFER_ALIGNMENT)}
    for size, align, at_least, until_next in prefix:
        bound = at_least if at_least > until_next else until_next
        merged: dict[int, list] = {}
        for tail, (members, since) in groups.items():
            tail = (tail - size) // align * align
            deficit = bound - tail
            since = deficit if since is None or deficit > since else since
            other = merged.get(tail)
            if other is None:
                merged[tail] = [members, since]
            else:  # the same tail from now on: fold each side's past into its members
                other[0] = _fold(other[0], other[1]) + _fold(members, since)
                other[1] = None
        groups = merged
    out = []
    for tail, (members, since) in groups.items():
        for r, deficit in _fold(members, since):
            q = max(0, -(-(first - r) // BUFFER_ALIGNMENT))
            if deficit is not None and deficit > BUFFER_ALIGNMENT * q:
                q = -(-deficit // BUFFER_ALIGNMENT)
            out.append((r, q, tail))
    return out


def _fold(members: list, since: int | None) -> list:
    if since is None:
        return members
    return [(r, since if d is None or since > d else d) for r, d in members]


def _smallest_arena_by_search(steps: list[_Step]) -> int:
    """The same by binary search over :func:`_replay` (failure is monotone in the size);
    kept to check :func:`_smallest_arena` against."""
    lo, hi = 0, 1024
    while _replay(steps, hi)[0] is not None:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _replay(steps, mid)[0] is None:
            hi = mid
        else:
            lo = mid
    return hi


__all__ = ["ArenaEstimate", "BUFFER_ALIGNMENT", "SUPPORTED_OPS", "UnsupportedOpError",
           "greedy_plan", "replay_arena", "replay_arena_bytes"]
