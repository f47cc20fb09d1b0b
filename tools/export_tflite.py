"""Export a saved model to TFLite, verify it, measure it, and re-check hard bounds.

Usage:
  python tools/export_tflite.py --model=runs/x/best --quantize=int8 --dataset=digits --micro
  python tools/export_tflite.py --model=runs/x/best --quantize=float16 --dataset=digits \
      --out=android/app/src/main/assets
  python tools/export_tflite.py --model=runs/x/best --dataset=digits --max_arena_bytes=20000

--model is a directory holding model.keras (a search's best/) or a .keras file. Writes
model.tflite, labels.txt (with --dataset), model_data.h / model_data.cc / model_data_ops.h
(with --micro: the model, kTensorArenaSize, input / output scale and zero point, and the op
resolver) and export.json to --out (default: the model's directory), and prints ONE JSON object on
stdout: tflite_bytes, arena_bytes (with --micro or int8), latency_ms ({"xnnpack": ...,
"builtin": ...}, median), keras_accuracy, tflite_accuracy, agreement (test split), ...
Exits non-zero, with the reason and without writing anything, when the artifact breaks a
--max_* bound.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import sys

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from keras_cnas.costs import Constraints  # noqa: E402
from keras_cnas.costs.constraints import parse_bytes  # noqa: E402
from keras_cnas.export.artifact import json_safe  # noqa: E402
from keras_cnas.data import DATASETS  # noqa: E402
from keras_cnas.costs.micro_support import micro_runs  # noqa: E402
from keras_cnas.export import QUANTIZATIONS  # noqa: E402
from keras_cnas.cli import common  # noqa: E402
from keras_cnas.errors import DataError  # noqa: E402

#: Flags a message that names none is about, by error type (cli.common.run).
BLAME = {DataError: "data_dir"}
FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Directory holding model.keras (e.g. a search's best/) or a "
                    ".keras file.", required=True)
flags.DEFINE_enum("quantize", "int8", list(QUANTIZATIONS), "Quantization of the artifact.")
flags.DEFINE_enum("dataset", None, DATASETS.names(),
                  "Dataset: its training split calibrates int8, its test split verifies.")
flags.DEFINE_string("data_dir", None, "Directory with the dataset's files (mnist, cifar10).")
flags.DEFINE_float("validation_split", 0.1, "Fraction held out of the training split (as in "
                   "the search), which calibration does not see.", lower_bound=0.0, upper_bound=0.9)
flags.DEFINE_integer("seed", 0, "Seeds the validation split and the calibration sample.",
                     lower_bound=0, upper_bound=common.MAX_SEED)
flags.DEFINE_bool("micro", False, "Also write model_data.h / model_data.cc and measure the "
                  "TFLite Micro arena.")
flags.DEFINE_bool("int8_io", False, "int8 input and output tensors (--quantize=int8).")
flags.DEFINE_integer("qat_epochs", 0, "Quantization-aware fine-tuning epochs before converting "
                     "(--quantize=int8; 0: post-training quantization).", lower_bound=0)
flags.DEFINE_string("out", None, "Output directory (default: the model's directory).")
flags.DEFINE_integer("num_threads", 1, "Interpreter threads for latency and verification.",
                     lower_bound=1)
flags.DEFINE_integer("latency_runs", 100, "Timed invocations per latency mode.", lower_bound=1)
flags.DEFINE_string("max_tflite_bytes", None, "Hard bound on the .tflite size: bytes, or with a "
                    "unit (256KiB, 0.25MiB).")
flags.DEFINE_string("max_arena_bytes", None, "Hard bound on the TFLite Micro arena: bytes, or "
                    "with a unit (64KiB).")
flags.DEFINE_float("max_int8_drop", None, "--quantize=int8: most accuracy points the int8 model "
                   "may lose against Keras (validation split); above it, QAT fine-tuning for "
                   "--qat_epochs (default 2) is tried and the better artifact kept.", lower_bound=0)
flags.DEFINE_integer("arena_headroom", None, "--micro: bytes kTensorArenaSize adds to the "
                     "measured arena (default max(1 KiB, 10 %)).", lower_bound=0)
flags.DEFINE_float("max_latency_ms", None, "Hard bound on the median latency with XNNPACK.")

flags.register_multi_flags_validator(
    ["quantize", "dataset", "qat_epochs"],
    lambda f: f["dataset"] is not None or (f["quantize"] != "int8" and not f["qat_epochs"]),
    message="--quantize=int8 calibrates on training data (and QAT trains on it): pass "
            "--dataset=NAME, or use --quantize=float16 / dynamic / none")
flags.register_multi_flags_validator(
    ["quantize", "micro", "max_arena_bytes"],
    lambda f: micro_runs(f["quantize"]) or not (f["micro"] or f["max_arena_bytes"]),
    message="--micro / --max_arena_bytes need a model TensorFlow Lite Micro can run: it cannot "
            "run dynamic-range (hybrid) or float16 models; use --quantize=int8 (or none)")
flags.register_multi_flags_validator(
    ["quantize", "int8_io", "qat_epochs"],
    lambda f: f["quantize"] == "int8" or not (f["int8_io"] or f["qat_epochs"]),
    message="--int8_io and --qat_epochs need --quantize=int8")


@contextlib.contextmanager
def _stdout_to_stderr():
    """Sends everything written to file descriptor 1 (TensorFlow's converter and LiteRT
    print from C++) to stderr, so that stdout carries only the JSON report."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    model = pathlib.Path(FLAGS.model)
    if not (model / "model.keras").is_file() and not (model.is_file() and model.suffix == ".keras"):
        raise app.UsageError(f"--model: {model} is not a directory holding model.keras nor a "
                             ".keras file; pass a search's best/ directory (e.g. runs/x/best)")
    out = pathlib.Path(FLAGS.out) if FLAGS.out else (model if model.is_dir() else model.parent)
    try:
        sizes = {f"max_{c}": None if FLAGS[f"max_{c}"].value is None
                 else parse_bytes(FLAGS[f"max_{c}"].value, name=f"--max_{c}")
                 for c in ("tflite_bytes", "arena_bytes")}
        constraints = Constraints(**sizes, max_latency_ms=FLAGS.max_latency_ms)
    except ValueError as e:
        raise app.UsageError(str(e)) from None

    with _stdout_to_stderr():
        from keras_cnas.data import load
        from keras_cnas.export import ExportConstraintError, ExportOptions, MicroError, export_model

        data = None
        if FLAGS.dataset:
            try:
                data = load(FLAGS.dataset, FLAGS.data_dir, validation_split=FLAGS.validation_split,
                            seed=FLAGS.seed)
            except DataError as e:
                raise app.UsageError(f"--dataset={FLAGS.dataset}: {e}") from None
        try:
            options = ExportOptions(FLAGS.quantize, micro=FLAGS.micro, int8_io=FLAGS.int8_io,
                                    qat=FLAGS.qat_epochs > 0, qat_epochs=FLAGS.qat_epochs or 2,
                                    max_int8_drop=FLAGS.max_int8_drop,
                                    arena_headroom_bytes=FLAGS.arena_headroom,
                                    num_threads=FLAGS.num_threads,
                                    latency_runs=FLAGS.latency_runs, seed=FLAGS.seed)
            report = export_model(model, out, options, data, constraints=constraints).to_dict()
        except ExportConstraintError as e:  # name the bounds it broke
            bounds = ", ".join(f"--max_{v.cost}={FLAGS[f'max_{v.cost}'].value}"
                               if f"max_{v.cost}" in FLAGS else v.cost for v in e.violations)
            sys.exit(f"error: {bounds}: {e}")
        except (MicroError, ValueError) as e:  # e.g. the dataset's images do not fit the model
            sys.exit(f"error: --model={model}" + (f" with --dataset={FLAGS.dataset}"
                                                 if FLAGS.dataset else "") + f": {e}")
    report.pop("latency", None)  # the full statistics stay in export.json
    # allow_nan=False: stdout carries JSON for other programs, and NaN is not JSON.
    print(json.dumps(json_safe(report), sort_keys=True, allow_nan=False))


if __name__ == "__main__":
    common.run(main, blame=BLAME)
