"""TFLite Micro: the arena a model really needs, and whether TFLite Micro can run it at all.

:func:`micro_arena_bytes` measures with the real interpreter (the ``tflite-micro`` Python
package, extra ``micro``): a child process loads TFLite Micro once and binary-searches the
smallest ``arena_size`` for which ``AllocateTensors()`` succeeds, each attempt in a forked
process, because TFLite Micro has no getter for arena use and some kernels dereference a
failed allocation instead of reporting it (a crash must fail one attempt, not the caller).
``print_allocations()`` is no substitute: it reports the head and tail *after* allocation,
while the transient phases (kernel temporaries, the planner's working memory) often need
more, e.g. 2608 bytes reported vs. 3144 needed for a small int8 CNN.

:func:`check_micro_compatible` rejects, from the flatbuffer alone, what TFLite Micro cannot
run whatever the arena: hybrid (dynamic-range) models, whose float activations meet int8
weights inside CONV_2D / FULLY_CONNECTED (TFLite Micro's kernels refuse them in Prepare).
Float32 models run (reference float kernels), as do full-integer int8 ones.

Example:
    >>> from keras_cnas.export import micro_arena_bytes, estimate_arena_bytes  # doctest: +SKIP
    >>> micro_arena_bytes(flatbuffer)                                   # doctest: +SKIP
    3144
    >>> estimate_arena_bytes(flatbuffer)                                # doctest: +SKIP
    3144
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile

from keras_cnas._checks import is_int, is_real
from keras_cnas.errors import KerasCnasError
from keras_cnas.export.flatbuffer import ModelView, Operator, Subgraph, read_model

logger = logging.getLogger(__name__)

#: The message of the MicroError for a dynamic-range model.
HYBRID_MESSAGE = ("TFLite Micro cannot run hybrid (dynamic-range) models; export with "
                  "quantize='int8'")
#: The largest arena :func:`micro_arena_bytes` tries by default (256 MiB).
DEFAULT_MAX_ARENA_BYTES = 1 << 28
_INSTALL_HINT = ("install TFLite Micro's Python interpreter: pip install 'keras_cnas[micro]' "
                 "(tflite-micro==0.dev20261023182759)")
# 2**(31 - 5): the int8 softmax's input scaling (5 integer bits of the input difference).
_SOFTMAX_INPUT_RESOLUTION = float(1 << 26)
# Weight types that make a float operator hybrid (dynamic-range quantized).
_HYBRID_WEIGHT_TYPES = ("INT8", "UINT8", "INT4")


class MicroError(KerasCnasError, RuntimeError):
    """TFLite Micro cannot run a model (hybrid model, unsupported operator, crash), or its
    Python interpreter is missing."""


def check_micro_compatible(tflite_bytes: bytes) -> None:
    """Raises :class:`MicroError` if TFLite Micro cannot run this model in any arena.

    Detects, from the flatbuffer, hybrid (dynamic-range) models: an operator whose
    activations are float32 while a constant weight input is int8 (what
    ``quantize="dynamic"`` produces for layers with at least 1024 weights; smaller layers
    stay float, so a tiny "dynamic" model may be plain float32 and pass). Also rejected:
    float16-weight models (TFLite Micro cannot dequantize float16) and int8 models whose
    softmax logits have collapsed to a scale of at most 2**-26 (TFLite Micro aborts the
    process on them). Float32 and full-integer int8 models pass. Unsupported operators are
    found by running the model: :func:`micro_arena_bytes` reports them.

    Args:
        tflite_bytes: a ``.tflite`` flatbuffer.

    Raises:
        MicroError: a hybrid model (the message names the first hybrid operator), a
            float16-weight model, or collapsed int8 softmax logits.
        TFLiteFormatError: the bytes are not a readable TFLite flatbuffer (a ValueError).

    Example:
        >>> check_micro_compatible(to_tflite(model, "int8", representative_data=x))  # doctest: +SKIP
        >>> check_micro_compatible(to_tflite(model, "dynamic"))             # doctest: +SKIP
        Traceback (most recent call last):
        ...
        keras_cnas.export.micro.MicroError: TFLite Micro cannot run hybrid (dynamic-range) models; ...
    """
    _check_model(read_model(tflite_bytes))


def _check_model(model: ModelView) -> None:
    for sg in model.subgraphs:
        for op in sg.operators:
            _check_softmax(sg, op)
            if op.opcode == "DEQUANTIZE" and op.inputs and op.inputs[0] >= 0 \
                    and sg.tensors[op.inputs[0]].dtype == "FLOAT16":
                raise MicroError(
                    f"TFLite Micro cannot run float16-weight models: operator {op.index} "
                    "(DEQUANTIZE) expands float16 weights, and its DEQUANTIZE takes int8 or "
                    "int16 only; export with quantize='int8' (or 'none' for float32)")
            inputs = [sg.tensors[k] for k in op.inputs if k >= 0]
            float_activation = any(t.dtype == "FLOAT32" and not t.is_constant for t in inputs)
            weights = [t for t in inputs if t.is_constant and t.dtype in _HYBRID_WEIGHT_TYPES]
            if float_activation and weights:
                raise MicroError(
                    f"{HYBRID_MESSAGE} (or 'none' for float32): operator {op.index} "
                    f"({op.opcode}) multiplies float32 activations by {weights[0].dtype.lower()} "
                    f"weights {weights[0].name!r}, which TFLite Micro's kernels reject")


def _check_softmax(sg: Subgraph, op: Operator) -> None:
    # The int8 SOFTMAX kernel computes a fixed-point multiplier beta * input_scale * 2**26
    # and aborts the process (TFLITE_CHECK_GT(multiplier, 1.)) when it is not above 1: logits
    # whose calibrated range is almost zero, typical of an untrained or collapsed network.
    if op.opcode != "SOFTMAX" or not op.inputs or op.inputs[0] < 0:
        return
    logits = sg.tensors[op.inputs[0]]
    beta = float(op.options.get("beta", 1.0))
    if logits.dtype == "INT8" and logits.is_quantized \
            and beta * logits.scale * _SOFTMAX_INPUT_RESOLUTION <= 1.0:
        raise MicroError(
            f"TFLite Micro aborts on this model: operator {op.index} (SOFTMAX) gets int8 logits "
            f"with scale {logits.scale:.3g} (x beta {beta:g}), at or below 2**-26, for which "
            "its int8 softmax has no fixed-point multiplier; the logits barely vary over the "
            "representative data (an untrained or collapsed network?): calibrate with real "
            "inputs and a trained model, or export the float32 model")


def micro_arena_bytes(tflite_bytes: bytes, *, timeout: float = 120.0,
                      max_arena_bytes: int = DEFAULT_MAX_ARENA_BYTES) -> int:
    """The smallest tensor arena with which TFLite Micro allocates and runs this model.

    Runs the ``tflite_micro`` Python interpreter in a child process (the model passes
    through a temporary file): one allocation and inference with ``max_arena_bytes`` checks
    that TFLite Micro can run the model at all, then a binary search over ``arena_size``
    finds the smallest that ``AllocateTensors()`` accepts (each attempt in a forked process,
    stderr silenced), and one inference at that size confirms it. The result is exact: one
    byte less fails. Typically under a second for a small model.

    The figure is that of the pinned ``tflite-micro`` wheel on this machine (64-bit, with
    its recording allocator); :func:`keras_cnas.export.estimate_arena_bytes` computes the
    same number offline.

    Args:
        tflite_bytes: a float32 or full-integer int8 ``.tflite`` flatbuffer.
        timeout: seconds for the whole measurement before giving up.
        max_arena_bytes: the largest arena to try.

    Returns:
        The arena size in bytes.

    Raises:
        MicroError: a hybrid model; ``tflite_micro`` is not installed; TFLite Micro cannot
            run the model (an unsupported operator or type, a crash) or needs more than
            ``max_arena_bytes``; the timeout. The message quotes TFLite Micro's stderr.
        TFLiteFormatError: the bytes are not a readable TFLite flatbuffer (a ValueError).
        ValueError: a non-positive ``timeout`` or ``max_arena_bytes``.

    Example:
        >>> micro_arena_bytes(to_tflite(model, "int8", representative_data=x))  # doctest: +SKIP
        3144
    """
    if not is_real(timeout) or not timeout > 0:
        raise ValueError(f"timeout: expected a positive number of seconds, got {timeout!r}")
    if not is_int(max_arena_bytes) or max_arena_bytes < 1:
        raise ValueError(f"max_arena_bytes: expected a positive int, got {max_arena_bytes!r}")
    model = read_model(tflite_bytes)
    _check_model(model)
    if importlib.util.find_spec("tflite_micro") is None:
        raise MicroError(f"the tflite_micro package is not installed: {_INSTALL_HINT}")
    env = dict(os.environ)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")  # the child forks; keep it single-threaded
    with tempfile.TemporaryDirectory(prefix="keras_cnas_micro_") as tmp:
        path = os.path.join(tmp, "model.tflite")
        with open(path, "wb") as f:
            f.write(bytes(tflite_bytes))
        # -P: do not put the working directory on sys.path (a local "bisect.py" or
        # "numpy/" must not shadow the real modules).
        command = [sys.executable, "-P", "-c", _DRIVER, path, str(len(model.main.inputs)),
                   str(max_arena_bytes)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  env=env, errors="replace")
        except subprocess.TimeoutExpired as e:
            raise MicroError(f"measuring the TFLite Micro arena timed out after {timeout:g} s; "
                             "raise timeout=") from e
    return _parse_result(done, max_arena_bytes)


def _tail(text: str, lines: int = 15, chars: int = 2000) -> str:
    kept = "\n".join(line for line in text.strip().splitlines()[-lines:])
    return kept[-chars:] if kept else "(no output)"


def _parse_result(done: subprocess.CompletedProcess, max_arena_bytes: int) -> int:
    stderr = done.stderr or ""
    if done.returncode == 0:
        try:
            return int(json.loads(done.stdout.strip().splitlines()[-1])["arena_bytes"])
        except (IndexError, KeyError, TypeError, ValueError) as e:
            raise MicroError(f"the TFLite Micro measurement printed no result: "
                             f"{_tail(done.stdout)}\nstderr:\n{_tail(stderr)}") from e
    if done.returncode == _EXIT_NO_TFLM:
        raise MicroError(f"cannot import tflite_micro ({_tail(stderr, 1)}): {_INSTALL_HINT}")
    if done.returncode == _EXIT_CANNOT_RUN:
        raise MicroError(
            f"TFLite Micro cannot run this model (allocation or inference failed with an arena "
            f"of {max_arena_bytes} bytes: an unsupported operator or type, or a model that "
            f"needs more memory than max_arena_bytes). TFLite Micro said:\n{_tail(stderr)}")
    if done.returncode == _EXIT_FAILS_AT_MINIMUM:
        raise MicroError(f"TFLite Micro allocates this model but its inference fails at the "
                         f"smallest arena that allocates:\n{_tail(stderr)}")
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        raise MicroError(f"TFLite Micro crashed ({name}) while allocating or running this "
                         f"model; its last output:\n{_tail(stderr)}")
    raise MicroError(f"the TFLite Micro measurement failed (exit status {done.returncode}):\n"
                     f"{_tail(stderr)}")


_EXIT_CANNOT_RUN = 2
_EXIT_NO_TFLM = 3
_EXIT_FAILS_AT_MINIMUM = 4

# The child process: argv = model path, number of inputs, largest arena. Kept free of
# keras_cnas imports so that it needs nothing but tflite_micro (and numpy).
_DRIVER = r"""
import json, os, subprocess, sys

path, num_inputs, max_arena = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    import numpy as np
    from tflite_micro import runtime
except ImportError as e:
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(3)
with open(path, "rb") as f:
    data = f.read()


def run(arena_size, invoke):
    interpreter = runtime.Interpreter.from_bytes(data, arena_size=arena_size)
    if invoke:
        for i in range(num_inputs):
            details = interpreter.get_input_details(i)
            interpreter.set_input(np.zeros(details["shape"], details["dtype"]), i)
        interpreter.invoke()


PROBE = ("import sys\nfrom tflite_micro import runtime\n"
         "runtime.Interpreter.from_file(sys.argv[1], arena_size=int(sys.argv[2]))")


def fits(arena_size, invoke=False):
    # Each attempt in its own process: a kernel may crash on a failed allocation.
    if not hasattr(os, "fork"):
        done = subprocess.run([sys.executable, "-P", "-c", PROBE, path, str(arena_size)],
                              capture_output=True)
        return done.returncode == 0
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            run(arena_size, invoke)
            code = 0
        except BaseException:
            pass
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# 1. Can TFLite Micro run it at all? Failures here show TFLite Micro's own messages.
try:
    run(max_arena, invoke=True)
except Exception as e:
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(2)
# 2. Binary search: allocation success is monotone in the arena size.
lo, hi = 0, max_arena
while hi - lo > 1:
    mid = (lo + hi) // 2
    if fits(mid):
        hi = mid
    else:
        lo = mid
# 3. It must also run at that size.
if not fits(hi, invoke=True):
    try:
        run(hi, invoke=True)
    except Exception as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(4)
print(json.dumps({"arena_bytes": hi}))
"""


__all__ = ["DEFAULT_MAX_ARENA_BYTES", "HYBRID_MESSAGE", "MicroError", "check_micro_compatible",
           "micro_arena_bytes"]
