"""ENAS weight sharing: one supernet whose weights every sampled cell reuses.

B-ENAS Algorithm 2 (TrainChild, after ENAS): for each mini-batch, a cell is sampled and the
shared weights it uses are trained on that batch. :class:`SharedCellSupernet` holds one set
of weights per (layer, block, side, input, op), as ENAS's child model does (its weights of
block ``j``'s x/y op are indexed by the chosen input), plus the shared stem, calibrations,
output convs and classifier. A cell's forward pass is exactly the network
``keras_cnas.builders.enas_cell.build_enas_net`` builds for it (same ops, calibrations, dead
cells left out), so ``sum(v.shape.num_elements() for v in supernet.variables_for(cell))``
equals ``estimate(space.net(cell)).trainable_params``.

**BatchNorm** always normalizes with the statistics of the batch at hand, in training and
in :meth:`~SharedCellSupernet.evaluate` alike, as ENAS's shared child does
(``fused_batch_norm(..., is_training=True)`` everywhere): moving averages would mix the
statistics of every cell that used a layer, and the next cell's differ. There are none, so
evaluate on batches of a reasonable size (>= 32).

**Optimizer**: SGD with Nesterov momentum 0.9, a cosine learning rate from ``lr_max``
0.05 to ``lr_min`` 0.001 over ``decay_steps`` steps (then ``lr_min``), L2 weight decay 1e-4
on the conv and dense kernels a step uses (added to their gradients, as ``weight_decay`` in
PyTorch's SGD), gradients clipped to a global norm of 5 (ENAS's ``grad_bound``). A step
updates only the variables its cell touches: untouched weights keep their values and
momenta.

**Speed: eager first, compiled on repeat.** A step runs eagerly (the cell's *program*, a
short list of TensorFlow ops computed once per cell, run op by op). The ``trace_after``-th
use of a cell (default: the third) compiles its step into a ``tf.function``, kept in an LRU
cache of ``max_traced`` cells; training and prediction count and compile separately. Measured on this 2-core CPU while other jobs ran (load
5-7; ``benchmarks/supernet_speed.py``), batch 64, 3 layers, 2-7 blocks, filters 16, modes
interleaved step by step, wall / process-CPU ms per step:

=======================  ===============  ==================  ===============  ===========
input                    eager            one graph per op    compiled cell    compiling
                                          kind (all cells)                     a cell
=======================  ===============  ==================  ===============  ===========
8x8x1 (digits)           206 / 122        173 / 97            49 / 31          1.3-2.1 s
28x28x1 (MNIST)          597 / 299        502 / 277           229 / 147        1.0-2.5 s
=======================  ===============  ==================  ===============  ===========

(On a quieter machine: 8x8 eager 140 ms = 7 steps/s, compiled 30-37 ms = 27-33 steps/s;
28x28 eager 380 ms = 2.6 steps/s, compiled 150 ms = 6.6 steps/s; filters 20 cost ~20 %
more.) Compiling pays for itself after 5-12 further uses of a cell. While the controller
explores, cells almost never repeat, and compiling each would add 1-2 s to every step; as
it converges, the same few cells come back and run compiled. Rejected alternatives: one
graph per op kind shared by every cell (no per-cell compile, but only 10-20 % faster than
eager: the per-call overhead remains); one graph taking the decisions as tensors with
``tf.switch_case`` over every (input, op) branch: 231 s to trace (max_blocks 7: 1,050
branches), then 110 ms a step at 8x8 (all branches' gradient bookkeeping and every block
up to max_blocks run each step). Keras' SGD issues ~10 eager ops per variable (a third of
an eager step); the update here is TF's fused ``ResourceApplyKerasMomentum`` kernel, Keras'
Nesterov formula in one op.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import pathlib
from typing import Any, NamedTuple, Sequence

import numpy as np

from keras_cnas._checks import is_finite_number, is_int
from keras_cnas._keras import tf
from keras_cnas.spaces.enas_cell import OPS, EnasCell, EnasCellSpace, EnasNet

logger = logging.getLogger(__name__)

__all__ = ["SharedCellSupernet"]

_BN_EPSILON = 1e-3  # Keras' BatchNormalization default, as in the built models
_FORMAT_VERSION = 1
# Bounds of the per-cell caches (programs: ~100 small tuples each; use counts: one int).
_MAX_PROGRAMS = 1024
_MAX_COUNTED = 4096


class _Step(NamedTuple):
    """One instruction of a cell's program: ``out = kind(registers[inputs], variables)``."""

    kind: str                  # conv | sep | pool | reduce | add | combine | head
    inputs: tuple[int, ...]    # registers read; register 0 is the image batch
    keys: tuple[str, ...]      # shared variables used, by name
    stride: int = 1
    relu: bool = False         # ReLU on the input first
    pool: str = ""             # "avg" or "max"


class SharedCellSupernet:
    """Shared weights for every cell of an :class:`EnasCellSpace`, trained one cell per batch.

    Args:
        space: the cell space: its frame (input shape, classes, layers, filters,
            reductions), ``max_blocks`` and ``ops`` fix which weights exist.
        lr_max, lr_min: the cosine schedule's first and last learning rate (ENAS:
            0.05 and 0.001).
        decay_steps: steps over which the learning rate falls from ``lr_max`` to ``lr_min``
            (then it stays at ``lr_min``), e.g. epochs x batches per epoch of the search.
        momentum: Nesterov momentum.
        weight_decay: L2 coefficient on the kernels a step uses.
        clip_norm: global gradient-norm bound; None for no clipping.
        seed: seeds the initial weights (He-normal kernels).
        trace_after: the use of a cell (training and prediction counted apart) that
            compiles its step into a ``tf.function``; 1 compiles at once, None never (see
            the module docstring).
        max_traced: compiled cells kept (least recently used ones are dropped).

    Example (Algorithm 2 on digits, then the sharing itself):
        >>> import numpy as np
        >>> from keras_cnas.data import load
        >>> from keras_cnas.spaces import EnasCell, EnasCellSpace
        >>> data = load("digits")
        >>> space = EnasCellSpace((8, 8, 1), 10, num_layers=2, filters=8, max_blocks=2)
        >>> net = SharedCellSupernet(space, decay_steps=100)
        >>> rng = np.random.default_rng(0)
        >>> for _ in range(4):  # one sampled cell per mini-batch
        ...     cell = space.sample_cell(rng)
        ...     batch = rng.choice(len(data.x_train), 64, replace=False)
        ...     loss = net.train_step(cell, data.x_train[batch], data.y_train[batch])
        >>> net.step, round(net.learning_rate, 4)
        (4, 0.0498)
        >>> accuracy = net.evaluate(cell, data.x_test[:128], data.y_test[:128])
        >>> a = EnasCell([(0, "sep3x3", 1, "max3x3"), (2, "sep5x5", 1, "identity")])
        >>> b = EnasCell([(0, "sep3x3", 1, "avg3x3"), (0, "sep5x5", 2, "identity")])
        >>> w = net.variable("cell_0/block_0/a/in0/sep3x3/pointwise")
        >>> any(v is w for v in net.variables_for(a)), any(v is w for v in net.variables_for(b))
        (True, True)
    """

    def __init__(self, space: EnasCellSpace, *, lr_max: float = 0.05, lr_min: float = 0.001,
                 decay_steps: int = 10_000, momentum: float = 0.9, weight_decay: float = 1e-4,
                 clip_norm: float | None = 5.0, seed: int = 0, trace_after: int | None = 3,
                 max_traced: int = 32):
        if not isinstance(space, EnasCellSpace):
            raise TypeError(f"space: expected an EnasCellSpace, got {type(space).__name__}; "
                            "build one with keras_cnas.spaces.EnasCellSpace(input_shape, classes)")
        _check_number("lr_max", lr_max, positive=True)
        _check_number("lr_min", lr_min)
        if lr_min > lr_max:
            raise ValueError(f"lr_min: {lr_min} is above lr_max={lr_max}; the cosine schedule "
                             "falls from lr_max to lr_min")
        _check_count("decay_steps", decay_steps, "steps of the cosine schedule")
        _check_number("momentum", momentum)
        if momentum >= 1:
            raise ValueError(f"momentum: expected a value in [0, 1), got {momentum}")
        _check_number("weight_decay", weight_decay)
        if clip_norm is not None:
            _check_number("clip_norm", clip_norm, positive=True)
        if not is_int(seed):
            raise ValueError(f"seed: expected an int, got {seed!r}")
        if trace_after is not None:
            _check_count("trace_after", trace_after, "the use of a cell that compiles its "
                         "step; None never compiles")
        _check_count("max_traced", max_traced, "compiled cells kept")
        self.space = space
        self._config = {"space": space.get_config(), "lr_max": float(lr_max),
                        "lr_min": float(lr_min), "decay_steps": decay_steps,
                        "momentum": float(momentum), "weight_decay": float(weight_decay),
                        "clip_norm": None if clip_norm is None else float(clip_norm),
                        "seed": seed}
        self._variables: dict[str, tf.Variable] = {}
        self._create_variables(np.random.default_rng(seed))
        # Nesterov momentum slots for every shared variable, and the step count that
        # drives the cosine schedule: part of the state a resumed search restores.
        self._momenta = {name: tf.Variable(tf.zeros_like(v), name=f"momentum/{name}")
                         for name, v in self._variables.items()}
        self._iterations = tf.Variable(0, dtype=tf.int64, name="iterations")
        self._trace_after = trace_after
        self._max_traced = max_traced
        # LRU caches, bounded: a long search samples far more distinct cells than it keeps.
        self._programs: collections.OrderedDict[EnasCell, tuple[list[_Step], list[str]]] = \
            collections.OrderedDict()
        self._uses: collections.OrderedDict[tuple[str, EnasCell], int] = collections.OrderedDict()
        self._traced: collections.OrderedDict[tuple[str, EnasCell], Any] = collections.OrderedDict()

    # --- weights --------------------------------------------------------------------------

    def _create_variables(self, rng: np.random.Generator) -> None:
        space = self.space
        c_in = space.input_shape[2]
        self._kernel("stem/kernel", (3, 3, c_in, space.filters), rng)
        self._bn("stem/bn", space.filters)
        # Every calibration a cell might need: the plan of a cell reading both inputs.
        plans = space.layer_plan()
        for plan in plans:
            ch, prefix = plan.channels, f"cell_{plan.index}"
            for which, cal in enumerate(plan.calibrate):
                name = f"{prefix}/calib{which}"
                if cal.kind == "conv":
                    self._kernel(f"{name}/kernel", (1, 1, cal.in_shape[2], ch), rng)
                    self._bn(f"{name}/bn", ch)
                elif cal.kind == "reduce":
                    self._reduce(name, cal.in_shape[2], ch, rng)
            for j in range(space.max_blocks):
                for side in "ab":
                    for i in range(j + 2):
                        for op in space.ops:
                            self._op_weights(f"{prefix}/block_{j}/{side}/in{i}/{op}", op, ch,
                                             plan.op_stride(i), rng)
                self._kernel(f"{prefix}/out/kernel_{j}", (1, 1, ch, ch), rng)
            self._bn(f"{prefix}/out/bn", ch)
        last = plans[-1].channels
        self._variables["head/kernel"] = tf.Variable(
            rng.normal(0.0, math.sqrt(1.0 / last), (last, space.num_classes)).astype(np.float32),
            name="head/kernel")
        self._variables["head/bias"] = tf.Variable(
            np.zeros(space.num_classes, np.float32), name="head/bias")

    def _op_weights(self, name: str, op: str, ch: int, stride: int,
                    rng: np.random.Generator) -> None:
        info = OPS[op]
        if info.kind == "sep":
            k = info.kernel
            self._kernel(f"{name}/depthwise", (k, k, ch, 1), rng, fan_in=k * k)
            self._kernel(f"{name}/pointwise", (1, 1, ch, ch), rng)
            self._bn(f"{name}/bn", ch)
        elif info.kind == "identity" and stride == 2:
            self._reduce(name, ch, ch, rng)

    def _reduce(self, name: str, c_in: int, ch: int, rng: np.random.Generator) -> None:
        self._kernel(f"{name}/path1", (1, 1, c_in, ch // 2), rng)
        self._kernel(f"{name}/path2", (1, 1, c_in, ch // 2), rng)
        self._bn(f"{name}/bn", ch)

    def _kernel(self, name: str, shape: tuple[int, ...], rng: np.random.Generator,
                fan_in: int | None = None) -> None:
        fan_in = fan_in or int(np.prod(shape[:-1]))
        value = rng.normal(0.0, math.sqrt(2.0 / fan_in), shape).astype(np.float32)
        self._variables[name] = tf.Variable(value, name=name)

    def _bn(self, name: str, ch: int) -> None:
        self._variables[f"{name}/gamma"] = tf.Variable(np.ones(ch, np.float32),
                                                       name=f"{name}/gamma")
        self._variables[f"{name}/beta"] = tf.Variable(np.zeros(ch, np.float32),
                                                      name=f"{name}/beta")

    @property
    def shared_variables(self) -> list[tf.Variable]:
        """Every shared variable, in creation order."""
        return list(self._variables.values())

    def variable(self, name: str) -> tf.Variable:
        """A shared variable by name, e.g. ``"cell_0/block_1/a/in2/sep3x3/pointwise"``."""
        try:
            return self._variables[name]
        except KeyError:
            raise KeyError(f"no shared variable {name!r}; names look like "
                           f"{next(iter(self._variables))!r} (see get_weights())") from None

    def variables_for(self, cell: EnasCell | EnasNet) -> list[tf.Variable]:
        """The shared variables the forward pass of ``cell`` reads, in a fixed order (the
        ones a :meth:`train_step` on it updates). Their sizes add up to
        ``estimate(space.net(cell)).trainable_params``."""
        return [self._variables[k] for k in self._program(cell)[1]]

    # --- the cell's program ---------------------------------------------------------------

    def _cell(self, cell: EnasCell | EnasNet) -> EnasCell:
        if isinstance(cell, EnasNet):
            self.space.validate(cell)
            return cell.cell
        if isinstance(cell, EnasCell):
            self.space.validate_cell(cell)
            return cell
        raise TypeError(f"cell: expected an EnasCell or an EnasNet of the supernet's space, got "
                        f"{type(cell).__name__}")

    def _program(self, cell: EnasCell | EnasNet) -> tuple[list[_Step], list[str]]:
        """The steps of ``cell``'s forward pass and the variable names they use (cached)."""
        cell = self._cell(cell)
        cached = self._programs.get(cell)
        if cached is not None:
            self._programs.move_to_end(cell)
            return cached
        space = self.space
        steps: list[_Step] = []

        def emit(kind: str, inputs: Sequence[int], keys: Sequence[str], **attrs: Any) -> int:
            steps.append(_Step(kind, tuple(inputs), tuple(keys), **attrs))
            return len(steps)  # register of the step's output (0 is the input)

        outputs = {-1: emit("conv", [0], _conv_keys("stem"))}
        unused = cell.unused_blocks
        for plan in space.layer_plan(cell):
            if not plan.live:
                continue
            prefix = f"cell_{plan.index}"
            states: list[int] = []
            for which, cal in enumerate(plan.calibrate):
                if not cell.uses_input(which):
                    states.append(-1)
                    continue
                reg, name = outputs[plan.sources[which]], f"{prefix}/calib{which}"
                if cal.kind == "conv":
                    reg = emit("conv", [reg], _conv_keys(name), relu=True)
                elif cal.kind == "reduce":
                    reg = emit("reduce", [reg], _reduce_keys(name), relu=True)
                states.append(reg)
            for j, block in enumerate(cell.blocks):
                ends = []
                for side, (index, op) in zip("ab", block.sides()):
                    reg, stride = states[index], plan.op_stride(index)
                    name, info = f"{prefix}/block_{j}/{side}/in{index}/{op}", OPS[op]
                    if info.kind == "sep":
                        reg = emit("sep", [reg], (f"{name}/depthwise", f"{name}/pointwise",
                                                  f"{name}/bn/gamma", f"{name}/bn/beta"),
                                   stride=stride, relu=True)
                    elif info.kind in ("avg", "max"):
                        reg = emit("pool", [reg], (), stride=stride, pool=info.kind)
                    elif stride == 2:
                        reg = emit("reduce", [reg], _reduce_keys(name))
                    ends.append(reg)
                states.append(emit("add", ends, ()))
            outputs[plan.index] = emit(
                "combine", [states[2 + j] for j in unused],
                tuple(f"{prefix}/out/kernel_{j}" for j in unused)
                + (f"{prefix}/out/bn/gamma", f"{prefix}/out/bn/beta"), relu=True)
        emit("head", [outputs[space.num_layers - 1]], ("head/kernel", "head/bias"), relu=True)
        names = list(dict.fromkeys(k for step in steps for k in step.keys))
        self._programs[cell] = (steps, names)
        _trim(self._programs, _MAX_PROGRAMS)
        return steps, names

    def _forward(self, steps: list[_Step], x: tf.Tensor) -> tf.Tensor:
        """Runs a program on a batch; returns the logits."""
        v = self._variables
        regs = [x]
        for step in steps:
            ins = [regs[i] for i in step.inputs]
            h = tf.nn.relu(ins[0]) if step.relu and step.kind != "combine" else ins[0]
            kind = step.kind
            if kind == "conv":
                h = tf.nn.conv2d(h, v[step.keys[0]], 1, "SAME")
                h = _batch_norm(h, v[step.keys[1]], v[step.keys[2]])
            elif kind == "sep":
                dw, pw, gamma, beta = (v[k] for k in step.keys)
                h = tf.nn.separable_conv2d(h, dw, pw, (1, step.stride, step.stride, 1), "SAME")
                h = _batch_norm(h, gamma, beta)
            elif kind == "pool":
                pool = tf.nn.avg_pool2d if step.pool == "avg" else tf.nn.max_pool2d
                h = pool(h, 3, step.stride, "SAME")
            elif kind == "reduce":
                path1 = tf.nn.conv2d(h, v[step.keys[0]], 2, "VALID")
                shifted = tf.pad(h, ((0, 0), (0, 1), (0, 1), (0, 0)))[:, 1:, 1:, :]
                path2 = tf.nn.conv2d(shifted, v[step.keys[1]], 2, "VALID")
                h = _batch_norm(tf.concat([path1, path2], -1), v[step.keys[2]], v[step.keys[3]])
            elif kind == "add":
                h = ins[0] + ins[1]
            elif kind == "combine":
                # The builder's concat + 1x1 conv, with the kernel assembled from the
                # per-block slices of the blocks this cell leaves unused.
                h = tf.nn.relu(ins[0] if len(ins) == 1 else tf.concat(ins, -1))
                kernel = v[step.keys[0]] if len(ins) == 1 else tf.concat(
                    [v[k] for k in step.keys[:-2]], 2)
                h = tf.nn.conv2d(h, kernel, 1, "SAME")
                h = _batch_norm(h, v[step.keys[-2]], v[step.keys[-1]])
            elif kind == "head":
                h = tf.reduce_mean(h, (1, 2)) @ v[step.keys[0]] + v[step.keys[1]]
            regs.append(h)
        return regs[-1]

    # --- training and evaluation ----------------------------------------------------------

    def train_step(self, cell: EnasCell | EnasNet, x: Any, y: Any) -> float:
        """Trains the weights ``cell`` uses on one mini-batch; returns its cross-entropy.

        Args:
            cell: an :class:`EnasCell` of the space, or an :class:`EnasNet` of its frame.
            x: images, shape ``(batch,) + space.input_shape``.
            y: integer labels, shape ``(batch,)``.

        Returns:
            The batch's mean cross-entropy before the update (weight decay not included).
        """
        x, y = self._batch(x, y)
        lr = tf.constant(self._lr(self.step), tf.float32)
        loss = self._run("train", cell, x, y, lr)
        self._iterations.assign_add(1)
        return float(loss)

    def predict(self, cell: EnasCell | EnasNet, x: Any) -> np.ndarray:
        """Class probabilities of ``cell`` on a batch (BatchNorm on the batch's statistics)."""
        x, _ = self._batch(x, None)
        return self._run("predict", cell, x).numpy()

    def evaluate(self, cell: EnasCell | EnasNet, x: Any, y: Any) -> float:
        """Accuracy of ``cell`` with the shared weights on a batch (B-ENAS's reward).

        BatchNorm uses the batch's statistics, as in ENAS (see the module docstring).
        """
        x, y = self._batch(x, y)
        probabilities = self._run("predict", cell, x).numpy()
        return float(np.mean(np.argmax(probabilities, -1) == y.numpy()))

    def _run(self, kind: str, cell: EnasCell | EnasNet, *args: tf.Tensor) -> tf.Tensor:
        """Runs ``kind`` for ``cell`` eagerly, or through its compiled function from its
        ``trace_after``-th use on (see the module docstring)."""
        steps, names = self._program(cell)
        key = (kind, cell.cell if isinstance(cell, EnasNet) else cell)
        fn = self._traced.get(key)
        if fn is not None:
            self._traced.move_to_end(key)
            return fn(*args)
        eager = self._train if kind == "train" else self._predict
        if self._trace_after is None:
            return eager(steps, names, *args)
        uses = self._uses.pop(key, 0) + 1
        if uses < self._trace_after:
            self._uses[key] = uses
            _trim(self._uses, _MAX_COUNTED)
            return eager(steps, names, *args)
        h, w, c = self.space.input_shape
        signature = [tf.TensorSpec([None, h, w, c], tf.float32)]
        if kind == "train":
            signature += [tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.float32)]
        # A fixed signature with any batch size: one trace per cell, whatever the batches.
        fn = tf.function(lambda *a: eager(steps, names, *a), input_signature=signature)
        self._traced[key] = fn
        _trim(self._traced, self._max_traced)
        logger.debug("compiling the %s step of cell %s", kind, key[1].key())
        return fn(*args)

    def _train(self, steps: list[_Step], names: list[str], x: tf.Tensor, y: tf.Tensor,
               lr: tf.Tensor) -> tf.Tensor:
        variables = [self._variables[k] for k in names]
        with tf.GradientTape() as tape:
            logits = self._forward(steps, x)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        grads = tape.gradient(loss, variables)
        decay = self._config["weight_decay"]
        if decay:
            grads = [g + decay * v if _is_kernel(k) else g
                     for g, v, k in zip(grads, variables, names)]
        if self._config["clip_norm"] is not None:
            grads, _ = tf.clip_by_global_norm(grads, self._config["clip_norm"])
        momentum = self._config["momentum"]
        for name, v, g in zip(names, variables, grads):
            # One fused kernel per variable, Keras SGD's Nesterov update:
            # m = momentum * m - lr * g; v += momentum * m - lr * g. (Keras' optimizer costs
            # ~10 eager ops per variable, a third of an eager step here.)
            tf.raw_ops.ResourceApplyKerasMomentum(
                var=v.handle, accum=self._momenta[name].handle, lr=lr, grad=g,
                momentum=momentum, use_nesterov=True)
        return loss

    def _predict(self, steps: list[_Step], names: list[str], x: tf.Tensor) -> tf.Tensor:
        del names
        return tf.nn.softmax(self._forward(steps, x))

    def _batch(self, x: Any, y: Any) -> tuple[tf.Tensor, tf.Tensor | None]:
        x = np.asarray(x, np.float32)
        if x.shape[1:] != self.space.input_shape or len(x) == 0:
            raise ValueError(f"x: expected a batch of shape (n, "
                             f"{', '.join(map(str, self.space.input_shape))}) (the space's "
                             f"input_shape), got {x.shape}")
        if y is None:
            return tf.convert_to_tensor(x), None
        y = np.asarray(y).reshape(-1)
        if len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"y: expected {len(x)} integer labels, got shape {y.shape} of "
                             f"{y.dtype}")
        return tf.convert_to_tensor(x), tf.convert_to_tensor(y.astype(np.int32))

    def _lr(self, step: int) -> float:
        """The cosine schedule: lr_max at step 0, lr_min from ``decay_steps`` on."""
        c = self._config
        progress = min(step, c["decay_steps"]) / c["decay_steps"]
        return c["lr_min"] + 0.5 * (c["lr_max"] - c["lr_min"]) * (1 + math.cos(math.pi * progress))

    @property
    def step(self) -> int:
        """Training steps taken so far (the cosine schedule's position)."""
        return int(self._iterations.numpy())

    @property
    def learning_rate(self) -> float:
        """The learning rate of the next step."""
        return self._lr(self.step)

    # --- state ----------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """JSON-compatible constructor arguments (the space as its config)."""
        return json.loads(json.dumps(self._config))

    def get_weights(self) -> dict[str, np.ndarray]:
        """Every shared weight, its momentum (``"momentum/<name>"``) and the step count
        (``"iterations"``): what :meth:`set_weights` needs to resume a search exactly."""
        out = {name: v.numpy() for name, v in self._variables.items()}
        out.update({f"momentum/{name}": m.numpy() for name, m in self._momenta.items()})
        out["iterations"] = np.asarray(self._iterations.numpy())
        return out

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Restores :meth:`get_weights`' output (every entry is required)."""
        targets = {**self._variables, **{f"momentum/{n}": m for n, m in self._momenta.items()},
                   "iterations": self._iterations}
        missing, extra = sorted(set(targets) - set(weights)), sorted(set(weights) - set(targets))
        if missing or extra:
            raise ValueError(f"weights: do not fit this supernet: missing {missing[:3]}, "
                             f"unexpected {extra[:3]} ({len(missing)} / {len(extra)} in all); "
                             "build the supernet with the space and settings it was saved with")
        for key, target in targets.items():
            value = np.asarray(weights[key])
            if value.shape != tuple(target.shape):
                raise ValueError(f"weights[{key!r}]: shape {value.shape} differs from the "
                                 f"supernet's {tuple(target.shape)}")
        for key, target in targets.items():
            target.assign(np.asarray(weights[key]).astype(target.dtype.as_numpy_dtype))

    def save(self, path: str | os.PathLike[str]) -> pathlib.Path:
        """Writes weights, momenta, step and config to an ``.npz`` file (no pickle),
        atomically; returns its path. :meth:`load` restores it."""
        path = pathlib.Path(os.fspath(path))
        arrays = self.get_weights()
        arrays["config/json"] = np.asarray(json.dumps(
            {"format": _FORMAT_VERSION, **self._config}, sort_keys=True))
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as f:
            np.savez(f, **arrays)
        os.replace(partial, path)
        return path

    def load(self, path: str | os.PathLike[str]) -> None:
        """Restores a :meth:`save` file into this supernet (same space and settings)."""
        path = pathlib.Path(os.fspath(path))
        if not path.is_file():
            raise FileNotFoundError(f"path: no supernet file at {path}; pass the file "
                                    "SharedCellSupernet.save wrote")
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        saved = json.loads(str(arrays.pop("config/json")))
        saved.pop("format", None)
        if saved != self.get_config():
            diff = sorted(k for k in set(saved) | set(self._config)
                          if saved.get(k) != self._config.get(k))
            raise ValueError(f"path: {path} was saved by a supernet with other settings "
                             f"({', '.join(diff)} differ); build it with "
                             f"SharedCellSupernet(EnasCellSpace(**config['space']), ...) from "
                             "the saved config")
        self.set_weights(arrays)


def _conv_keys(name: str) -> tuple[str, str, str]:
    return f"{name}/kernel", f"{name}/bn/gamma", f"{name}/bn/beta"


def _reduce_keys(name: str) -> tuple[str, str, str, str]:
    return f"{name}/path1", f"{name}/path2", f"{name}/bn/gamma", f"{name}/bn/beta"


def _is_kernel(name: str) -> bool:
    return not (name.endswith("/gamma") or name.endswith("/beta") or name.endswith("/bias"))


def _batch_norm(x: tf.Tensor, gamma: tf.Variable, beta: tf.Variable) -> tf.Tensor:
    y, _, _ = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=_BN_EPSILON,
                                               is_training=True)
    return y


def _trim(cache: collections.OrderedDict, size: int) -> None:
    while len(cache) > size:
        cache.popitem(last=False)


def _check_count(name: str, value: Any, meaning: str) -> None:
    if not is_int(value) or value < 1:
        raise ValueError(f"{name}: expected a positive int ({meaning}), got {value!r}")


def _check_number(name: str, value: Any, positive: bool = False) -> None:
    if not is_finite_number(value) \
            or value < 0 or (positive and value == 0):
        raise ValueError(f"{name}: expected a {'positive' if positive else 'non-negative'} "
                         f"number, got {value!r}")
