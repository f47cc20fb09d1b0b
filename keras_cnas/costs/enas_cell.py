"""Costs of an ENAS cell network (:class:`~keras_cnas.spaces.enas_cell.EnasNet`).

The network is walked in the order ``keras_cnas.builders.enas_cell`` builds it: stem, then
for each live cell the calibrations, each block's two ops and its add, the concat of the
unused blocks and the 1x1 output conv; then pooling and the classifier. Params, MAdds and
FLOPs follow :class:`~keras_cnas.costs.tally.CostTally` (a separable conv is a depthwise
conv then a 1x1 conv; a factorized reduction is two stride-2 1x1 convs; pools, adds,
concats, BatchNorm and ReLU do no MAdds).

Activations: the cell is a DAG, so instead of the tally's single "held" tensor the peak is
computed from tensor lifetimes. Every op that makes a new tensor (conv, depthwise, pool,
the pixel shift of a factorized reduction, add, concat, pooling, dense) is recorded with
its inputs; BatchNorm and ReLU work in place. A tensor is alive from the op that makes it
to the last op that reads it (a cell's output until the calibration of the cell two layers
on). ``peak_activation_bytes`` is ``B`` times the largest total alive during any op;
``memory_bytes`` is eq. 6 with the largest single tensor an op reads or writes.

Pure Python arithmetic: an estimate takes well under a millisecond (the B-ENAS controller
prices every cell it samples).
"""

from __future__ import annotations

from keras_cnas.costs.report import CostReport
from keras_cnas.costs.tally import CostTally
from keras_cnas.spaces.enas_cell import OPS, EnasNet

Shape = tuple[int, int, int]


class _Activations:
    """Records which op makes and reads each tensor, then sweeps their lifetimes."""

    def __init__(self, input_shape: Shape):
        self.sizes = [_size(input_shape)]   # tensor id -> elements; id 0 is the network input
        self.made_at = [-1]                 # tensor id -> index of the op that made it
        self.last_read = [-1]               # tensor id -> index of the last op reading it
        self.ops = 0
        self.max_tensor = self.sizes[0]

    def op(self, inputs: list[int], shape: Shape | int) -> int:
        """Records an op reading tensors ``inputs`` and making one of ``shape``; its id."""
        size = shape if isinstance(shape, int) else _size(shape)
        for t in inputs:
            self.last_read[t] = self.ops
            self.max_tensor = max(self.max_tensor, self.sizes[t])
        self.max_tensor = max(self.max_tensor, size)
        self.sizes.append(size)
        self.made_at.append(self.ops)
        self.last_read.append(self.ops)
        self.ops += 1
        return len(self.sizes) - 1

    def peak(self) -> int:
        # Difference array over op indices: a tensor adds its size from the op that makes it
        # (the input: from op 0) through the last op that reads it.
        delta = [0] * (self.ops + 1)
        for size, made, last in zip(self.sizes, self.made_at, self.last_read):
            delta[max(made, 0)] += size
            delta[max(last, made, 0) + 1] -= size
        peak = alive = 0
        for change in delta[:-1]:
            alive += change
            peak = max(peak, alive)
        return peak


class _Walker:
    """Shapes, weights (via CostTally) and tensor lifetimes of one network."""

    def __init__(self, spec: EnasNet):
        self.tally = CostTally(spec.input_shape)
        self.acts = _Activations(spec.input_shape)

    def conv(self, t: int, shape: Shape, filters: int, kernel: int = 1, stride: int = 1,
             bn: bool = True) -> tuple[int, Shape]:
        out = self.tally.conv(shape, filters, (kernel, kernel), stride)
        if bn:
            self.tally.batch_norm(out)
        return self.acts.op([t], out), out

    def sep_conv(self, t: int, shape: Shape, kernel: int, stride: int) -> tuple[int, Shape]:
        mid = self.tally.depthwise(shape, (kernel, kernel), stride)
        t = self.acts.op([t], mid)
        return self.conv(t, mid, shape[2], 1)

    def pool(self, t: int, shape: Shape, stride: int) -> tuple[int, Shape]:
        out = (-(-shape[0] // stride), -(-shape[1] // stride), shape[2])
        return self.acts.op([t], out), out

    def factorized_reduce(self, t: int, shape: Shape, filters: int) -> tuple[int, Shape]:
        half = filters // 2
        p1, out = self.conv(t, shape, half, 1, 2, bn=False)
        shifted = self.acts.op([t], shape)  # pad bottom/right, crop top/left
        p2, _ = self.conv(shifted, shape, half, 1, 2, bn=False)
        out = (out[0], out[1], filters)
        self.tally.batch_norm(out)
        return self.acts.op([p1, p2], out), out


def estimate_enas_cell(spec: EnasNet, bytes_per_element: int = 4) -> CostReport:
    """The costs of ``spec``; ``params`` equals ``build_model(spec).count_params()``.

    Example:
        >>> from keras_cnas.spaces.enas_cell import EnasCell
        >>> spec = EnasNet((8, 8, 1), 10, EnasCell([(1, "identity", 0, "max3x3")]),
        ...                num_layers=1, filters=4, reduction_layers=())
        >>> # stem 3*3*1*4 + BN 4*4; output conv 4*4 + BN 4*4; dense 4*10 + 10
        >>> estimate_enas_cell(spec).params
        134
    """
    w = _Walker(spec)
    tally, acts = w.tally, w.acts
    stem_shape = tally.conv(spec.input_shape, spec.filters, (3, 3))
    tally.batch_norm(stem_shape)
    stem = acts.op([0], stem_shape)
    outputs: dict[int, tuple[int, Shape]] = {-1: (stem, stem_shape)}
    cell = spec.cell
    unused = cell.unused_blocks
    for plan in spec.layer_plan():
        if not plan.live:
            continue
        ch = plan.channels
        states: list[tuple[int, Shape] | None] = []
        for which, cal in enumerate(plan.calibrate):
            if not cell.uses_input(which):  # its source may not even be built
                states.append(None)
                continue
            t, s = outputs[plan.sources[which]]
            if cal.kind == "conv":
                t, s = w.conv(t, s, ch)
            elif cal.kind == "reduce":
                t, s = w.factorized_reduce(t, s, ch)
            states.append((t, s))
        for block in cell.blocks:
            ends = []
            for index, op in block.sides():
                t, s = states[index]  # type: ignore[misc]
                stride = plan.op_stride(index)
                info = OPS[op]
                if info.kind == "sep":
                    t, s = w.sep_conv(t, s, info.kernel, stride)
                elif info.kind in ("avg", "max"):
                    t, s = w.pool(t, s, stride)
                elif stride == 2:  # identity that has to reduce
                    t, s = w.factorized_reduce(t, s, ch)
                ends.append(t)
            states.append((acts.op(ends, s), s))
        blocks = [states[2 + j][0] for j in unused]  # type: ignore[index]
        s = states[2 + unused[0]][1]  # type: ignore[index]
        t = blocks[0]
        if len(blocks) > 1:
            t = acts.op(blocks, (s[0], s[1], ch * len(blocks)))
        t, shape = w.conv(t, (s[0], s[1], ch * len(blocks)), ch)
        outputs[plan.index] = (t, shape)
    last, shape = outputs[spec.num_layers - 1]
    pooled = acts.op([last], shape[2])
    tally.global_pool(shape)
    tally.dense(shape[2], spec.num_classes)
    acts.op([pooled], spec.num_classes)
    return CostReport(params=tally.params, trainable_params=tally.trainable_params,
                      madds=tally.madds, flops=tally.flops,
                      memory_bytes=bytes_per_element * (tally.params + acts.max_tensor),
                      peak_activation_bytes=bytes_per_element * acts.peak())


def _size(shape: Shape) -> int:
    return shape[0] * shape[1] * shape[2]
